"""Who hears about an escalation, and how: live events and emails without clinical
content ("An escalation needs your attention" and a link)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.access import on_call_now
from server.accounts import care_team_ids
from server.events import emit
from server.models import Escalation, Role, User
from server.outbox import queue_email
from server.services import Services
from server.triage import Level


async def on_call(session: AsyncSession, now: datetime | None = None) -> set[int]:
    """The prescribers and coordinators on call now (never admins: an alert goes only
    to people who can open it)."""
    return set((await session.scalars(select(User.id).where(
        User.is_active.is_(True), User.role.in_((Role.prescriber, Role.coordinator)),
        on_call_now(now)))).all())


async def alert(session: AsyncSession, services: Services, escalation: Escalation,
                why: str) -> set[int]:
    """Alert the people an escalation needs now; returns who was alerted.

    raised: the care team's coordinators (for ``urgent`` also its prescribers; for
    ``emergency`` its prescribers and the on-call staff); realert: the same people
    again; backup: them and the backup.
    """
    coordinators = await care_team_ids(session, escalation.patient_id, Role.coordinator)
    people = set(coordinators)
    if escalation.level in (Level.URGENT, Level.EMERGENCY):
        # CLINICAL: urgent alerts the prescriber before the visit; emergency alerts the
        # prescriber and the on-call coordinators now.
        people |= await care_team_ids(session, escalation.patient_id, Role.prescriber)
    if escalation.level == Level.EMERGENCY and why == "raised":
        people |= await on_call(session, services.clock.now())
    if why == "backup" or not coordinators:
        # Nobody to acknowledge on the team is itself a reason to reach the backup.
        people |= await on_call(session, services.clock.now())
    emit(session, "escalation.alert", people, escalation_id=escalation.id,
         patient_id=escalation.patient_id, level=escalation.level, why=why,
         realerts=escalation.realerts)
    users = (await session.scalars(select(User).where(User.id.in_(people)))).all()
    link = f"{services.settings.base_url}/escalations/{escalation.id}"
    now = services.clock.now()
    for user in users:
        queue_email(session, to=user.email, kind=f"escalation_{why}", now=now,
                    subject="An escalation needs your attention",
                    body=("An escalation in Mendwell needs your attention. Sign in to see "
                          f"it:\n\n{link}\n"))
    return people

