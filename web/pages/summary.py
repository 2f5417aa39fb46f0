"""The after-visit summary, for the patient, in plain words and printable.

The facts come from ``server.notes.after_visit_summary`` (access checked, read audited),
which answers only once the prescriber has signed the note; before that the page says
the summary is not ready yet. Crisis resources are on the page either way.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import notes, visits
from server.errors import Conflict
from server.http import actor_of, path_id, services_of
from server.models import Role
from server.timezones import viewer_zone
from web.after_visit import change_sentence
from web.pages.checkin import SEVERITY_LABELS, SIDE_EFFECT_LABELS
from web.rendering import render


async def summary_page(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    found: notes.AfterVisitSummary | None = None
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
        tz = await viewer_zone(session, services.settings, actor)
    try:
        async with services.transaction() as session:
            found = await notes.after_visit_summary(session, services, actor, visit_id)
    except Conflict as exc:
        if exc.code != "summary_not_ready":
            raise
    context: dict[str, Any] = {"visit": visit, "ready": found is not None, "tz": tz,
                               "for_patient": actor.role is Role.patient}
    if found is not None:
        context.update(
            changes=[change_sentence(row) for row in found.medication_changes],
            plan=found.plan, side_effect_actions=found.side_effect_actions,
            reported=[(SIDE_EFFECT_LABELS.get(str(e.get("effect")), str(e.get("effect"))),
                       SEVERITY_LABELS.get(str(e.get("severity")), ""))
                      for e in found.side_effects_reported if isinstance(e, dict)],
            follow_up_days=found.follow_up_days,
            next_at=found.next_visit.scheduled_at if found.next_visit else None,
        )
    return render(request, "summary.html", **context)


ROUTES = [Route("/visits/{visit_id}/summary", summary_page, methods=["GET"])]
