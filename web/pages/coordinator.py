"""The coordinator's home: the live escalation queue first, then the clinic measures, a
form to raise an escalation by hand, and today's visits.

``?part=queue`` answers only the queue (``_escalation_queue.html``): the page's script
(``static/escalation-queue.js``) fetches it again whenever an escalation event arrives,
so the rows always come from one template and one query.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from escalation import queries
from escalation.vocabulary import MANUAL_REASONS, TASK_LEVELS
from server import visits
from server.access import require_role
from server.actors import Actor
from server.http import actor_of, services_of
from server.models import CareTeamMember, Role, User
from server.timezones import clinic_zone
from web import escalation_view as view
from web.pages.home import _today_bounds
from web.rendering import render

MEASURE_PERIODS: Final = (7, 30, 90)
DEFAULT_PERIOD: Final = 30


def measure_period(request: Request) -> int:
    raw = request.query_params.get("days", "")
    return int(raw) if raw in {str(days) for days in MEASURE_PERIODS} else DEFAULT_PERIOD


async def team_patients(session: AsyncSession, actor: Actor) -> list[User]:
    """The patients of the actor's care teams, for the manual raise form."""
    rows = await session.scalars(
        select(User).join(CareTeamMember, CareTeamMember.patient_id == User.id)
        .where(CareTeamMember.member_id == actor.user_id, User.role == Role.patient,
               User.is_active.is_(True))
        .order_by(User.name, User.id))
    return list(rows.all())


def raise_form_choices() -> dict[str, Any]:
    return {
        "raise_reasons": view.choices(MANUAL_REASONS, view.REASON_LABELS),
        "raise_levels": [(level, f"{view.LEVEL_LABELS[level]}: {view.LEVEL_MEANINGS[level]}")
                         for level in TASK_LEVELS],
    }


async def coordinator_home(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.coordinator)
    services = services_of(request)
    now = services.clock.now()
    tz = clinic_zone(services.settings)
    only_queue = request.query_params.get("part") == "queue"
    days = measure_period(request)
    async with services.transaction() as session:
        found = await queries.list_escalations(session, actor, status="open",
                                               now=services.clock.now())
        queue = [view.summary(e, now) for e in found]
        if only_queue:
            return render(request, "_escalation_queue.html", queue=queue, now=now, tz=tz)
        start, end = _today_bounds(now, tz)
        today = await visits.list_visits(session, actor, start=start, end=end)
        measures = await queries.clinic_measures(session, actor,
                                                 since=now - timedelta(days=days), until=now)
        patients = await team_patients(session, actor)
    return render(
        request, "coordinator_home.html", queue=queue, now=now, visits=today, day=start,
        tz=tz, measures=measures, days=days, periods=MEASURE_PERIODS,
        level_labels=view.LEVEL_LABELS, status_labels=view.STATUS_LABELS,
        minutes_text=view.minutes_text, patients=patients,
        **raise_form_choices(),
    )


ROUTES = [Route("/coordinator", coordinator_home)]
