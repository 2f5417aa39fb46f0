"""The visit room, rendered per role; for the care team with the note panel beside it.

``?part=NAME`` answers one part of the note panel (``note_panel.PARTS``: ``safety``,
``medications``, ``labs``, ``trends``, ``costs``, ``controlled``, each its
``_panel_*.html``), which ``static/note-panel.js`` fetches again when an event says it
changed. A part costs the visit's read and the part's own audited reads, no more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import chat, guests, visits
from server.actors import Actor
from server.errors import NotFound
from server.http import actor_of, path_id, services_of
from server.models import Role
from server.services import Services
from server.timezones import clinic_zone, viewer_zone
from signaling.hub import signaling_base
from web.pages import note_panel, panel_controlled, where
from web.rendering import local_time, moment, render

PANEL_ROLES = (Role.prescriber, Role.coordinator)


def _when(value: str | datetime | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _helpers(tz: str, now: datetime) -> dict[str, Any]:
    """``day``: a date; ``day_time``: a point in time, in the one format (``moment``)."""
    def day(value: str | datetime | None) -> str:
        when = _when(value)
        return local_time(when, tz, "%-d %b %Y") if when else ""

    def day_time(value: str | datetime | None) -> str:
        when = _when(value)
        return moment(when, tz, now) if when else ""

    return {"day": day, "day_time": day_time, "tz": tz, **note_panel.template_context()}


def room_helpers(services: Services) -> dict[str, Any]:
    """What ``visit_room.html`` needs besides the visit (shared with the guest page, whose
    reader has no profile: the clinic's time zone)."""
    return _helpers(clinic_zone(services.settings), services.clock.now())


def signaling_of(request: Request) -> str:
    """The origin where this page opens visit signaling (its own listener)."""
    return signaling_base(request.app, request.headers.get("host", ""),
                          secure=request.url.scheme == "https")


def turn_offered(services: Services) -> bool:
    """Whether the device check can offer the relay (TURN) path."""
    return bool(services.settings.turn_urls and services.settings.turn_secret)


async def _panel_part(request: Request, session: AsyncSession, services: Services,
                      actor: Actor, visit: visits.VisitRecord, part: str,
                      helpers: dict[str, Any]) -> Response:
    """One part of the note panel, from the function the whole panel builds it with."""
    if part == "safety":
        top = await note_panel.safety(session, services, actor, visit, visit.patient.name)
        return render(request, "_panel_safety.html", s=top, visit_id=visit.id, **helpers)
    if part == "labs":
        due = await note_panel.labs_part(session, services, actor, visit.patient_id)
        return render(request, "_panel_labs.html", labs=due, **helpers)
    if part == "trends":
        found = await note_panel.trends_part(session, services, actor, visit.patient_id,
                                             helpers["tz"])
        return render(request, "_panel_trends.html", t=found, **helpers)
    if part == "costs":
        reported = await note_panel.reported_part(session, services, actor, visit)
        return render(request, "_panel_costs.html", r=reported, **helpers)
    if part == "controlled":
        controlled = await panel_controlled.build(session, services, actor, visit)
        return render(request, "_panel_controlled.html", c=controlled, visit_id=visit.id,
                      can_write=note_panel.can_write(actor),
                      **helpers)
    found_meds = await note_panel.medication_part(session, services, actor, visit.patient_id)
    return render(request, "_panel_medications.html", medications=found_meds, **helpers)


async def visit_room(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    part = request.query_params.get("part")
    panel = None
    chat_record = None
    pending_guests: list[guests.PendingGuest] = []
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
        helpers = _helpers(await viewer_zone(session, services.settings, actor),
                           services.clock.now())
        if part == "guest-consent":
            # The patient's question about newly invited guests (guest-consent.js).
            pending = await guests.pending_consent(session, actor, visit,
                                                   now=services.clock.now())
            return render(request, "_guest_consent.html", visit=visit,
                          pending_guests=pending, **helpers)
        if part is not None:
            if actor.role not in PANEL_ROLES or part not in note_panel.PARTS:
                raise NotFound(f'There is no part "{part}" of this page.', field="part")
            return await _panel_part(request, session, services, actor, visit, part,
                                     helpers)
        if actor.role in PANEL_ROLES:
            panel = await note_panel.build(session, services, actor, visit, helpers["tz"])
            if visit.status in visits.ENDED:
                # The call's chat is part of the visit's record for the care team.
                chat_record = await chat.messages_for(session, actor, visit.id,
                                                      now=services.clock.now())
        elif actor.role is Role.patient and visit.status not in visits.ENDED:
            pending_guests = await guests.pending_consent(session, actor, visit,
                                                          now=services.clock.now())
        if actor.role not in PANEL_ROLES and \
                await where.must_confirm(session, services, actor, visit):
            # Invariant 10: nobody joins unconfirmed. Where the patient is and a callback
            # number first, then the room (web/pages/where.py).
            return RedirectResponse(where.where_url(visit.id), status_code=303)
    # The live room (camera, signaling) is only started for a visit that can still happen;
    # the note panel works either way (the note is often finished after the call).
    return render(request, "visit_room.html", visit=visit, role=actor.role.value,
                  ended=visit.status in visits.ENDED, panel=panel, chat_record=chat_record,
                  pending_guests=pending_guests,
                  turn_offered=turn_offered(services), signaling=signaling_of(request),
                  **helpers)


ROUTES = [Route("/visits/{visit_id}", visit_room)]
