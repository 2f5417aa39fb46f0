"""The after-visit summary, for the patient, in plain words and printable; and its
preview, for the prescriber, before signing.

The facts come from ``server.notes.after_visit_summary`` (access checked, read audited),
which answers only once the prescriber has signed the note; before that the page says
the summary is not ready yet. Crisis resources are on the page either way. The preview
(``server.notes.summary_preview``) renders the saved draft through the same template
(``_summary_body.html``) in the patient's time zone, so the prescriber reads what the
patient will.
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
from server.timezones import patient_zone, viewer_zone
from web.after_visit import change_sentence
from web.pages.checkin import SEVERITY_LABELS, SIDE_EFFECT_LABELS
from web.rendering import render


def summary_context(found: notes.AfterVisitSummary) -> dict[str, Any]:
    """What ``_summary_body.html`` shows of a summary."""
    return {
        "changes": [change_sentence(row) for row in found.medication_changes],
        "for_patient_text": found.for_patient.strip(),
        "side_effect_actions": found.side_effect_actions,
        "reported": [(SIDE_EFFECT_LABELS.get(str(e.get("effect")), str(e.get("effect"))),
                      SEVERITY_LABELS.get(str(e.get("severity")), ""))
                     for e in found.side_effects_reported if isinstance(e, dict)],
        "follow_up_days": found.follow_up_days,
        "next_at": found.next_visit.scheduled_at if found.next_visit else None,
    }


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
                               "for_patient": actor.role is Role.patient, "id_suffix": ""}
    if found is not None:
        context.update(summary_context(found))
    return render(request, "summary.html", **context)


async def summary_preview(request: Request) -> Response:
    """The summary as the patient would read it now (an HTML fragment for the note
    editor's preview), from the saved draft."""
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await notes.summary_preview(session, services, actor, visit_id)
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
        tz = await patient_zone(session, services.settings, visit.patient_id)
    return render(request, "_summary_body.html", tz=tz, id_suffix="-preview",
                  **summary_context(found))


ROUTES = [Route("/visits/{visit_id}/summary", summary_page, methods=["GET"]),
          Route("/visits/{visit_id}/summary/preview", summary_preview, methods=["GET"])]
