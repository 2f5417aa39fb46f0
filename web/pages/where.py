"""``/visits/{visit_id}/where``: "Where are you right now?", before a patient joins.

CLINICAL.md, invariant 10 ("Nobody joins unconfirmed"): a patient entering a visit, by
password or by join link, confirms where they are and a callback number first, even
without the rest of the check-in. The visit room sends a patient here until
``checkins.emergency_info_for(...).confirmed`` (confirmed within the last
``location_confirm_hours``); the answer goes through ``checkins.confirm_emergency_info``,
the same function as the check-in form's step, so it is validated as strictly
(invariant 8) and the open escalation follows it.

A plain form post, so that it works without JavaScript on any phone: errors come back
as the same page (422) with the message next to the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import checkins, visits
from server.access import require_role
from server.actors import Actor
from server.emergency_info import (
    STATE_MISSING,
    EmergencyInfo,
    EmergencyInfoBody,
    readable_phone,
    validation_context,
)
from server.errors import APIError
from server.http import actor_of, client_ip, path_id, services_of
from server.models import CheckIn, CheckInStatus, Role, Visit
from server.services import Services
from server.timezones import viewer_zone
from server.us_states import US_STATES
from server.visits import VisitRecord
from web.forms import checked_form
from web.rendering import render

CONFIRM_MISSING: Final = ("Tick the box to confirm that you are at this address now and "
                          "that this number will reach you.")
# The form's field names, by the API field each one carries.
FORM_FIELDS: Final = {"location.address": "address", "location.state": "state",
                      "callback_phone": "callback_phone"}


def room_url(visit_id: int) -> str:
    return f"/visits/{visit_id}"


def where_url(visit_id: int) -> str:
    return f"/visits/{visit_id}/where"


def checkin_open(visit: Visit | VisitRecord, services: Services) -> bool:
    """Emergency information is only taken while the check-in is open. (``visit``: as
    this page read it, or as the join link's sign-in holds it.)"""
    return checkins.is_open(visit, services.clock.now())


def plain_words(message: str) -> str:
    """An API validation message as the patient reads it: without the field name and
    pydantic's "Value error," ("callback_phone: Value error, enter a phone number with
    its digits." -> "Enter a phone number with its digits.")."""
    text = message
    head, colon, rest = text.partition(": ")
    if colon and " " not in head:
        text = rest
    text = text.removeprefix("Value error, ").strip()
    if not text:
        return message
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def problems(services: Services, data: dict[str, Any]) -> dict[str, str]:
    """Every field the answer gets wrong at once, by form field (the domain function
    stops at the first)."""
    try:
        EmergencyInfoBody.model_validate(
            data, context=validation_context(services.settings.phone_region))
    except ValidationError as exc:
        found: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            api_field = ".".join(str(part) for part in error["loc"])
            name = FORM_FIELDS.get(api_field)
            if name is not None and name not in found:
                found[name] = plain_words(str(error["msg"]))
        return found
    return {}


async def first_stop(session: AsyncSession, services: Services, visit: Visit) -> str:
    """Where a patient entering ``visit`` by its join link goes first: the check-in while
    it is open and not done (it asks where they are on the way, and offers a shortcut to
    that step alone); else this step unless confirmed today; else the room."""
    if checkin_open(visit, services):
        status = await session.scalar(
            select(CheckIn.status).where(CheckIn.visit_id == visit.id))
        if status is not CheckInStatus.completed:
            return f"/visits/{visit.id}/checkin"
    info = await checkins.emergency_info_for(session, services, visit.patient_id)
    return room_url(visit.id) if info.confirmed or visit.status in visits.ENDED \
        else where_url(visit.id)


async def must_confirm(session: AsyncSession, services: Services, actor: Actor,
                       visit: VisitRecord) -> bool:
    """Whether ``actor`` must pass this step before the room of ``visit``: a patient, a
    visit that can still happen, and no location confirmed today. Staff never."""
    if actor.role is not Role.patient or visit.status in visits.ENDED:
        return False
    return not await checkins.location_confirmed_today(session, services, visit.patient_id)


@dataclass
class WhereForm:
    """What the page shows: the values (prefilled from the last ones given), and the
    message for each field that is wrong."""

    address: str = ""
    # Required on this step (as on every confirmation, server.checkins.require_state):
    # the state's rules apply to what the prescriber may prescribe by video
    # (server.controlled). On the crisis path it may be left out.
    state: str = ""
    callback_phone: str = ""
    confirmed: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def prefilled(cls, info: EmergencyInfo) -> WhereForm:
        return cls(address=info.address or "", state=info.state or "",
                   callback_phone=readable_phone(info.callback_phone) or "")


async def _render(request: Request, actor: Actor, visit_id: int, form: WhereForm | None,
                  *, status: int = 200, error: str | None = None) -> Response:
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
        info = await checkins.emergency_info_for(session, services, visit.patient_id)
        tz = await viewer_zone(session, services.settings, actor)
    if visit.status in visits.ENDED:
        return RedirectResponse(room_url(visit.id), status_code=303)
    return render(request, "where.html", status=status, visit=visit, info=info, tz=tz,
                  form=form or WhereForm.prefilled(info), error=error,
                  us_states=US_STATES,
                  is_open=checkin_open(visit, services),
                  opens_at=visit.scheduled_at - checkins.OPEN_BEFORE)


async def where_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    return await _render(request, actor, path_id(request, "visit_id"), None)


async def where_submit(request: Request) -> Response:
    form_data, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    require_role(actor, Role.patient)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    form = WhereForm(address=str(form_data.get("address") or "")[:500],
                     state=str(form_data.get("state") or "")[:20],
                     callback_phone=str(form_data.get("callback_phone") or "")[:40],
                     confirmed=form_data.get("confirm") == "yes")
    data = {"location": {"address": form.address, "state": form.state or None},
            "callback_phone": form.callback_phone}
    form.errors = problems(services, data)
    if not form.state:
        async with services.transaction() as session:
            if await checkins.state_needed(session, actor, visit_id):
                form.errors["state"] = STATE_MISSING
    if not form.confirmed:
        form.errors["confirm"] = CONFIRM_MISSING
    if form.errors:
        return await _render(request, actor, visit_id, form, status=422)
    try:
        async with services.transaction() as session:
            await checkins.confirm_emergency_info(session, services, actor, visit_id, data)
    except APIError as exc:
        if exc.status in (401, 403, 404):
            raise
        name = FORM_FIELDS.get(exc.field or "") if exc.status == 422 else None
        if name is None:
            return await _render(request, actor, visit_id, form, status=exc.status,
                                 error=plain_words(exc.message))
        form.errors[name] = plain_words(exc.message)
        return await _render(request, actor, visit_id, form, status=422)
    return RedirectResponse(room_url(visit_id), status_code=303)


ROUTES = [
    Route("/visits/{visit_id}/where", where_page, methods=["GET"]),
    Route("/visits/{visit_id}/where", where_submit, methods=["POST"]),
]
