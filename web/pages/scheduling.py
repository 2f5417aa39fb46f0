"""The care team's scheduling pages: book a visit, move or cancel it, invite its guests.

Times are typed on the clinic's clock (every staff page reads it) and shown on the
patient's too, each zone named, so a booking for a patient two zones away is not an hour
wrong in their invitation. A time that overlaps another of the prescriber's visits is
refused once with those visits listed (``visits.ScheduleConflict``); "Book anyway" books
it, for the time that was checked only.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import guests, visits
from server.access import access_patient, require_role
from server.actors import Actor
from server.errors import Conflict, ValidationFailed
from server.http import MAX_ID, YEARS, actor_of, client_ip, int_param, path_id, services_of
from server.models import Role, VisitKind
from server.results import Person
from server.timezones import clinic_zone, patient_zone, wall_clock
from web.forms import checked_form
from web.rendering import render

STAFF: Final = (Role.prescriber, Role.coordinator)
KIND_LABELS: Final = {VisitKind.follow_up.value: "Follow-up", VisitKind.intake.value: "Intake"}
DEFAULT_MINUTES: Final = {VisitKind.follow_up.value: 15, VisitKind.intake.value: 60}
DONE: Final = {
    "scheduled": "Booked. The invitation, with a calendar event, is on its way to the "
                 "patient.",
    "moved": "Moved. The patient is emailed the new time and their calendar event is "
             "updated.",
    "cancelled": "Cancelled. The patient is emailed and their join links no longer work.",
    "invited": "Invited. The guest is emailed their own link.",
    "revoked": "Revoked. The guest's link no longer works.",
}
# What each field asks for, in the words shown beside it (pydantic's are for the API).
MESSAGES: Final = {
    "patient_id": "Choose the patient.",
    "prescriber_id": "Choose the prescriber.",
    "kind": "Choose the kind of visit.",
    "visit_date": f"Enter the date of the visit (a year from {YEARS[0]} to {YEARS[1]}).",
    "visit_time": "Enter the time the visit starts.",
    "duration_minutes": f"Enter a length from 5 to {visits.MAX_DURATION_MINUTES} minutes.",
    "name": "Enter the guest's name.",
    "email": "Enter the guest's email address, such as ana@example.com.",
}
# The domain's fields, as the form names them.
FORM_FIELD: Final = {"scheduled_at": "visit_time"}
WHEN_FIELDS: Final = ("visit_date", "visit_time", "duration_minutes")
SCHEDULE_FIELDS: Final = ("patient_id", "prescriber_id", "kind", *WHEN_FIELDS)
GUEST_FIELDS: Final = ("name", "email")


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _in_years(day: date) -> date:
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise ValueError("out of range")
    return day


class WhenForm(BaseModel):
    """A visit's time on the clinic's clock, and its length."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    visit_date: Annotated[date, AfterValidator(_in_years)]
    visit_time: time
    duration_minutes: int = Field(ge=5, le=visits.MAX_DURATION_MINUTES)


class ScheduleForm(WhenForm):
    patient_id: int = Field(gt=0, le=MAX_ID)
    prescriber_id: Annotated[int | None, BeforeValidator(_blank_is_none)] = \
        Field(default=None, gt=0, le=MAX_ID)
    kind: VisitKind


class GuestForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


F = TypeVar("F", bound=BaseModel)


def parse(model: type[F], form: FormData) -> tuple[F | None, dict[str, str]]:
    """The form as ``model``, or every field it gets wrong, each with its message."""
    data = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else "visit_date"
            errors.setdefault(name, MESSAGES.get(name, "Check this."))
        return None, errors


def values_of(form: FormData, names: tuple[str, ...]) -> dict[str, str]:
    """What was typed, to show again (cut short: it is only echoed)."""
    return {name: str(form.get(name) or "")[:300] for name in names}


def fingerprint(values: dict[str, str]) -> str:
    """The time a "Book anyway" is for: changed since the conflicts were shown, it is
    checked again."""
    return "|".join(values.get(name, "") for name in ("prescriber_id", *WHEN_FIELDS))


def book_anyway(form: FormData, values: dict[str, str]) -> bool:
    return form.get("book_anyway") == "1" and form.get("checked") == fingerprint(values)


def field_error(exc: ValidationFailed) -> dict[str, str]:
    name = exc.field or "visit_date"
    return {FORM_FIELD.get(name, name): exc.message}


def home_of(actor: Actor) -> str:
    return "/day" if actor.role is Role.prescriber else "/coordinator"


def when_values(at: datetime, minutes: int, zone: str) -> dict[str, str]:
    local = at.astimezone(ZoneInfo(zone))
    return {"visit_date": local.strftime("%Y-%m-%d"), "visit_time": local.strftime("%H:%M"),
            "duration_minutes": str(minutes)}


