"""``/api/v1/visits``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response

from server import visits
from server.api.registry import ApiOperation
from server.http import (
    MAX_ID,
    Instant,
    actor_of,
    datetime_param,
    json_body,
    path_id,
    services_of,
)
from server.models import VisitKind
from server.responses import JSONResponse


class NewVisit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: int = Field(gt=0, le=MAX_ID)
    prescriber_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    kind: VisitKind
    scheduled_at: Instant
    duration_minutes: int | None = Field(default=None, ge=5, le=visits.MAX_DURATION_MINUTES)
    # Off unless asked, so clients written before it book as they did.
    check_conflicts: bool = Field(
        default=False, description="Refuse with 409 schedule_conflict (the overlapping "
                                   "visits in error.conflicts) if the prescriber is busy")


class VisitChange(BaseModel):
    """A reschedule: a new start, a new length, or both (at least one)."""

    model_config = ConfigDict(extra="forbid")

    scheduled_at: Instant | None = None
    duration_minutes: int | None = Field(default=None, ge=5, le=visits.MAX_DURATION_MINUTES)
    check_conflicts: bool = Field(
        default=False, description="Refuse with 409 schedule_conflict (the overlapping "
                                   "visits in error.conflicts) if the prescriber is busy")

    @model_validator(mode="after")
    def _something_changes(self) -> VisitChange:
        if self.scheduled_at is None and self.duration_minutes is None:
            raise PydanticCustomError("nothing_to_change",
                                      "Give a new scheduled_at or duration_minutes.")
        return self


class RunningLate(BaseModel):
    """"Running about N minutes late", for the patient waiting; 0 takes it back."""

    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(ge=0, le=60, strict=True)


async def list_visits(request: Request) -> Response:
    actor = actor_of(request)
    start, end = datetime_param(request, "from"), datetime_param(request, "to")
    async with services_of(request).transaction() as session:
        found = await visits.list_visits(session, actor, start=start, end=end)
    return JSONResponse({"visits": [v.to_json() for v in found]})


async def create_visit(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, NewVisit)
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.create_visit(
            session, services, actor, patient_id=body.patient_id, prescriber_id=body.prescriber_id,
            kind=body.kind, scheduled_at=body.scheduled_at,
            duration_minutes=body.duration_minutes, now=services.clock.now(),
            refuse_conflicts=body.check_conflicts,
        )
    return JSONResponse(visit.to_json(), status_code=201)


async def get_visit(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
    return JSONResponse(visit.to_json())


async def invite(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        queued = await visits.invite_to_visit(session, services, actor, visit_id)
    return JSONResponse(queued.to_json(), status_code=201)


async def reschedule(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, VisitChange)
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.reschedule_visit(
            session, services, actor, visit_id, scheduled_at=body.scheduled_at,
            duration_minutes=body.duration_minutes, now=services.clock.now(),
            refuse_conflicts=body.check_conflicts)
    return JSONResponse(visit.to_json())


async def cancel(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.cancel_visit(session, services, actor, visit_id,
                                          now=services.clock.now())
    return JSONResponse(visit.to_json())


async def no_show(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.mark_no_show(session, actor, visit_id, now=services.clock.now())
    return JSONResponse(visit.to_json())


async def running_late(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, RunningLate)
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.set_running_late(session, actor, visit_id, minutes=body.minutes,
                                              now=services.clock.now())
    return JSONResponse(visit.to_json())


async def revoke_join_links(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        revoked = await visits.revoke_join_links(session, actor, visit_id,
                                                 now=services.clock.now())
    return JSONResponse(revoked.to_json())


OPERATIONS = [
    ApiOperation("GET", "/api/v1/visits", list_visits,
                 "Visits the caller may see (optional from/to ISO 8601 filters)", tag="visits"),
    ApiOperation("POST", "/api/v1/visits", create_visit, "Schedule a visit", body=NewVisit,
                 success=201, tag="visits"),
    ApiOperation("GET", "/api/v1/visits/{visit_id}", get_visit, "One visit", tag="visits"),
    ApiOperation("PATCH", "/api/v1/visits/{visit_id}", reschedule,
                 "Reschedule a visit not yet under way: a new start, a new length or both",
                 body=VisitChange, tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/cancel", cancel,
                 "Cancel a visit not yet under way; its join links stop working",
                 tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/no-show", no_show,
                 "Record that the patient did not come; for a patient on MOUD, outreach "
                 "follows if nothing is rebooked within 7 days", tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/running-late", running_late,
                 "Tell the patient the prescriber is running about N minutes late "
                 "(0 takes the notice back); shown in their waiting room",
                 body=RunningLate, tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/invite", invite,
                 "Email the patient a join link for this visit", success=201, tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/join-links/revoke", revoke_join_links,
                 "Withdraw every join link sent for this visit and end the sessions they "
                 "started (also done when the visit ends)", tag="visits"),
]
