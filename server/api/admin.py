"""Admin API: accounts, care teams, break-glass, the audit log and the outbox."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from server import accounts, audit
from server.access import require_role
from server.api.registry import ApiOperation
from server.errors import ValidationFailed
from server.http import (
    MAX_ID,
    actor_of,
    int_param,
    json_body,
    parse_datetime,
    path_id,
    refuse_unstorable,
    services_of,
)
from server.models import OutboxEmail, Role
from server.responses import JSONResponse

AUDIT_PAGE = 500
AUDIT_EXPORT_LIMIT = 100_000


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254)
    name: str = Field(max_length=200)
    role: Role
    password: str | None = Field(default=None, max_length=200)
    # Patients only: the IANA zone they read times in (default the clinic's usual zone).
    timezone: str | None = Field(default=None, max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)


class TeamMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: int = Field(gt=0, le=MAX_ID)


class BreakGlass(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: int = Field(gt=0, le=MAX_ID)
    reason: str = Field(max_length=500)


async def list_users(request: Request) -> Response:
    actor = actor_of(request)
    async with services_of(request).transaction() as session:
        users = await accounts.list_users(session, actor)
        return JSONResponse({"users": [u.to_json() for u in users]})


async def create_user(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, NewUser)
    services = services_of(request)
    async with services.transaction() as session:
        user = await accounts.create_user(session, actor, email=body.email, name=body.name,
                                          role=body.role, password=body.password,
                                          now=services.clock.now(), timezone=body.timezone)
        data = accounts.Account.of(user).to_json()
    return JSONResponse(data, status_code=201)


async def update_user(request: Request) -> Response:
    actor = actor_of(request)
    user_id = path_id(request, "user_id")
    body = await json_body(request, UserUpdate)
    if body.is_active is None and body.timezone is None:
        raise ValidationFailed("Send is_active or timezone.", field="is_active")
    async with services_of(request).transaction() as session:
        user = None
        if body.timezone is not None:
            user = await accounts.set_timezone(session, actor, user_id, body.timezone)
        if body.is_active is not None:
            user = await accounts.set_active(session, actor, user_id, body.is_active)
        assert user is not None
        return JSONResponse(user.to_json())


async def get_care_team(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    async with services_of(request).transaction() as session:
        members = await accounts.care_team(session, actor, patient_id)
        return JSONResponse({"patient_id": patient_id,
                             "members": [m.to_json() for m in members]})


async def add_care_team_member(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, TeamMember)
    services = services_of(request)
    async with services.transaction() as session:
        row = await accounts.add_to_care_team(session, actor, patient_id=patient_id,
                                              member_id=body.member_id,
                                              now=services.clock.now())
        data = {"id": row.id, "patient_id": row.patient_id, "member_id": row.member_id,
                "role": row.role.value}
    return JSONResponse(data, status_code=201)


async def remove_care_team_member(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    member_id = path_id(request, "member_id")
    async with services_of(request).transaction() as session:
        await accounts.remove_from_care_team(session, actor, patient_id=patient_id,
                                             member_id=member_id)
    return Response(status_code=204)


async def create_break_glass(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, BreakGlass)
    services = services_of(request)
    async with services.transaction() as session:
        grant = await accounts.break_glass(
            session, actor, patient_id=body.patient_id, reason=body.reason,
            now=services.clock.now(), minutes=services.settings.break_glass_minutes)
        data = {"id": grant.id, "patient_id": grant.patient_id,
                "expires_at": grant.expires_at.isoformat()}
    return JSONResponse(data, status_code=201)


def audit_filter(request: Request) -> audit.AuditFilter:
    """The audit log filter from query parameters; 422 naming a bad one."""
    params = request.query_params
    filters: dict[str, Any] = {}
    for name in ("actor_id", "patient_id"):
        if params.get(name):
            filters[name] = int_param(params[name], name)
    for name in ("action", "resource_type", "outcome"):
        if params.get(name):
            filters[name] = refuse_unstorable(params[name], name)[:64]
    for name in ("since", "until"):
        if params.get(name):
            filters[name] = parse_datetime(params[name], name)
    return audit.AuditFilter(**filters)


async def list_audit(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    filters = audit_filter(request)
    async with services_of(request).transaction() as session:
        rows = await session.scalars(audit.audit_query(filters).limit(AUDIT_PAGE))
        entries = [audit.audit_record(e).to_json() for e in rows]
        audit.record(session, actor, "read", "audit_log", None, count=len(entries))
    return JSONResponse({"entries": entries})


CSV_COLUMNS = ["id", "at", "actor_id", "actor_role", "action", "resource_type", "resource_id",
               "patient_id", "outcome", "ip", "detail"]


async def export_audit(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    filters = audit_filter(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    async with services_of(request).transaction() as session:
        rows = await session.scalars(
            audit.audit_query(filters).limit(AUDIT_EXPORT_LIMIT)
        )
        count = 0
        for entry in rows:
            data = audit.audit_record(entry).to_json()
            writer.writerow([_csv_cell(data[c]) for c in CSV_COLUMNS])
            count += 1
        audit.record(session, actor, "export", "audit_log", None, count=count)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="mendwell-audit.csv"'})


def _csv_cell(value: object) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True)  # the detail column: JSON, not Python repr
    else:
        text = "" if value is None else str(value)
    # A cell starting with = + - @ is run as a formula by spreadsheet programs.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


async def list_outbox(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    services = services_of(request)
    show_body = services.settings.is_development
    async with services.transaction() as session:
        rows = await session.scalars(
            select(OutboxEmail).order_by(OutboxEmail.id.desc()).limit(200))
        emails = [{
            "id": e.id, "to": e.to_addr, "subject": e.subject, "kind": e.kind,
            "created_at": e.created_at.isoformat(),
            "sent_at": e.sent_at.isoformat() if e.sent_at else None,
            "attempts": e.attempts, "last_error": e.last_error,
            # Bodies carry join links; only a development server shows them.
            "body": e.body if show_body else None,
        } for e in rows]
        audit.record(session, actor, "read", "outbox", None, count=len(emails))
    return JSONResponse({"emails": emails})


OPERATIONS = [
    ApiOperation("GET", "/api/v1/users", list_users, "All accounts (admin)", tag="admin"),
    ApiOperation("POST", "/api/v1/users", create_user, "Create an account (admin)",
                 body=NewUser, success=201, tag="admin"),
    ApiOperation("PATCH", "/api/v1/users/{user_id}", update_user,
                 "Activate or deactivate an account, or set a patient's time zone (admin)",
                 body=UserUpdate, tag="admin"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/care-team", get_care_team,
                 "A patient's care team", tag="admin"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/care-team", add_care_team_member,
                 "Add a prescriber or coordinator to a care team (admin)", body=TeamMember,
                 success=201, tag="admin"),
    ApiOperation("DELETE", "/api/v1/patients/{patient_id}/care-team/{member_id}",
                 remove_care_team_member, "Remove a care team member (admin)", success=204,
                 tag="admin"),
    ApiOperation("POST", "/api/v1/break-glass", create_break_glass,
                 "Emergency read access to one patient's record (admin, audited)",
                 body=BreakGlass, success=201, tag="admin"),
    ApiOperation("GET", "/api/v1/audit", list_audit, "Audit log entries, newest first (admin)",
                 tag="admin"),
    ApiOperation("GET", "/api/v1/audit.csv", export_audit, "Audit log as CSV (admin)",
                 tag="admin"),
    ApiOperation("GET", "/api/v1/outbox", list_outbox, "Queued and sent emails (admin)",
                 tag="admin"),
]
