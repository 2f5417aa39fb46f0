"""One escalation: emergency information first, then the actions, the answers that
triggered it and its full timeline.

The actions are forms that ``static/escalation-detail.js`` sends to the JSON API
(``/api/v1/escalations/{id}/...``), so every change goes through the one lifecycle
function that also writes its timeline event, audit record and live event.
``?part=live`` answers only the parts that change (status, timeline), which the script
fetches again when an event about this escalation arrives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from escalation import queries, referrals
from escalation.vocabulary import CONTACT_OUTCOMES, DISPOSITIONS, HELP_SENT, Disposition
from server import disclosures
from server.http import actor_of, path_id, services_of
from server.models import CareTeamMember, Role, User
from server.timezones import clinic_zone
from web import escalation_view as view
from web.pages.coordinator import raise_form_choices
from web.rendering import render

BACK_LINKS = {Role.coordinator: ("/coordinator", "← Escalation queue"),
              Role.prescriber: ("/day", "← My day")}


async def assignable(session: AsyncSession, patient_id: int) -> list[User]:
    """The prescribers and coordinators on the patient's care team (who may own it)."""
    rows = await session.scalars(
        select(User).join(CareTeamMember, CareTeamMember.member_id == User.id)
        .where(CareTeamMember.patient_id == patient_id, User.is_active.is_(True),
               User.role.in_((Role.prescriber, Role.coordinator)))
        .order_by(User.role, User.name, User.id))
    return list(rows.all())


def allowed_dispositions(level: str) -> tuple[Disposition, ...]:
    """The outcomes the resolve form offers: an emergency is closed by action, never
    "no action needed" (CLINICAL.md invariant 6; the API refuses it too)."""
    if level == "emergency":
        return tuple(d for d in DISPOSITIONS if d != "no_action_needed")
    return DISPOSITIONS


async def escalation_page(request: Request) -> Response:
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        # Checks access (care team, on call, or an admin's break-glass) and audits the read.
        data = await queries.escalation_detail(session, actor, escalation_id,
                                               now=services.clock.now())
        people = await assignable(session, data.patient.id)
        names = {u.id: u.name for u in people}
        missing = {assignee for e in data.timeline
                   if isinstance(assignee := e.detail.get("assignee_id"), int)} - names.keys()
        if missing:
            rows = await session.execute(select(User.id, User.name).where(User.id.in_(missing)))
            names.update({row[0]: row[1] for row in rows})
        recorded = await disclosures.of_escalation(session, escalation_id)
        made = await referrals.of_escalation(session, escalation_id)
    # An admin reading under break-glass sees the record, never the actions: they
    # cannot change it (server.access.access_escalation).
    can_act = actor.role in (Role.prescriber, Role.coordinator)
    context: dict[str, Any] = {
        "e": view.summary(data, now), "data": data, "now": now,
        "tz": clinic_zone(services.settings),
        "timeline": [view.timeline_entry(event, names) for event in data.timeline],
        "triggering": view.triggering(data.triggering),
        "triggers": view.trigger_lines(data.triggers),
        "disposition_label": view.DISPOSITION_LABELS.get(data.disposition or "", ""),
        # Help was sent: offer to record what was told to the responders (42 CFR 2.51).
        "emergency_disclosures": [d for d in recorded if d.channel == "medical_emergency"],
        "referrals": made, "referral_levels": referrals.LEVEL_LABELS, "can_act": can_act,
        "offer_emergency_disclosure": data.disposition in HELP_SENT,
    }
    if request.query_params.get("part") == "live":
        return render(request, "_escalation_live.html", **context)
    back_href, back_text = BACK_LINKS.get(actor.role, ("/", "Start page"))
    return render(
        request, "escalation.html", **context, back_href=back_href,
        back_text=back_text, status_labels=view.STATUS_LABELS,
        assignees=[(u.id, f"{u.name} ({u.role.value})") for u in people],
        outcomes=view.choices(CONTACT_OUTCOMES, view.OUTCOME_LABELS),
        dispositions=view.choices(allowed_dispositions(data.level),
                                  view.DISPOSITION_LABELS),
        **raise_form_choices(),
    )


ROUTES = [Route("/escalations/{escalation_id}", escalation_page)]
