"""The authorization matrix: every route of the app, every role, the status each gets.

One row per (method, route); one column per role. Requests that need a body send a valid
one, so a cell's status says what authorization decided, not what validation thought of
the body. ``test_every_route_has_a_row`` fails when a route is added without its row.

Cells run against one app and one clinic per database (SQLite, then PostgreSQL), so
rows must leave the clinic as they found it: state-changing rows either repeat an
idempotent change or act on something their ``prepare`` made for that one cell.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from escalation import referrals
from server import checkins, consents
from server.accounts import add_to_care_team, create_user
from server.actors import Actor
from server.app import create_app
from server.auth import COOKIE_NAME, make_join_token
from server.guests import token_hash
from server.models import (
    AuditEntry,
    Escalation,
    EscalationStatus,
    Role,
    Visit,
    VisitGuest,
    VisitKind,
    VisitStatus,
)
from server.notes import NoteSave, save_note, sign_note
from server.oncall import add_shift
from server.services import Services
from server.settings import Settings
from signaling import listener
from tests import app_server
from tests.checkin_bodies import checkin_body
from tests.clinic import PASSWORD, Clinic, Person, build_clinic
from tests.conftest import TEST_SECRET, Runner, SignIn
from tests.databases import PostgresDatabase, SqliteTemplate, postgres_server_url

ROLES = ("anonymous", "patient", "patient2", "join_link", "prescriber", "other_prescriber",
         "coordinator", "other_coordinator", "admin")


class Denied(int):
    """403, and the refusal is in the audit log with outcome "denied" for the patient."""


class ToLogin(int):
    """303 to the sign-in page."""


DENIED = Denied(403)
LOGIN = ToLogin(303)


@dataclass
class Cell:
    """What one request is made with: the clinic, the caller's CSRF token, path values."""

    clinic: Clinic
    services: Services
    run: Runner
    values: dict[str, Any]
    csrf: str = ""