def proposed(values: dict[str, str], zone: str) -> datetime | None:
    """The time the form holds, for the preview, when it is one."""
    try:
        return wall_clock(date.fromisoformat(values["visit_date"]),
                          time.fromisoformat(values["visit_time"]), zone)
    except (KeyError, ValueError, ValidationFailed):
        return None


# --- booking -------------------------------------------------------------------------


async def schedule_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, *STAFF)
    services = services_of(request)
    zone = clinic_zone(services.settings)
    tomorrow = services.clock.now().astimezone(ZoneInfo(zone)).date() + timedelta(days=1)
    values = {"patient_id": "", "kind": VisitKind.follow_up.value,
              "prescriber_id": str(actor.user_id) if actor.role is Role.prescriber else "",
              **when_values(wall_clock(tomorrow, time(9), zone), 15, zone)}
    chosen = request.query_params.get("patient")
    if chosen:
        patient_id = int_param(chosen, "patient")
        async with services.transaction() as session:
            # Someone else's patient is refused here, and the refusal audited.
            await access_patient(session, actor, patient_id, now=services.clock.now())
        values["patient_id"] = str(patient_id)
    return await _schedule_form(request, actor, values)


async def _schedule_form(request: Request, actor: Actor, values: dict[str, str], *,
                         errors: dict[str, str] | None = None,
                         conflicts: list[visits.VisitConflict] | None = None,
                         status: int = 200) -> Response:
    services = services_of(request)
    zone = clinic_zone(services.settings)
    async with services.transaction() as session:
        choices = await visits.bookable(session, services.settings, actor)
    prescribers = list(choices.prescribers)
    if actor.role is Role.prescriber and all(p.id != actor.user_id for p in prescribers):
        prescribers.insert(0, Person(id=actor.user_id, name=actor.name))
    zones = {str(p.id): p.zone for p in choices.patients}
    return render(request, "schedule_visit.html", status=status, values=values,
                  errors=errors or {}, conflicts=conflicts or [], checked=fingerprint(values),
                  patients=choices.patients, prescribers=prescribers, tz=zone,
                  patient_tz=zones.get(values.get("patient_id", "")),
                  at=proposed(values, zone), kinds=KIND_LABELS, home=home_of(actor),
                  max_minutes=visits.MAX_DURATION_MINUTES)


async def schedule_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, *STAFF)
    services = services_of(request)
    values = values_of(form, SCHEDULE_FIELDS)
    body, errors = parse(ScheduleForm, form)
    if body is None:
        return await _schedule_form(request, actor, values, errors=errors, status=422)
    try:
        at = wall_clock(body.visit_date, body.visit_time, clinic_zone(services.settings),
                        field="visit_time")
        async with services.transaction() as session:
            visit = await visits.create_visit(
                session, services, actor, patient_id=body.patient_id,
                prescriber_id=body.prescriber_id, kind=body.kind, scheduled_at=at,
                duration_minutes=body.duration_minutes, now=services.clock.now(),
                refuse_conflicts=not book_anyway(form, values))
            await visits.invite_to_visit(session, services, actor, visit.id)
    except visits.ScheduleConflict as exc:
        return await _schedule_form(request, actor, values, conflicts=exc.conflicts,
                                    status=exc.status)
    except ValidationFailed as exc:
        return await _schedule_form(request, actor, values, errors=field_error(exc),
                                    status=exc.status)
    return RedirectResponse(f"/visits/{visit.id}/change?done=scheduled", status_code=303)


# --- moving and cancelling ---------------------------------------------------------


async def change_page(request: Request) -> Response:
    actor = actor_of(request)
    return await _change_form(request, actor, path_id(request, "visit_id"))


async def _change_form(request: Request, actor: Actor, visit_id: int, *,
                       values: dict[str, str] | None = None,
                       errors: dict[str, str] | None = None,
                       conflicts: list[visits.VisitConflict] | None = None,
                       error: str | None = None, status: int = 200) -> Response:
    require_role(actor, *STAFF)
    services = services_of(request)
    zone = clinic_zone(services.settings)
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
        patient_tz = await patient_zone(session, services.settings, visit.patient_id)
    values = values or when_values(visit.scheduled_at, visit.duration_minutes, zone)
    done = request.query_params.get("done", "") if status == 200 else ""
    return render(request, "visit_change.html", status=status, visit=visit, values=values,
                  errors=errors or {}, conflicts=conflicts or [], checked=fingerprint(values),
                  tz=zone, patient_tz=patient_tz, at=proposed(values, zone), error=error,
                  done=DONE.get(done), changeable=visit.status in visits.CHANGEABLE,
                  ended=visit.status in visits.ENDED, kinds=KIND_LABELS,
                  home=home_of(actor), max_minutes=visits.MAX_DURATION_MINUTES)


