"""Each role's home: the patient's visits, the prescriber's day, the coordinator's home."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import notes, visits
from server.access import require_role
from server.http import actor_of, services_of
from server.models import Escalation, EscalationStatus, Role
from server.timezones import clinic_zone, viewer_zone
from web import escalation_view as view
from web.after_visit import signed_summaries
from web.day_view import day_glances
from web.rendering import render


def _today_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    local = now.astimezone(ZoneInfo(tz))
    start = datetime.combine(local.date(), time.min, tzinfo=ZoneInfo(tz))
    return start, start + timedelta(days=1)


async def patient_home(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        found = await visits.list_visits(session, actor, start=now - timedelta(hours=12),
                                         include_ended=False)
        tz = await viewer_zone(session, services.settings, actor)
        summaries = await signed_summaries(session, actor, tz)
    return render(request, "patient_home.html", visits=found, tz=tz,
                  summaries=summaries)


async def prescriber_day(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.prescriber)
    services = services_of(request)
    tz = clinic_zone(services.settings)
    start, end = _today_bounds(services.clock.now(), tz)
    async with services.transaction() as session:
        found = await visits.list_visits(session, actor, start=start, end=end)
        mine = [v for v in found if v.prescriber_id == actor.user_id]
        flags = await open_safety_flags(session, {v.patient_id for v in mine})
        # Wait times and check-ins for every card at once (a fixed number of queries).
        glances = await day_glances(session, services, actor, mine)
        # Check-ins with safety reasons after a note was signed (CLINICAL.md,
        # invariant 7): at the top of the day until an addendum assesses them.
        addenda = await notes.addenda_due(session, actor)
    # A patient whose check-in (or anything since) raised an urgent or emergency
    # escalation goes to the top of the day, emergency first (CLINICAL.md).
    rank = {"emergency": 0, "urgent": 1}
    mine.sort(key=lambda v: (rank.get(flags[v.patient_id].level if v.patient_id in flags
                                      else "", 2),
                             v.status.value != "waiting", v.scheduled_at))
    return render(request, "prescriber_day.html", visits=mine, day=start, tz=tz,
                  safety_flags=flags, glances=glances, addenda_due=addenda,
                  reason_label=view.reason_label)


@dataclass(frozen=True)
class SafetyFlag:
    """A patient's open urgent or emergency escalation, as a visit row's badge (a link to
    it; day-live.js takes it away when the escalation is resolved)."""

    level: str
    escalation_id: int


async def open_safety_flags(session: AsyncSession,
                            patient_ids: set[int]) -> dict[int, SafetyFlag]:
    """The open urgent/emergency escalation per patient (one open escalation per patient;
    the highest level should there be more)."""
    if not patient_ids:
        return {}
    rows = await session.execute(select(Escalation.patient_id, Escalation.level,
                                        Escalation.id).where(
        Escalation.patient_id.in_(patient_ids),
        Escalation.status != EscalationStatus.resolved,
        Escalation.level.in_(("emergency", "urgent"))))
    flags: dict[int, SafetyFlag] = {}
    for patient_id, level, escalation_id in rows:
        known = flags.get(patient_id)
        if known is None or (known.level != "emergency" and level == "emergency"):
            flags[patient_id] = SafetyFlag(level, escalation_id)
    return flags


ROUTES = [
    Route("/home", patient_home),
    Route("/day", prescriber_day),
]