Make = Callable[[Cell], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    method: str
    route: str                      # exactly as the app declares it
    statuses: tuple[int, ...]       # in the order of ROLES
    json: Make | None = None
    form: Make | None = None
    query: Make | None = None
    send: Make | None = None        # a WebSocket's first message
    # Makes what this cell acts on; returns path values that replace the clinic's.
    prepare: Make | None = None
    note: str = ""                  # tells apart rows of one route

    def __post_init__(self) -> None:
        assert len(self.statuses) == len(ROLES), f"{self.label}: one status per role"

    @property
    def label(self) -> str:
        return f"{self.route} [{self.note}]" if self.note else self.route

    @property
    def methods(self) -> tuple[str, ...]:
        # Starlette answers HEAD wherever it answers GET, with the same handler.
        return (self.method, "HEAD") if self.method == "GET" else (self.method,)

    def expected(self, role: str) -> int:
        return self.statuses[ROLES.index(role)]


def row(method: str, route: str, *statuses: int, **options: Any) -> Row:
    return Row(method, route, statuses, **options)


# --- bodies and preparations ---------------------------------------------------------


def _admin(cell: Cell) -> Actor:
    a = cell.clinic.admin
    return Actor(a.id, a.role, a.name, a.email)


def _prescriber(cell: Cell) -> Actor:
    p = cell.clinic.prescriber
    return Actor(p.id, p.role, p.name, p.email)


def lithium_level(cell: Cell) -> dict[str, Any]:
    """A lab result (server/lab_rules.toml) taken today in the clinic's zone."""
    zone = ZoneInfo(cell.services.settings.clinic_timezone)
    return {"test": "lithium_level", "value": 0.8, "unit": "mmol/L",
            "taken_on": cell.services.clock.now().astimezone(zone).date().isoformat()}


def unique_email() -> str:
    return f"new-{uuid.uuid4().hex[:12]}@clinic.test"


def located(cell: Cell) -> dict[str, Any]:
    """The clinic's patient confirmed where they are today (CLINICAL.md invariant 10)."""
    patient = cell.clinic.patient

    async def confirm() -> None:
        async with cell.services.transaction() as session:
            await checkins.confirm_emergency_info(
                session, cell.services,
                Actor(patient.id, patient.role, patient.name, patient.email),
                cell.clinic.visit_id, {"location": {"address": "12 Elm Street, Springfield",
                                                    "state": "MA"},
                                       "callback_phone": "+1 617 555 0100"})

    cell.run(confirm)
    return {}


def fresh_visit(cell: Cell) -> dict[str, Any]:
    """A new visit of the patient, for rows that a visit answers only once (a check-in);
    the join link is for this visit."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            now = cell.services.clock.now()
            visit = Visit(patient_id=cell.clinic.patient.id,
                          prescriber_id=cell.clinic.prescriber.id, kind=VisitKind.follow_up,
                          scheduled_at=now + timedelta(hours=2), duration_minutes=15,
                          status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    visit_id = cell.run(make)
    return {"visit_id": visit_id, "join_visit_id": visit_id}


def started_visit(cell: Cell) -> dict[str, Any]:
    """A new visit of the patient that began ten minutes ago (one the patient can have
    missed); the join link is for this visit."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            now = cell.services.clock.now()
            visit = Visit(patient_id=cell.clinic.patient.id,
                          prescriber_id=cell.clinic.prescriber.id, kind=VisitKind.follow_up,
                          scheduled_at=now - timedelta(minutes=10), duration_minutes=15,
                          status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    visit_id = cell.run(make)
    return {"visit_id": visit_id, "join_visit_id": visit_id}


def other_visit(cell: Cell) -> dict[str, Any]:
    """Another visit of the same patient; the join link stays on the clinic's visit."""
    return fresh_visit(cell) | {"join_visit_id": cell.clinic.visit_id}


def missing_visit(cell: Cell) -> dict[str, Any]:
    return {"visit_id": 2**31 - 1, "join_visit_id": cell.clinic.visit_id}


def join_token(cell: Cell) -> dict[str, Any]:
    async def make() -> str:
        async with cell.services.transaction() as session:
            visit = await session.get(Visit, cell.clinic.visit_id)
            assert visit is not None
            return make_join_token(cell.services, visit)

    return {"t": cell.run(make)}


def guest_invitation(cell: Cell) -> dict[str, Any]:
    """A guest invited to the clinic's visit; the token from their link."""
    token = secrets.token_urlsafe(32)

    async def make() -> None:
        async with cell.services.transaction() as session:
            now = cell.services.clock.now()
            session.add(VisitGuest(visit_id=cell.clinic.visit_id, name="Ana Interpreter",
                                   email="ana@interpreters.test", token_hash=token_hash(token),
                                   invited_by_id=cell.clinic.prescriber.id, invited_at=now,
                                   expires_at=now + timedelta(hours=1)))

    cell.run(make)
    return {"t": token}


def guest_to_revoke(cell: Cell) -> dict[str, Any]:
    """A guest of the clinic's visit, for one cell to revoke."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            now = cell.services.clock.now()
            guest = VisitGuest(visit_id=cell.clinic.visit_id, name="Sam Family",
                               email="sam@family.test",
                               token_hash=token_hash(secrets.token_urlsafe(32)),
                               invited_by_id=cell.clinic.prescriber.id, invited_at=now,
                               expires_at=now + timedelta(hours=1))
            session.add(guest)
            await session.flush()
            return guest.id

    return {"guest_id": cell.run(make)}


# Days ahead of the scheduling pages' bookings, one each: the pages refuse a time the
# prescriber is busy (409), and every fresh visit of the matrix is in two hours.
_SLOTS = itertools.count(400)


def free_slot(cell: Cell) -> dict[str, Any]:
    zone = ZoneInfo(cell.services.settings.clinic_timezone)
    day = cell.services.clock.now().astimezone(zone).date() + timedelta(days=next(_SLOTS))
    return {"visit_date": day.isoformat(), "visit_time": "10:00", "duration_minutes": "15"}


def new_visit_form(cell: Cell) -> dict[str, Any]:
    return {"patient_id": str(cell.clinic.patient.id),
            "prescriber_id": str(cell.clinic.prescriber.id),
            "kind": "follow_up"} | free_slot(cell) | csrf_only(cell)


def throwaway_team_member(cell: Cell) -> dict[str, Any]:
    """A coordinator put on the patient's care team for this cell to remove."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            now = cell.services.clock.now()
            member = await create_user(session, None, email=unique_email(), name="Temp",
                                       role=Role.coordinator, password=None, now=now)
            await add_to_care_team(session, _admin(cell), patient_id=cell.clinic.patient.id,
                                   member_id=member.id, now=now)
            return member.id

    return {"member_id": cell.run(make)}


def throwaway_patient(cell: Cell) -> dict[str, Any]:
    """A patient for break-glass, so the admin's grant does not open the clinic's patient
    to the admin in later cells."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            user = await create_user(session, None, email=unique_email(), name="Temp",
                                     role=Role.patient, password=None,
                                     now=cell.services.clock.now())
            return user.id

    return {"glass_patient_id": cell.run(make)}


def signed_note(cell: Cell) -> dict[str, Any]:
    """A fresh visit whose note the prescriber has signed."""
    values = fresh_visit(cell)

    async def sign() -> None:
        # With a safety assessment: an earlier row may have left the patient an open
        # escalation, which gates signing (CLINICAL.md invariant 7).
        async with cell.services.transaction() as session:
            await save_note(session, cell.services, _prescriber(cell), values["visit_id"],
                            NoteSave(version=0, sections={
                                "safety_assessed": "Ideation, intent, plan and means asked",
                                "safety_risk_judgement": "low",
                                "safety_plan": "Safety plan reviewed, crisis numbers given"}))
        async with cell.services.transaction() as session:
            await sign_note(session, cell.services, _prescriber(cell), values["visit_id"],
                            1)

    cell.run(sign)
    return values


def escalation(status: EscalationStatus) -> Make:
    """An escalation of the patient in ``status``, made for one cell: acknowledging,
    logging and resolving move it on, so no two cells may share one."""

    def prepare(cell: Cell) -> dict[str, Any]:
        async def make() -> tuple[int, int]:
            async with cell.services.transaction() as session:
                now = cell.services.clock.now()
                # A patient of its own, on the clinic patient's care team: one open
                # escalation per patient is what the database allows.
                patient = await create_user(session, None, email=unique_email(),
                                            name="Temp", role=Role.patient, password=None,
                                            now=now)
                admin = Actor(cell.clinic.admin.id, Role.admin, "Admin", "a@x.test")
                for member in (cell.clinic.prescriber.id, cell.clinic.coordinator.id):
                    await add_to_care_team(session, admin, patient_id=patient.id,
                                           member_id=member, now=now)
                acknowledged = status is not EscalationStatus.open
                row = Escalation(
                    patient_id=patient.id, level="urgent", reasons=["relapse"],
                    source="manual", status=status, raised_at=now, realerts=0,
                    raised_by_id=cell.clinic.prescriber.id,
                    ack_due_at=now + timedelta(hours=1),
                    acknowledged_at=now if acknowledged else None,
                    acknowledged_by_id=cell.clinic.coordinator.id if acknowledged else None)
                session.add(row)
                await session.flush()
                return row.id, patient.id

        escalation_id, patient_id = cell.run(make)
        return {"escalation_id": escalation_id, "audited_patient_id": patient_id}

    return prepare


def tpo_consent(cell: Cell) -> dict[str, Any]:
    return {"kind": "tpo", "categories": ["sud_measures", "sud_checkin", "moud"],
            "recipient_classes": ["treating_providers"], "purposes": ["treatment"],
            "expiry_event": "When I leave the program"}


REFERRAL = {"program_name": "Riverside Recovery Center", "level_of_care": "residential"}


def a_referral(cell: Cell) -> dict[str, Any]:
    """An escalation of a patient made for this cell, and a referral packet of it."""
    values = escalation(EscalationStatus.open)(cell)

    async def make() -> int:
        async with cell.services.transaction() as session:
            made = await referrals.make(
                session, _prescriber(cell), values["escalation_id"],
                referrals.ReferralBody.model_validate(REFERRAL),
                now=cell.services.clock.now(),
                zone=cell.services.settings.clinic_timezone, organization="Mendwell")
            return made.id

    return values | {"referral_id": cell.run(make)}


def consent_form(cell: Cell) -> dict[str, Any]:
    return {"kind": "tpo", "categories": "moud", "recipient_classes": "treating_providers",
            "purposes": "treatment", "expiry_event": "When I leave the program",
            "signed_name": cell.clinic.patient.name}


def a_consent(cell: Cell) -> dict[str, Any]:
    """A consent of the clinic's patient, recorded from paper, for the cell to revoke."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            body = consents.ConsentBody.model_validate(tpo_consent(cell) | {
                "signed_name": cell.clinic.patient.name,
                "signed_on": cell.services.clock.now().date().isoformat()})
            made = await consents.record_paper(session, _prescriber(cell),
                                               cell.clinic.patient.id, body,
                                               now=cell.services.clock.now(),
                                               zone=cell.services.settings.clinic_timezone)
            return made.id

    return {"consent_id": cell.run(make)}


