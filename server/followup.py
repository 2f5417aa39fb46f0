"""When the next visit should be (CLINICAL.md, "Follow-up cadence matched to risk").

The shortest interval whose situation applies wins:
- an open ``emergency`` or ``urgent`` escalation: 7 days;
- an escalation resolved since the patient's previous visit with a disposition to a
  higher level of care (``HIGHER_CARE``: emergency services, mobile crisis, inpatient,
  residential, partial hospitalization, intensive outpatient): within 7 days of the
  resolution (HEDIS FUH: follow-up within 7 days of discharge), so the interval from this
  visit is what is left of those 7 days, at least 1 day and never more than 7;
- a medication started, switched or its dose changed in this visit: 28 days (the
  guideline's range is 14-28; the prescriber may choose sooner);
- ``step_up`` or higher, or PHQ-9/GAD-7 moderate or worse: 28 days;
- stable (no change, PHQ-9 and GAD-7 mild or better at the last 3 check-ins, none of
  them with a safety reason): 90 days, but never while any escalation is open or one
  was resolved since the previous visit;
- otherwise 28 days: when the table is silent we take the shorter, safer interval.

"The previous visit" is the patient's latest earlier visit that took place (completed or
started). Without one, every resolved escalation counts: the wider window is the safer
reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.medications import DOSE_CHANGES, Action
from server.models import (
    CheckIn,
    CheckInStatus,
    Escalation,
    EscalationStatus,
    Visit,
    VisitStatus,
)
from server.results import Result
from server.settings import Settings
from server.triage import Level, level_at_least

MILD_OR_BETTER: Final = ("minimal", "mild")
# Dispositions to a higher level of care than outpatient video visits: the patient is
# seen again within 7 days of the resolution (CLINICAL.md; HEDIS FUH). The vocabulary is
# escalation.vocabulary.DISPOSITIONS (server/ may not import escalation/; a test checks
# that these are all in it).
HIGHER_CARE: Final = ("emergency_services", "mobile_crisis", "inpatient", "residential",
                      "partial_hospitalization", "intensive_outpatient")
URGENT_LEVELS: Final = (Level.EMERGENCY.value, Level.URGENT.value)
DAY: Final = timedelta(days=1)


class Cadence(Result):
    """The default interval to the next visit, and why (shown beside the choice)."""

    days: int
    reason: str


async def previous_visit_at(session: AsyncSession, visit: Visit) -> datetime | None:
    """When the patient's latest earlier visit that took place was scheduled."""
    found: datetime | None = await session.scalar(
        select(Visit.scheduled_at).where(
            Visit.patient_id == visit.patient_id, Visit.id != visit.id,
            Visit.scheduled_at < visit.scheduled_at,
            or_(Visit.status == VisitStatus.completed, Visit.started_at.is_not(None)))
        .order_by(Visit.scheduled_at.desc()).limit(1))
    return found


def days_left_after(resolved_at: datetime, visit: Visit, window_days: int) -> int:
    """Whole days from this visit to ``window_days`` after the resolution: at least 1,
    at most ``window_days`` (a resolution after the visit still gets the shorter one)."""
    left = (resolved_at + timedelta(days=window_days) - visit.scheduled_at) // DAY
    return max(1, min(window_days, left))


def _label(code: str) -> str:
    return code.replace("_", " ")


async def default_follow_up(session: AsyncSession, settings: Settings, visit: Visit,
                            medication_actions: Sequence[Action]) -> Cadence:
    options: list[Cadence] = []
    escalations = list((await session.scalars(select(Escalation).where(
        Escalation.patient_id == visit.patient_id))).all())
    open_ones = [e for e in escalations if e.status is not EscalationStatus.resolved]
    since = await previous_visit_at(session, visit)
    resolved_since = [e for e in escalations
                      if e.status is EscalationStatus.resolved and e.resolved_at is not None
                      and (since is None or e.resolved_at > since)]

    if any(e.level in URGENT_LEVELS for e in open_ones):
        options.append(Cadence(days=settings.follow_up_urgent_days,
                               reason="An urgent or emergency escalation is open."))
    for escalation in resolved_since:
        if escalation.disposition in HIGHER_CARE and escalation.resolved_at is not None:
            days = days_left_after(escalation.resolved_at, visit,
                                   settings.follow_up_urgent_days)
            options.append(Cadence(days=days, reason=(
                f"An escalation was resolved on {escalation.resolved_at:%Y-%m-%d} with "
                f"disposition {_label(escalation.disposition)}: the next visit within "
                f"{settings.follow_up_urgent_days} days of it.")))

    changed = any(action in DOSE_CHANGES for action in medication_actions)
    if changed:
        options.append(Cadence(
            days=settings.follow_up_medication_change_days,
            reason="A medication was started, switched or its dose changed."))

    checkins = list((await session.scalars(select(CheckIn).where(
        CheckIn.patient_id == visit.patient_id, CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at.desc()).limit(3))).all())
    latest = checkins[0] if checkins else None
    if latest is not None:
        stepped_up = bool(latest.level) and level_at_least(str(latest.level), Level.STEP_UP)
        if stepped_up or not _scores_mild(latest, missing_ok=True):
            options.append(Cadence(
                days=settings.follow_up_moderate_days,
                reason="A step-up reason, or PHQ-9/GAD-7 moderate or worse."))
    if options:
        return min(options, key=lambda c: c.days)

    if open_ones or resolved_since:
        # Never "stable" right after (or during) a safety concern.
        return Cadence(days=settings.follow_up_default_days,
                       reason="Not stable: an escalation is open or was resolved since the "
                              "previous visit.")
    stable = not changed and len(checkins) >= 3 and all(
        _scores_mild(c, missing_ok=False) and not _safety_reason(c) for c in checkins)
    if stable:
        return Cadence(
            days=settings.follow_up_stable_days,
            reason="Stable: no change and scores mild or better at the last 3 visits.")
    return Cadence(days=settings.follow_up_default_days,
                   reason="Standard follow-up (not yet stable for 3 visits).")


def _scores_mild(checkin: CheckIn, *, missing_ok: bool) -> bool:
    """PHQ-9 and GAD-7 both mild or better (a missing score counts as mild only when
    ``missing_ok``: it does not make a visit moderate, nor does it make one stable)."""
    scores = checkin.scores or {}
    for name in ("phq9", "gad7"):
        score = scores.get(name)
        if not isinstance(score, dict) or score.get("severity") is None:
            if not missing_ok:
                return False
            continue
        if score.get("severity") not in MILD_OR_BETTER:
            return False
    return True


def _safety_reason(checkin: CheckIn) -> bool:
    """The check-in's risk reached ``review`` or higher (a safety reason was seen)."""
    return bool(checkin.level) and level_at_least(str(checkin.level), Level.REVIEW)