async def change_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, *STAFF)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    values = values_of(form, WHEN_FIELDS)
    body, errors = parse(WhenForm, form)
    if body is None:
        return await _change_form(request, actor, visit_id, values=values, errors=errors,
                                  status=422)
    try:
        at = wall_clock(body.visit_date, body.visit_time, clinic_zone(services.settings),
                        field="visit_time")
        async with services.transaction() as session:
            await visits.reschedule_visit(
                session, services, actor, visit_id, scheduled_at=at,
                duration_minutes=body.duration_minutes, now=services.clock.now(),
                refuse_conflicts=not book_anyway(form, values))
    except visits.ScheduleConflict as exc:
        return await _change_form(request, actor, visit_id, values=values,
                                  conflicts=exc.conflicts, status=exc.status)
    except ValidationFailed as exc:
        return await _change_form(request, actor, visit_id, values=values,
                                  errors=field_error(exc), status=exc.status)
    except Conflict as exc:
        # No longer changeable (the patient came in, someone cancelled it meanwhile).
        return await _change_form(request, actor, visit_id, error=exc.message,
                                  status=exc.status)
    return RedirectResponse(f"/visits/{visit_id}/change?done=moved", status_code=303)


async def cancel_submit(request: Request) -> Response:
    _, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, *STAFF)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    try:
        async with services.transaction() as session:
            await visits.cancel_visit(session, services, actor, visit_id,
                                      now=services.clock.now())
    except Conflict as exc:
        return await _change_form(request, actor, visit_id, error=exc.message,
                                  status=exc.status)
    return RedirectResponse(f"/visits/{visit_id}/change?done=cancelled", status_code=303)


# --- guests --------------------------------------------------------------------------


async def guests_page(request: Request) -> Response:
    actor = actor_of(request)
    return await _guests_form(request, actor, path_id(request, "visit_id"))


async def _guests_form(request: Request, actor: Actor, visit_id: int, *,
                       values: dict[str, str] | None = None,
                       errors: dict[str, str] | None = None, error: str | None = None,
                       status: int = 200) -> Response:
    require_role(actor, *STAFF)
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        invited = await guests.list_guests(session, actor, visit_id, now=now)
        visit = await visits.get_visit(session, actor, visit_id, now=now)
    done = request.query_params.get("done", "") if status == 200 else ""
    return render(request, "visit_guests.html", status=status, visit=visit, guests=invited,
                  values=values or {"name": "", "email": ""}, errors=errors or {},
                  error=error, done=DONE.get(done), tz=clinic_zone(services.settings),
                  may_invite=actor.role is Role.prescriber and visit.status not in visits.ENDED,
                  ended=visit.status in visits.ENDED, kinds=KIND_LABELS, home=home_of(actor))


async def invite_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, Role.prescriber)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    values = values_of(form, GUEST_FIELDS)
    body, errors = parse(GuestForm, form)
    if body is None:
        return await _guests_form(request, actor, visit_id, values=values, errors=errors,
                                  status=422)
    try:
        async with services.transaction() as session:
            await guests.invite_guest(session, services, actor, visit_id, name=body.name,
                                      email=body.email)
    except ValidationFailed as exc:
        return await _guests_form(request, actor, visit_id, values=values,
                                  errors={exc.field or "email": exc.message}, status=exc.status)
    except Conflict as exc:
        return await _guests_form(request, actor, visit_id, values=values, error=exc.message,
                                  status=exc.status)
    return RedirectResponse(f"/visits/{visit_id}/guests?done=invited", status_code=303)


async def revoke_submit(request: Request) -> Response:
    _, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, *STAFF)
    visit_id = path_id(request, "visit_id")
    guest_id = path_id(request, "guest_id")
    services = services_of(request)
    try:
        async with services.transaction() as session:
            await guests.dismiss_guest(session, actor, visit_id, guest_id, revoke=True,
                                       now=services.clock.now())
    except Conflict as exc:
        return await _guests_form(request, actor, visit_id, error=exc.message,
                                  status=exc.status)
    return RedirectResponse(f"/visits/{visit_id}/guests?done=revoked", status_code=303)


ROUTES = [
    # Before the visit room: `/visits/{visit_id}` would take "new" for an id.
    Route("/visits/new", schedule_page, methods=["GET"]),
    Route("/visits/new", schedule_submit, methods=["POST"]),
    Route("/visits/{visit_id}/change", change_page, methods=["GET"]),
    Route("/visits/{visit_id}/change", change_submit, methods=["POST"]),
    Route("/visits/{visit_id}/cancel", cancel_submit, methods=["POST"]),
    Route("/visits/{visit_id}/guests", guests_page, methods=["GET"]),
    Route("/visits/{visit_id}/guests", invite_submit, methods=["POST"]),
    Route("/visits/{visit_id}/guests/{guest_id}/revoke", revoke_submit, methods=["POST"]),
]