def on_call_person(cell: Cell) -> dict[str, Any]:
    """A coordinator on nobody's care team, for a shift a month ahead: who is on call now
    (and so sees every team's escalations) stays as the clinic had it."""

    async def make() -> int:
        async with cell.services.transaction() as session:
            user = await create_user(session, None, email=unique_email(), name="Temp",
                                     role=Role.coordinator, password=None,
                                     now=cell.services.clock.now())
            return user.id

    return {"on_call_user_id": cell.run(make)}


def month_ahead(cell: Cell) -> tuple[datetime, datetime]:
    start = cell.services.clock.now() + timedelta(days=30)
    return start, start + timedelta(hours=8)


def future_shift_body(cell: Cell) -> dict[str, Any]:
    start, end = month_ahead(cell)
    return {"user_id": cell.values["on_call_user_id"], "starts_at": start.isoformat(),
            "ends_at": end.isoformat()}


def future_shift_form(cell: Cell) -> dict[str, Any]:
    start, end = month_ahead(cell)
    zone = ZoneInfo(cell.services.settings.clinic_timezone)
    return {"user_id": str(cell.values["on_call_user_id"]),
            "starts_at": start.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
            "ends_at": end.astimezone(zone).strftime("%Y-%m-%dT%H:%M")} | csrf_only(cell)


def shift_to_end(cell: Cell) -> dict[str, Any]:
    """A shift a month ahead, of a person made for this cell, for the cell to end."""
    values = on_call_person(cell)
    start, end = month_ahead(cell)

    async def make() -> int:
        async with cell.services.transaction() as session:
            shift = await add_shift(session, None, user_id=values["on_call_user_id"],
                                    starts_at=start, ends_at=end,
                                    now=cell.services.clock.now())
            return shift.id

    return values | {"shift_id": cell.run(make)}


def hello(cell: Cell) -> dict[str, Any]:
    return {"type": "hello", "peer_id": f"matrix-{uuid.uuid4().hex[:16]}",
            "polite_capable": False}


def new_visit_body(cell: Cell) -> dict[str, Any]:
    when = cell.services.clock.now() + timedelta(days=1)
    return {"patient_id": cell.clinic.patient.id, "prescriber_id": cell.clinic.prescriber.id,
            "kind": "follow_up", "scheduled_at": when.isoformat()}


def same_password(cell: Cell) -> dict[str, Any]:
    return {"current_password": PASSWORD, "new_password": PASSWORD}


def csrf_only(cell: Cell) -> dict[str, Any]:
    return {"csrf_token": cell.csrf}


def patient_credentials(cell: Cell) -> dict[str, Any]:
    return {"email": cell.clinic.patient.email, "password": PASSWORD}


# --- the matrix ----------------------------------------------------------------------

