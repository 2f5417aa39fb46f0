"""``/api/v1/escalations``: the queue, raising, and each step of the lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from escalation import lifecycle, queries, referrals
from escalation.referrals import ReferralBody
from escalation.vocabulary import (
    ContactOutcome,
    Disposition,
    LoggedKind,
    ManualReason,
    TaskLevel,
)
from server.api.registry import ApiOperation
from server.errors import ValidationFailed
from server.http import MAX_ID, actor_of, json_body, path_id, services_of
from server.models import EscalationStatus
from server.responses import JSONResponse
from server.timezones import clinic_zone


class NewEscalation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: int = Field(gt=0, le=MAX_ID)
    visit_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    level: TaskLevel
    reason: ManualReason
    text: str | None = Field(default=None, max_length=1000)


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: int = Field(gt=0, le=MAX_ID)


class NewEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: LoggedKind
    text: str = Field(default="", max_length=2000)
    # Required for a contact attempt (lifecycle.log_event says so, naming the field).
    outcome: ContactOutcome | None = None


class CallDropped(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visit_id: int | None = Field(default=None, gt=0, le=MAX_ID)


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disposition: Disposition
    note: str = Field(max_length=4000)
    reason: str | None = Field(default=None, max_length=2000)


def _status_filter(raw: str | None) -> queries.StatusFilter | None:
    """The queue's ``status`` query parameter: a status, or ``open`` (not resolved)."""
    if raw is None:
        return None
    if raw == "open":
        return "open"
    try:
        return EscalationStatus(raw)
    except ValueError:
        allowed = sorted({"open", *(s.value for s in EscalationStatus)})
        raise ValidationFailed(f"status must be one of {', '.join(allowed)}.",
                               field="status") from None


async def list_escalations(request: Request) -> Response:
    actor = actor_of(request)
    status = _status_filter(request.query_params.get("status"))
    async with services_of(request).transaction() as session:
        found = await queries.list_escalations(session, actor, status=status,
                                               now=services_of(request).clock.now())
    return JSONResponse({"escalations": [e.to_json() for e in found]})


async def create_escalation(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, NewEscalation)
    services = services_of(request)
    async with services.transaction() as session:
        escalation = await lifecycle.raise_manually(
            session, services, actor, patient_id=body.patient_id, visit_id=body.visit_id,
            level=body.level, reason=body.reason, text=body.text)
        data = await queries.escalation_detail(session, actor, escalation.id,
                                               now=services.clock.now())
    return JSONResponse(data.to_json(), status_code=201)


async def get_escalation(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    services = services_of(request)
    async with services.transaction() as session:
        data = await queries.escalation_detail(session, actor, escalation_id,
                                               now=services.clock.now())
    return JSONResponse(data.to_json())


async def acknowledge(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    services = services_of(request)
    async with services.transaction() as session:
        await lifecycle.acknowledge(session, services, actor, escalation_id)
        data = await queries.escalation_detail(session, actor, escalation_id,
                                               now=services.clock.now())
    return JSONResponse(data.to_json())


async def assign(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    body = await json_body(request, Assignment)
    services = services_of(request)
    async with services.transaction() as session:
        await lifecycle.assign(session, services, actor, escalation_id, body.assignee_id)
        data = await queries.escalation_detail(session, actor, escalation_id,
                                               now=services.clock.now())
    return JSONResponse(data.to_json())


async def add_event(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    body = await json_body(request, NewEvent)
    services = services_of(request)
    async with services.transaction() as session:
        event = await lifecycle.log_event(session, services, actor, escalation_id,
                                          kind=body.kind, text=body.text, outcome=body.outcome)
        data = queries.logged_event(event)
    return JSONResponse(data.to_json(), status_code=201)


async def call_dropped(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    body = await json_body(request, CallDropped)
    services = services_of(request)
    async with services.transaction() as session:
        event = await lifecycle.report_call_dropped(session, services, actor, escalation_id,
                                                    visit_id=body.visit_id)
        data = queries.logged_event(event)
    return JSONResponse(data.to_json(), status_code=201)


async def resolve(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    body = await json_body(request, Resolution)
    services = services_of(request)
    async with services.transaction() as session:
        await lifecycle.resolve(session, services, actor, escalation_id,
                                disposition=body.disposition, note=body.note,
                                reason=body.reason)
        data = await queries.escalation_detail(session, actor, escalation_id,
                                               now=services.clock.now())
    return JSONResponse(data.to_json())


async def measures(request: Request) -> Response:
    actor = actor_of(request)
    services = services_of(request)
    days = request.query_params.get("days", "30")
    if not (days.isascii() and days.isdigit()) or not 1 <= int(days) <= 366:
        raise ValidationFailed("days must be a whole number from 1 to 366.", field="days")
    until = services.clock.now()
    since: datetime = until - timedelta(days=int(days))
    async with services.transaction() as session:
        data = await queries.clinic_measures(session, actor, since=since, until=until)
    return JSONResponse(data.to_json())


async def refer(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    body = await json_body(request, ReferralBody)
    services = services_of(request)
    async with services.transaction() as session:
        made = await referrals.make(session, actor, escalation_id, body,
                                    now=services.clock.now(),
                                    zone=clinic_zone(services.settings),
                                    organization=services.settings.program_name)
    return JSONResponse(made.to_json(), status_code=201)


async def referral_bundle(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    referral_id = path_id(request, "referral_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await referrals.get(session, actor, escalation_id, referral_id,
                                    now=services.clock.now())
    return JSONResponse(found.content["bundle"], media_type="application/fhir+json")


OPERATIONS = [
    ApiOperation("GET", "/api/v1/escalations", list_escalations,
                 "Escalations of my care teams, highest level and nearest deadline first "
                 "(status=open: not resolved)", tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations", create_escalation,
                 "Raise an escalation by hand (prescriber or coordinator)",
                 body=NewEscalation, success=201, tag="escalations"),
    ApiOperation("GET", "/api/v1/escalations/measures", measures,
                 "Time to acknowledge and resolve per level (median, p90)", tag="escalations"),
    ApiOperation("GET", "/api/v1/escalations/{escalation_id}", get_escalation,
                 "One escalation with its timeline and triggering answers", tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/acknowledge", acknowledge,
                 "Acknowledge (take ownership)", tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/assign", assign,
                 "Assign or reassign", body=Assignment, tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/events", add_event,
                 "Log a contact attempt, message or note", body=NewEvent, success=201,
                 tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/call-dropped", call_dropped,
                 "The video call with the patient dropped: alert the care team at once "
                 "(any state but resolved)", body=CallDropped, success=201,
                 tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/resolve", resolve,
                 "Resolve with a disposition and a note", body=Resolution,
                 tag="escalations"),
    ApiOperation("POST", "/api/v1/escalations/{escalation_id}/referrals", refer,
                 "A referral packet to a program at a higher level of care: what the "
                 "patient's Part 2 consents allow; recorded as a disclosure",
                 body=ReferralBody, success=201, tag="privacy"),
    ApiOperation("GET", "/api/v1/escalations/{escalation_id}/referrals/{referral_id}",
                 referral_bundle, "A referral packet as it went, as a FHIR Bundle",
                 tag="privacy"),
]
