"""Outreach to a patient on MOUD who missed a visit and has nothing rebooked.

``server.substance_use`` leaves a ``moud_outreach`` timer at the no-show, due 7 days
after the missed visit, and cancels it when any visit is booked. When it comes due the
timer loop (``escalation.deadlines``) claims it once across instances and this raises a
``step_up`` escalation (a coordinator task within 1 business day) through the one
lifecycle path, with the reason ``moud_missed_visit``. Retention in MOUD is what keeps
patients alive (docs/clinical.md, "Substance use"), so a missed visit is followed up
rather than left for the patient to rebook.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.lifecycle import Trigger, raise_by_rule
from server.models import Timer, Visit, VisitStatus
from server.services import Services
from server.triage import Level

REASON = "moud_missed_visit"


async def _rebooked(session: AsyncSession, patient_id: int, since: datetime) -> bool:
    # Booking cancels the timer; this also covers a visit booked by a path that did not
    # (an import, a restore), so no one is called about a visit already arranged.
    return bool(await session.scalar(select(exists().where(
        Visit.patient_id == patient_id, Visit.created_at >= since,
        Visit.status.not_in((VisitStatus.cancelled, VisitStatus.no_show))))))


async def outreach_due(session: AsyncSession, services: Services, timer: Timer,
                       now: datetime) -> None:
    if await _rebooked(session, timer.subject_id, timer.created_at):
        return
    visit_id = timer.data.get("visit_id")
    await raise_by_rule(session, services, Trigger(
        patient_id=timer.subject_id, level=Level.STEP_UP, reasons=[REASON],
        source="outreach", visit_id=visit_id if isinstance(visit_id, int) else None))