# Columns, in the order of ROLES:
#    anon     patient  patient2 join     presc    o.presc  coord    o.coord  admin
API = [
    row("GET", "/healthz",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    row("GET", "/api/v1/openapi.json",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    row("POST", "/api/v1/session",
        200,     200,     200,     200,     200,     200,     200,     200,     200,
        json=patient_credentials),
    row("GET", "/api/v1/session",
        401,     200,     200,     200,     200,     200,     200,     200,     200),
    row("DELETE", "/api/v1/session",
        401,     204,     204,     204,     204,     204,     204,     204,     204),
    # A join-link session may set a first password, not change an existing one.
    row("PUT", "/api/v1/account/password",
        401,     204,     204,     403,     204,     204,     204,     204,     204,
        json=same_password),
    row("GET", "/api/v1/visits",
        401,     200,     200,     200,     200,     200,     200,     200,     200),
    # Unassigned staff are refused through access_patient: 403, audited as denied.
    row("POST", "/api/v1/visits",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=new_visit_body),
    row("GET", "/api/v1/visits/{visit_id}",
        401,     200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED),
    row("GET", "/api/v1/visits/{visit_id}",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED,
        prepare=other_visit, note="another visit of the patient"),
    row("GET", "/api/v1/visits/{visit_id}",
        401,     404,     404,     404,     404,     404,     404,     404,     404,
        prepare=missing_visit, note="no such visit"),
    row("POST", "/api/v1/visits/{visit_id}/invite",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403),
    # On a visit of its own: revoking signs out the join-link sessions of the visit.
    row("POST", "/api/v1/visits/{visit_id}/join-links/revoke",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=fresh_visit),
    # Moving or calling off a visit: the care team's prescribers and coordinators only,
    # from a full session (a join link's is refused).
    row("PATCH", "/api/v1/visits/{visit_id}",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=fresh_visit, json=lambda cell: {"duration_minutes": 30}),
    row("POST", "/api/v1/visits/{visit_id}/cancel",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=fresh_visit),
    # A no-show, like a cancellation: the care team's prescribers and coordinators.
    row("POST", "/api/v1/visits/{visit_id}/no-show",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=started_visit),
    # "Running late" for the patient waiting: the care team's prescribers and
    # coordinators, from a full session.
    row("POST", "/api/v1/visits/{visit_id}/running-late",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=fresh_visit, json=lambda cell: {"minutes": 10}),
    row("GET", "/api/v1/instruments",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    row("POST", "/api/v1/triage",
        200,     200,     200,     200,     200,     200,     200,     200,     200,
        json=lambda cell: {"responses": {"phq9": {"answers": [1, 1, 0, 0, 0, 0, 0, 0, 0]}}}),
    row("GET", "/api/v1/visits/{visit_id}/checkin",
        401,     200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED),
    # The call's chat is part of the visit's record: whoever may read the visit.
    row("GET", "/api/v1/visits/{visit_id}/chat",
        401,     200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED),
    # Only the patient fills in a check-in; their care team reads it.
    row("PUT", "/api/v1/visits/{visit_id}/checkin/draft",
        401,     200,     DENIED,  200,     403,     DENIED,  403,     DENIED,  DENIED,
        json=lambda cell: checkin_body(), prepare=fresh_visit),
    # The patient confirms where they are now (also the join link's session).
    row("PUT", "/api/v1/visits/{visit_id}/checkin/emergency-info",
        401,     200,     DENIED,  200,     403,     DENIED,  403,     DENIED,  DENIED,
        json=lambda cell: {"location": {"address": "12 Elm Street, Springfield",
                                        "state": "MA"},
                           "callback_phone": "617 555 0100"}, prepare=fresh_visit),
    row("POST", "/api/v1/visits/{visit_id}/checkin",
        401,     201,     DENIED,  201,     403,     DENIED,  403,     DENIED,  DENIED,
        json=lambda cell: checkin_body(), prepare=fresh_visit),
    row("GET", "/api/v1/patients/{patient_id}/measures",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("GET", "/api/v1/patients/{patient_id}/fhir",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    # The note is the care team's; only the visit's prescribers write and sign it.
    row("GET", "/api/v1/visits/{visit_id}/note",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  DENIED),
    row("PUT", "/api/v1/visits/{visit_id}/note",
        401,     403,     403,     403,     200,     DENIED,  403,     403,     403,
        prepare=fresh_visit, json=lambda cell: {"version": 0, "sections": {}}),
    row("POST", "/api/v1/visits/{visit_id}/note/sign",
        401,     403,     403,     403,     200,     DENIED,  403,     403,     403,
        prepare=fresh_visit, json=lambda cell: {"version": 0}),
    # Read only, but asked by the signer: the same access as the sign.
    row("POST", "/api/v1/visits/{visit_id}/note/sign-check",
        401,     403,     403,     403,     200,     DENIED,  403,     403,     403,
        prepare=fresh_visit, json=lambda cell: {"version": 0}),
    row("POST", "/api/v1/visits/{visit_id}/note/addenda",
        401,     403,     403,     403,     201,     DENIED,  403,     403,     403,
        prepare=signed_note, json=lambda cell: {"text": "Called the pharmacy."}),
    row("POST", "/api/v1/visits/{visit_id}/next-visit",
        401,     403,     403,     403,     201,     DENIED,  403,     403,     403,
        json=lambda cell: {"days": 28}),
    row("GET", "/api/v1/visits/{visit_id}/summary",
        401,     200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED,
        prepare=signed_note),
    # Controlled substances by telehealth: a prescriber's licences and DEA registrations
    # gate their signing, so admins record them and the prescriber only reads them;
    # PDMP checks are the visit's prescriber's to record and the care team's to read.
    row("GET", "/api/v1/prescribers/{prescriber_id}/credentials",
        401,     403,     403,     403,     200,     403,     403,     403,     200),
    row("PUT", "/api/v1/prescribers/{prescriber_id}/credentials",
        401,     403,     403,     403,     403,     403,     403,     403,     200,
        json=lambda cell: {"credentials": [{"state": "NY", "license_number": "NY-12345",
                                            "dea_number": "AB1234563"}]}),
    row("GET", "/api/v1/visits/{visit_id}/pdmp-checks",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/api/v1/visits/{visit_id}/pdmp-checks",
        401,     403,     403,     403,     201,     DENIED,  403,     403,     403,
        json=lambda cell: {"state": "NY", "result": "reviewed"}),
    row("GET", "/api/v1/patients/{patient_id}/medications",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/api/v1/visits/{visit_id}/guests",
        401,     403,     403,     403,     201,     DENIED,  403,     403,     403,
        json=lambda cell: {"name": "Ana Interpreter", "email": "ana@interpreters.test"}),
    # 42 CFR Part 2: the patient (full session) and the care team see consents and the
    # accounting; only the patient signs here, only staff record a paper consent or
    # disclose; admins never without break-glass, and never to change.
    row("GET", "/api/v1/patients/{patient_id}/consents",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/api/v1/patients/{patient_id}/consents",
        401,     201,     DENIED,  DENIED,  403,     403,     403,     403,     403,
        json=lambda cell: tpo_consent(cell) | {"signed_name": cell.clinic.patient.name}),
    row("POST", "/api/v1/patients/{patient_id}/consents/paper",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=lambda cell: tpo_consent(cell) | {
            "signed_name": cell.clinic.patient.name,
            "signed_on": cell.services.clock.now().date().isoformat()}),
    row("POST", "/api/v1/consents/{consent_id}/revoke",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED,
        prepare=a_consent),
    row("GET", "/api/v1/patients/{patient_id}/consents/fhir",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/api/v1/patients/{patient_id}/disclosures/fhir",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        json=lambda cell: {"recipient": {"name": "Riverside Recovery Center",
                                         "recipient_class": "treating_providers"},
                           "purpose": "treatment"}),
    row("POST", "/api/v1/patients/{patient_id}/disclosures/emergency",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=lambda cell: {"recipient_name": "Dr. Lee", "affiliation": "City Hospital ED",
                           "nature": "Unresponsive after a suspected opioid overdose"}),
    row("GET", "/api/v1/patients/{patient_id}/disclosures",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    # The patient agrees to a guest's presence (42 CFR Part 2); nobody agrees for them.
    row("POST", "/api/v1/visits/{visit_id}/guests/{guest_id}/consent",
        401,     201,     DENIED,  201,     403,     403,     403,     403,     403,
        prepare=guest_to_revoke),
    # SUD counseling notes: the care team's prescribers and coordinators only.
    row("GET", "/api/v1/patients/{patient_id}/counseling-notes",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403),
    row("POST", "/api/v1/patients/{patient_id}/counseling-notes",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=lambda cell: {"text": "Discussed cravings and a relapse prevention plan."}),
    # Lab results (server/labs.py): whoever may read the record reads them; the care
    # team's prescribers and coordinators enter them.
    row("GET", "/api/v1/patients/{patient_id}/labs",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/api/v1/patients/{patient_id}/labs",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=lithium_level),
    # A referral packet for a step-up: whoever may act on the escalation.
    row("POST", "/api/v1/escalations/{escalation_id}/referrals",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        prepare=escalation(EscalationStatus.open), json=lambda cell: REFERRAL),
    row("GET", "/api/v1/escalations/{escalation_id}/referrals/{referral_id}",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=a_referral),
    # Escalations are the care team's work: prescribers and coordinators, per team.
    row("GET", "/api/v1/escalations",
        401,     403,     403,     403,     200,     200,     200,     200,     403),
    row("POST", "/api/v1/escalations",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        json=lambda cell: {"patient_id": cell.clinic.patient.id, "level": "urgent",
                           "reason": "relapse"}),
    row("GET", "/api/v1/escalations/measures",
        401,     403,     403,     403,     200,     200,     200,     200,     403),
    row("GET", "/api/v1/escalations/{escalation_id}",
        401,     DENIED,  DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED,
        prepare=escalation(EscalationStatus.open)),
    row("POST", "/api/v1/escalations/{escalation_id}/acknowledge",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=escalation(EscalationStatus.open)),
    row("POST", "/api/v1/escalations/{escalation_id}/assign",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=escalation(EscalationStatus.open),
        json=lambda cell: {"assignee_id": cell.clinic.coordinator.id}),
    row("POST", "/api/v1/escalations/{escalation_id}/events",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        prepare=escalation(EscalationStatus.acknowledged),
        json=lambda cell: {"kind": "note", "text": "Left a message with the pharmacy."}),
    # A dropped call is reported in any state but resolved: an unacknowledged emergency
    # is when it matters most.
    row("POST", "/api/v1/escalations/{escalation_id}/call-dropped",
        401,     403,     403,     403,     201,     DENIED,  201,     DENIED,  403,
        prepare=escalation(EscalationStatus.open), json=lambda cell: {}),
    row("POST", "/api/v1/escalations/{escalation_id}/resolve",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=escalation(EscalationStatus.acknowledged),
        json=lambda cell: {"disposition": "mobile_crisis",
                           "note": "Mobile crisis team went to the home."}),
    row("GET", "/api/v1/users",
        401,     403,     403,     403,     403,     403,     403,     403,     200),
    row("POST", "/api/v1/users",
        401,     403,     403,     403,     403,     403,     403,     403,     201,
        json=lambda cell: {"email": unique_email(), "name": "New Person",
                           "role": "coordinator"}),
    row("PATCH", "/api/v1/users/{user_id}",
        401,     403,     403,     403,     403,     403,     403,     403,     200,
        json=lambda cell: {"is_active": True}),
    # Admins manage care teams, so they see who is on one (not the clinical record).
    # The substance-use track is the care team's setting (prescribers, coordinators).
    row("PUT", "/api/v1/patients/{patient_id}/substance-use-track",
        401,     403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        json=lambda cell: {"on": False}),
    row("GET", "/api/v1/patients/{patient_id}/care-team",
        401,     200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  200),
    row("POST", "/api/v1/patients/{patient_id}/care-team",
        401,     403,     403,     403,     403,     403,     403,     403,     201,
        json=lambda cell: {"member_id": cell.clinic.prescriber.id}),
    row("DELETE", "/api/v1/patients/{patient_id}/care-team/{member_id}",
        401,     403,     403,     403,     403,     403,     403,     403,     204,
        prepare=throwaway_team_member),
    row("POST", "/api/v1/break-glass",
        401,     403,     403,     403,     403,     403,     403,     403,     201,
        prepare=throwaway_patient,
        json=lambda cell: {"patient_id": cell.values["glass_patient_id"],
                           "reason": "Patient unreachable after an emergency check-in"}),
    row("GET", "/api/v1/audit",
        401,     403,     403,     403,     403,     403,     403,     403,     200),
    row("GET", "/api/v1/audit.csv",
        401,     403,     403,     403,     403,     403,     403,     403,     200),
    row("GET", "/api/v1/outbox",
        401,     403,     403,     403,     403,     403,     403,     403,     200),
    # The on-call rota: all staff read it (a coordinator's backup); only admins change it.
    row("GET", "/api/v1/on-call",
        401,     403,     403,     403,     200,     200,     200,     200,     200),
    row("POST", "/api/v1/on-call",
        401,     403,     403,     403,     403,     403,     403,     403,     201,
        prepare=on_call_person, json=future_shift_body),
    row("POST", "/api/v1/on-call/{shift_id}/end",
        401,     403,     403,     403,     403,     403,     403,     403,     200,
        prepare=shift_to_end),
]

#    anon     patient  patient2 join     presc    o.presc  coord    o.coord  admin
PAGES = [
    row("GET", "/",
        LOGIN,   303,     303,     303,     303,     303,     303,     303,     303),
    # A join-link session is not a full sign-in, so the sign-in page still shows.
    row("GET", "/login",
        200,     303,     303,     200,     303,     303,     303,     303,     303),
    row("POST", "/login",
        303,     303,     303,     303,     303,     303,     303,     303,     303,
        form=patient_credentials),
    row("POST", "/logout",
        LOGIN,   303,     303,     303,     303,     303,     303,     303,     303,
        form=csrf_only),
    # The join link itself is the credential: whoever holds it may use it.
    row("GET", "/visits/{visit_id}/join",
        200,     200,     200,     200,     200,     200,     200,     200,     200,
        prepare=join_token, query=lambda cell: {"t": cell.values["t"]}),
    row("POST", "/visits/{visit_id}/join",
        303,     303,     303,     303,     303,     303,     303,     303,     303,
        prepare=join_token, form=lambda cell: {"t": cell.values["t"]}),
    # A guest's invitation link is their credential too; without a good one, a plain 400.
    row("GET", "/visits/{visit_id}/guest",
        200,     200,     200,     200,     200,     200,     200,     200,     200,
        prepare=guest_invitation, query=lambda cell: {"t": cell.values["t"]}),
    row("GET", "/visits/{visit_id}/guest",
        400,     400,     400,     400,     400,     400,     400,     400,     400,
        query=lambda cell: {"t": "not-a-real-invitation-token"}, note="a made-up token"),
    # Asking for a reset link answers everyone alike, account or not; the emailed link
    # is the credential for setting the password (tests/test_password_reset.py).
    row("GET", "/password-reset",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    row("POST", "/password-reset",
        200,     200,     200,     200,     200,     200,     200,     200,     200,
        # A new address each cell: the matrix shares its database, and three asks for
        # one address reach that address's limit (429).
        form=lambda cell: {"email": f"nobody-{uuid.uuid4().hex[:12]}@clinic.test"}),
    row("GET", "/password-reset/new",
        400,     400,     400,     400,     400,     400,     400,     400,     400,
        query=lambda cell: {"t": "not-a-real-reset-token"}),
    row("POST", "/password-reset/new",
        400,     400,     400,     400,     400,     400,     400,     400,     400,
        form=lambda cell: {"t": "not-a-real-reset-token", "new_password": "a new passphrase",
                           "confirm_password": "a new passphrase"}),
    row("GET", "/account/password",
        LOGIN,   200,     200,     200,     200,     200,     200,     200,     200),
    row("POST", "/account/password",
        LOGIN,   200,     200,     403,     200,     200,     200,     200,     200,
        form=lambda cell: same_password(cell) | csrf_only(cell)),
    # A patient's own time zone; a join-link session sees it but may not change it.
    row("GET", "/account/time-zone",
        LOGIN,   200,     200,     200,     403,     403,     403,     403,     403),
    row("POST", "/account/time-zone",
        LOGIN,   200,     200,     403,     403,     403,     403,     403,     403,
        form=lambda cell: {"timezone": "America/Chicago"} | csrf_only(cell)),
    row("GET", "/home",
        LOGIN,   200,     200,     200,     403,     403,     403,     403,     403),
    row("GET", "/day",
        LOGIN,   403,     403,     403,     200,     200,     403,     403,     403),
    row("GET", "/coordinator",
        LOGIN,   403,     403,     403,     403,     403,     200,     200,     403),
    # The patient confirmed where they are today: before that the room sends them to
    # "Where are you right now?" (303, tests/test_location_step.py).
    row("GET", "/visits/{visit_id}",
        LOGIN,   200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED,
        prepare=located),
    row("GET", "/visits/{visit_id}",
        LOGIN,   200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED,
        prepare=lambda cell: located(cell) | other_visit(cell),
        note="another visit of the patient"),
    # "Where are you right now?" before the room: the patient's own step (invariant 10).
    row("GET", "/visits/{visit_id}/where",
        LOGIN,   200,     DENIED,  200,     403,     403,     403,     403,     403),
    row("POST", "/visits/{visit_id}/where",
        LOGIN,   303,     DENIED,  303,     403,     403,     403,     403,     403,
        form=lambda cell: {"address": "12 Elm Street, Springfield", "state": "MA",
                           "callback_phone": "617 555 0100", "confirm": "yes"}
        | csrf_only(cell)),
    row("GET", "/visits/{visit_id}",
        LOGIN,   404,     404,     404,     404,     404,     404,     404,     404,
        prepare=missing_visit, note="no such visit"),
    # The note panel's parts, fetched again live (web/pages/note_panel.py PARTS): the
    # panel's readers only; a patient's own visit has no such part.
    *(row("GET", "/visits/{visit_id}",
          LOGIN,   404,     DENIED,  404,     200,     DENIED,  200,     DENIED,  DENIED,
          query=lambda cell, name=name: {"part": name}, note=f"part={name}")
      for name in ("safety", "medications", "labs", "trends", "costs", "controlled")),
    row("GET", "/visits/{visit_id}/summary",
        LOGIN,   200,     DENIED,  200,     200,     DENIED,  200,     DENIED,  DENIED,
        prepare=signed_note),
    # The prescriber's preview of the summary from the draft: the care team's, not the
    # patient's (who reads the signed summary only).
    row("GET", "/visits/{visit_id}/summary/preview",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  DENIED,
        prepare=fresh_visit),
    # Scheduling, moving, cancelling and guests: the care team's prescribers and
    # coordinators (web/pages/scheduling.py); the list of patients offered is the
    # actor's own, so a page for someone else's patient is refused and audited.
    row("GET", "/visits/new",
        LOGIN,   403,     403,     403,     200,     200,     200,     200,     403),
    row("GET", "/visits/new",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        query=lambda cell: {"patient": str(cell.clinic.patient.id)}, note="for a patient"),
    row("POST", "/visits/new",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        form=new_visit_form),
    row("GET", "/visits/{visit_id}/change",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403),
    row("POST", "/visits/{visit_id}/change",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        prepare=fresh_visit, form=lambda cell: free_slot(cell) | csrf_only(cell)),
    row("POST", "/visits/{visit_id}/cancel",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        prepare=fresh_visit, form=csrf_only),
    row("GET", "/visits/{visit_id}/guests",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403),
    # Inviting is the prescriber's (server.guests.invite_guest); revoking the team's.
    row("POST", "/visits/{visit_id}/guests",
        LOGIN,   403,     403,     403,     303,     DENIED,  403,     403,     403,
        form=lambda cell: {"name": "Ana Interpreter", "email": "ana@interpreters.test"}
        | csrf_only(cell)),
    row("POST", "/visits/{visit_id}/guests/{guest_id}/revoke",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        prepare=guest_to_revoke, form=csrf_only),
    # The offline page's service worker: one static file, no data, no session needed.
    row("GET", "/visits/offline-worker.js",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    # The vocabularies the browser's modules import: generated, no data, no session.
    row("GET", "/static/vocabulary.js",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
    row("GET", "/visits/{visit_id}/checkin",
        LOGIN,   200,     DENIED,  200,     403,     403,     403,     403,     403),
    # A patient's own page is their progress page.
    row("GET", "/patients/{patient_id}",
        LOGIN,   303,     DENIED,  303,     200,     DENIED,  200,     DENIED,  DENIED),
    # 42 CFR Part 2 pages: the patient's own (a password session), the care team's.
    row("GET", "/privacy",
        LOGIN,   200,     200,     403,     403,     403,     403,     403,     403),
    row("GET", "/privacy/consents/new",
        LOGIN,   200,     200,     403,     403,     403,     403,     403,     403),
    # patient2 passes authorization and signs with another's name: refused as invalid.
    row("POST", "/privacy/consents",
        LOGIN,   303,     422,     DENIED,  403,     403,     403,     403,     403,
        form=lambda cell: consent_form(cell) | csrf_only(cell)),
    row("POST", "/privacy/consents/{consent_id}/revoke",
        LOGIN,   303,     DENIED,  DENIED,  303,     DENIED,  303,     DENIED,  DENIED,
        prepare=a_consent, form=csrf_only),
    row("GET", "/privacy/disclosures",
        LOGIN,   200,     200,     403,     403,     403,     403,     403,     403),
    row("GET", "/patients/{patient_id}/privacy",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  DENIED),
    row("POST", "/patients/{patient_id}/privacy/consents",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        form=lambda cell: consent_form(cell) | {
            "signed_on": cell.services.clock.now().date().isoformat()} | csrf_only(cell)),
    row("POST", "/patients/{patient_id}/privacy/emergency",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        form=lambda cell: {"recipient_name": "Dr. Lee", "affiliation": "City Hospital ED",
                           "nature": "Unresponsive after a suspected overdose"}
        | csrf_only(cell)),
    row("GET", "/patients/{patient_id}/privacy/disclosures",
        LOGIN,   200,     DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED),
    row("GET", "/escalations/{escalation_id}/emergency-disclosure",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=escalation(EscalationStatus.open)),
    row("POST", "/escalations/{escalation_id}/emergency-disclosure",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        prepare=escalation(EscalationStatus.open),
        form=lambda cell: {"recipient_name": "Dr. Lee", "affiliation": "City Hospital ED",
                           "nature": "Unresponsive after a suspected overdose"}
        | csrf_only(cell)),
    row("POST", "/visits/{visit_id}/guests/{guest_id}/consent",
        LOGIN,   303,     DENIED,  303,     403,     403,     403,     403,     403,
        prepare=guest_to_revoke, form=csrf_only),
    row("GET", "/escalations/{escalation_id}/referral",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=escalation(EscalationStatus.open)),
    row("POST", "/escalations/{escalation_id}/referral",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        prepare=escalation(EscalationStatus.open),
        form=lambda cell: REFERRAL | csrf_only(cell)),
    row("GET", "/escalations/{escalation_id}/referrals/{referral_id}",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403,
        prepare=a_referral),
    row("GET", "/patients/{patient_id}/counseling-notes",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403),
    row("POST", "/patients/{patient_id}/counseling-notes",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        form=lambda cell: {"text": "Discussed cravings and a relapse prevention plan."}
        | csrf_only(cell)),
    row("GET", "/patients/{patient_id}/labs",
        LOGIN,   403,     403,     403,     200,     DENIED,  200,     DENIED,  403),
    row("POST", "/patients/{patient_id}/labs",
        LOGIN,   403,     403,     403,     303,     DENIED,  303,     DENIED,  403,
        form=lambda cell: lithium_level(cell) | {"value": "0.8"} | csrf_only(cell)),
    # A prescriber's licences and DEA registrations: admins record them, the prescriber
    # reads them (web/pages/credentials.py, the API's access).
    row("GET", "/prescribers/{prescriber_id}/credentials",
        LOGIN,   403,     403,     403,     200,     403,     403,     403,     200),
    row("POST", "/prescribers/{prescriber_id}/credentials",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        form=lambda cell: {"state": "NY", "license_number": "NY-12345",
                           "dea_number": "AB1234563"} | csrf_only(cell)),
    row("GET", "/progress",
        LOGIN,   200,     200,     DENIED,  403,     403,     403,     403,     403),
    row("GET", "/escalations/{escalation_id}",
        LOGIN,   DENIED,  DENIED,  DENIED,  200,     DENIED,  200,     DENIED,  DENIED,
        prepare=escalation(EscalationStatus.open)),
    row("GET", "/admin",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     200),
    row("POST", "/admin/users",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        form=lambda cell: {"email": unique_email(), "name": "New Person",
                           "role": "coordinator"} | csrf_only(cell)),
    row("POST", "/admin/users/{user_id}/active",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        form=lambda cell: {"active": "1"} | csrf_only(cell)),
    row("GET", "/admin/care-teams",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     200),
    row("POST", "/admin/care-teams/add",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        form=lambda cell: {"patient_id": str(cell.clinic.patient.id),
                           "member_id": str(cell.clinic.prescriber.id)} | csrf_only(cell)),
    row("POST", "/admin/care-teams/remove",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        prepare=throwaway_team_member,
        form=lambda cell: {"patient_id": str(cell.clinic.patient.id),
                           "member_id": str(cell.values["member_id"])} | csrf_only(cell)),
    row("GET", "/admin/on-call",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     200),
    row("POST", "/admin/on-call",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        prepare=on_call_person, form=future_shift_form),
    row("POST", "/admin/on-call/{shift_id}/end",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     303,
        prepare=shift_to_end, form=csrf_only),
    row("GET", "/admin/audit",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     200),
    row("GET", "/admin/outbox",
        LOGIN,   403,     403,     403,     403,     403,     403,     403,     200),
    row("GET", "/static/{path}",
        200,     200,     200,     200,     200,     200,     200,     200,     200),
]

# WebSocket rows use method "WS": after ``send``, 101 when the server answers with
# anything but an error; a refusal is an error then close code 4401/4403/4404, read as
# 401/403/404 (or the status of an HTTP denial of the upgrade).
#    anon     patient  patient2 join     presc    o.presc  coord    o.coord  admin
WEBSOCKETS = [
    # Never an admin: break-glass reads a record, it does not enter a consultation.
    row("WS", "/ws/visits/{visit_id}",
        401,     101,     DENIED,  101,     101,     DENIED,  101,     DENIED,  DENIED,
        prepare=fresh_visit, send=hello),
    row("WS", "/ws/visits/{visit_id}",
        401,     101,     DENIED,  DENIED,  101,     DENIED,  101,     DENIED,  DENIED,
        prepare=other_visit, send=hello, note="another visit of the patient"),
    row("WS", "/ws/events",
        401,     101,     101,     101,     101,     101,     101,     101,     101),
    row("WS", "/ws/device-check",
        401,     101,     101,     101,     101,     101,     101,     101,     101,
        send=lambda cell: {"type": "start"}),
]

MATRIX = [*API, *PAGES, *WEBSOCKETS]

CELLS = [pytest.param(r, method, role, id=f"{method} {r.label}-{role}")
         for r in MATRIX for method in r.methods for role in ROLES]


# --- one app and clinic per database for the whole module ---------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def matrix_database(
    request: pytest.FixtureRequest, sqlite_template: SqliteTemplate
) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_template.fresh()
        return
    # Skips (or fails under MENDWELL_REQUIRE_SERVICES=1) like every PostgreSQL test;
    # the matrix then keeps a database of its own, which other tests never empty.
    request.getfixturevalue("postgres_database")
    database = PostgresDatabase(postgres_server_url())
    yield database.url
    database.drop()


@pytest.fixture(scope="module")
def matrix_client(
    matrix_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = Settings(env="test", database_url=matrix_database, secret_key=TEST_SECRET,
                        base_url="http://testserver", var_dir=tmp_path_factory.mktemp("var"),
                        run_background_tasks=False).completed()
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


@dataclass
class Matrix:
    client: TestClient
    services: Services
    run: Runner
    sign_in: SignIn
    clinic: Clinic
    people: dict[str, Person | None] = field(default_factory=dict)


@pytest.fixture(scope="module")
def matrix(matrix_client: TestClient) -> Matrix:
    services: Services = matrix_client.app.state.services
    run = Runner(matrix_client, services)
    clinic = run(build_clinic, services)
    people: dict[str, Person | None] = {
        "anonymous": None, "patient": clinic.patient, "patient2": clinic.patient2,
        "join_link": clinic.patient, "prescriber": clinic.prescriber,
        "other_prescriber": clinic.other_prescriber, "coordinator": clinic.coordinator,
        "other_coordinator": clinic.other_coordinator, "admin": clinic.admin,
    }
    return Matrix(matrix_client, services, run, SignIn(matrix_client, run, services), clinic,
                  people)


def _values(clinic: Clinic) -> dict[str, Any]:
    return {"visit_id": clinic.visit_id, "patient_id": clinic.patient.id,
            "user_id": clinic.patient.id, "prescriber_id": clinic.prescriber.id,
            "path": "app.css"}


def _last_audit_id(m: Matrix) -> int:
    async def last() -> int:
        async with m.services.transaction() as session:
            return int(await session.scalar(select(func.max(AuditEntry.id))) or 0)

    return m.run(last)


def _denials_since(m: Matrix, after: int) -> list[tuple[int | None, int | None]]:
    async def rows() -> list[tuple[int | None, int | None]]:
        async with m.services.transaction() as session:
            found = await session.execute(
                select(AuditEntry.actor_id, AuditEntry.patient_id)
                .where(AuditEntry.id > after, AuditEntry.outcome == "denied"))
            return [(a, p) for a, p in found]

    return m.run(rows)


def _websocket_status(client: TestClient, url: str, first: dict[str, Any] | None) -> int:
    if url.startswith("/ws/visits/"):
        return _signaling_status(client, url, first)
    try:
        with client.websocket_connect(url) as socket:
            if first is not None:
                socket.send_json(first)
            while socket.receive_json().get("type") == "error":
                pass  # a refusal closes right after its error
            return 101
    except WebSocketDenialResponse as denial:
        return denial.status_code
    except WebSocketDisconnect as closed:
        return closed.code - 4000 if closed.code >= 4000 else closed.code


def _signaling_status(client: TestClient, url: str, first: dict[str, Any] | None) -> int:
    """The same, on visit signaling's own listener (signaling/listener.py), with the
    session cookie the client holds."""
    cookie = client.cookies.get(COOKIE_NAME)
    headers = {"cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
    port = app_server.signaling_port_for(client)
    try:
        with ws_connect(f"ws://127.0.0.1:{port}{url}", additional_headers=headers,
                        open_timeout=10, close_timeout=2) as socket:
            if first is not None:
                socket.send(json.dumps(first))
            while json.loads(socket.recv(timeout=10)).get("type") == "error":
                pass  # a refusal closes right after its error
            return 101
    except InvalidStatus as denial:
        return denial.response.status_code
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else 1006
        return code - 4000 if code >= 4000 else code


@pytest.mark.parametrize(("r", "method", "role"), CELLS)
def test_matrix(matrix: Matrix, r: Row, method: str, role: str) -> None:
    cell = Cell(matrix.clinic, matrix.services, matrix.run, _values(matrix.clinic))
    if r.prepare is not None:
        cell.values.update(r.prepare(cell))
    person = matrix.people[role]
    scope = cell.values.get("join_visit_id", cell.values["visit_id"])
    cell.csrf = matrix.sign_in(person, visit_id=scope if role == "join_link" else None)
    url = r.route.format(**cell.values)
    expected = r.expected(role)
    before = _last_audit_id(matrix) if isinstance(expected, Denied) else 0

    if method == "WS":
        status = _websocket_status(matrix.client, url, r.send(cell) if r.send else None)
        assert status == expected
    else:
        response = matrix.client.request(
            method, url, follow_redirects=False,
            params=r.query(cell) if r.query else None,
            json=r.json(cell) if r.json else None,
            data=r.form(cell) if r.form else None,
        )
        assert response.status_code == expected, response.text[:300]
        assert "Traceback" not in response.text
    if isinstance(expected, Denied):
        assert person is not None
        # Refusals of patient data are audited, in their own transaction (the request's
        # own one was rolled back with the refusal).
        patient_id = cell.values.get("audited_patient_id", matrix.clinic.patient.id)
        assert (person.id, patient_id) in _denials_since(matrix, before)
    if method == "WS":
        return
    if isinstance(expected, ToLogin):
        assert urlsplit(response.headers["location"]).path == "/login"
    if method != "HEAD" and response.status_code >= 400:
        if url.startswith("/api/"):
            assert set(response.json()["error"]) >= {"code", "message", "field"}
        else:
            assert response.headers["content-type"].startswith("text/html")


# --- the matrix covers the app ------------------------------------------------------


def app_routes(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, route) for every route the app answers; "*" for one that takes any method."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            found |= {("GET", f"{prefix}{route.path}/{{path}}"),
                      ("HEAD", f"{prefix}{route.path}/{{path}}")}
        elif isinstance(route, Mount):
            inner = app_routes(route.routes, prefix + route.path)
            # A mounted app without routes of its own could answer anything.
            found |= inner or {("*", f"{prefix}{route.path}/{{path}}")}
        elif isinstance(route, Route):
            found |= {(m, prefix + route.path) for m in route.methods or {"*"}}
        elif isinstance(route, WebSocketRoute):
            found.add(("WS", prefix + route.path))
        else:
            found.add(("*", f"{prefix}{type(route).__name__}"))
    return found


def test_every_route_has_a_row(tmp_path: Path) -> None:
    settings = Settings(env="test", secret_key=TEST_SECRET, var_dir=tmp_path,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
                        run_background_tasks=False).completed()
    # Visit signaling is served by its own listener, outside the app's routes.
    routes = app_routes(create_app(settings).routes) | {("WS", listener.ROUTE)}
    rows = {(method, r.route) for r in MATRIX for method in r.methods}
    missing = sorted(routes - rows)
    assert not missing, "add these to the authorization matrix (tests/test_authorization.py): " \
        + ", ".join(f"{m} {p}" for m, p in missing)
    stale = sorted(rows - routes)
    assert not stale, "these matrix rows match no route: " + \
        ", ".join(f"{m} {p}" for m, p in stale)


def test_every_role_is_refused_somewhere_and_allowed_somewhere() -> None:
    # A column that is all refusals (or all successes) is a role the matrix does not test.
    for role in ROLES:
        statuses = [r.expected(role) for r in MATRIX]
        assert any(s < 300 for s in statuses), role
        assert any(s in (401, 403) or isinstance(s, ToLogin) for s in statuses), role


def test_matrix_samples_audited_refusals_for_each_kind_of_outsider() -> None:
    audited = {role for r in MATRIX for role in ROLES if isinstance(r.expected(role), Denied)}
    assert audited == {"patient", "patient2", "join_link", "other_prescriber",
                       "other_coordinator", "admin"}
