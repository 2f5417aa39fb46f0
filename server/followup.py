"""When the next visit should be (CLINICAL.md, "Follow-up cadence matched to risk").

The shortest interval whose situation applies wins:
- an open ``emergency`` or ``urgent`` escalation: 7 days;
- a medication started, switched or its dose changed in this visit: 28 days (the
  guideline's range is 14-28; the prescriber may choose sooner);
- ``step_up``, or PHQ-9/GAD-7 moderate or worse: 28 days;
- stable (no change, PHQ-9 and GAD-7 mild or better at 3+ visits in a row): 90 days;
- otherwise 28 days: when the table is silent we take the shorter, safer interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.medications import DOSE_CHANGES
from server.models import CheckIn, CheckInStatus, Escalation, EscalationStatus, Visit
from server.settings import Settings

MILD_OR_BETTER = ("minimal", "mild")


@dataclass(frozen=True)
class Cadence:
    days: int
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"days": self.days, "reason": self.reason}


async def default_follow_up(session: AsyncSession, settings: Settings, visit: Visit,
                            medication_actions: list[str]) -> Cadence:
    options: list[Cadence] = []
    open_high = await session.scalar(select(Escalation.id).where(
        Escalation.patient_id == visit.patient_id,
        Escalation.status != EscalationStatus.resolved,
        Escalation.level.in_(("emergency", "urgent"))).limit(1))
    if open_high is not None:
        options.append(Cadence(settings.follow_up_urgent_days,
                               "An urgent or emergency escalation is open."))
    changed = any(action in DOSE_CHANGES for action in medication_actions)
    if changed:
        options.append(Cadence(settings.follow_up_medication_change_days,
                               "A medication was started, switched or its dose changed."))
    checkins = list((await session.scalars(select(CheckIn).where(
        CheckIn.patient_id == visit.patient_id, CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at.desc()).limit(3))).all())
    latest = checkins[0] if checkins else None
    if latest is not None:
        scores = latest.scores or {}
        moderate = any(
            isinstance(scores.get(name), dict)
            and scores[name].get("severity") not in (None, *MILD_OR_BETTER)
            for name in ("phq9", "gad7"))
        if latest.level == "step_up" or moderate:
            options.append(Cadence(settings.follow_up_moderate_days,
                                   "A step-up reason, or PHQ-9/GAD-7 moderate or worse."))
    stable = not changed and len(checkins) >= 3 and all(
        all(isinstance((c.scores or {}).get(name), dict)
            and (c.scores or {})[name].get("severity") in MILD_OR_BETTER
            for name in ("phq9", "gad7"))
        for c in checkins)
    if options:
        return min(options, key=lambda c: c.days)
    if stable:
        return Cadence(settings.follow_up_stable_days,
                       "Stable: no change and scores mild or better at the last 3 visits.")
    return Cadence(settings.follow_up_default_days,
                   "Standard follow-up (not yet stable for 3 visits).")
