"""The note panel's "What it costs" part: the FIBSER decision, missed doses over the
last check-ins, the side effects the patient reported beside the prescriber's
medication actions on one timeline, and days in continuous MOUD treatment.

Read once per panel by ``note_panel.build`` (``costs_part``); the care team's access to
the patient was checked there, and this read is audited as its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, substance_use
from server.actors import Actor
from server.models import CheckIn, CheckInStatus, MeasureResult, Medication, MedicationChange
from server.services import Services
from web.pages.checkin import SEVERITY_LABELS, SIDE_EFFECT_LABELS
from web.pages.patient import FIBSER_DECISIONS

# Enough history for a 15-minute follow-up: the last few check-ins and actions.
CHECKINS_SHOWN: Final = 6
TIMELINE_SHOWN: Final = 8


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str   # "reported" (the patient) or "action" (the prescriber)
    text: str


@dataclass(frozen=True)
class Fibser:
    at: datetime
    frequency: int
    intensity: int
    burden: int
    decision: str
    decision_label: str


@dataclass(frozen=True)
class Costs:
    fibser: Fibser | None
    missed: list[tuple[datetime, int]]   # oldest first
    timeline: list[TimelineEntry]        # newest first
    moud: substance_use.Retention | None
    retention_days: int


def _effects(data: dict[str, Any]) -> str | None:
    effects = [f"{SIDE_EFFECT_LABELS.get(str(e.get('effect')), str(e.get('effect')))} "
               f"({SEVERITY_LABELS.get(str(e.get('severity')), '?').lower()})"
               for e in data.get("side_effects") or [] if isinstance(e, dict)]
    return "; ".join(effects) if effects else None


def _action(change: MedicationChange, drug: str) -> str:
    detail = change.detail or {}
    dose = " ".join(str(detail[k]) for k in ("dose", "unit") if detail.get(k))
    switched = detail.get("switched_to")
    what = f"{change.action} {drug}" + (f" {dose}" if dose else "")
    return what + (f" (switched to {switched})" if switched else "")


async def costs_part(session: AsyncSession, services: Services, actor: Actor,
                     patient_id: int) -> Costs:
    now = services.clock.now()
    done = list((await session.scalars(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at.desc()).limit(CHECKINS_SHOWN))).all())
    missed = []
    for checkin in reversed(done):
        raw = (checkin.data or {}).get("missed_doses")
        if isinstance(raw, dict) and isinstance(raw.get("days_missed"), int) \
                and checkin.completed_at is not None:
            missed.append((checkin.completed_at, int(raw["days_missed"])))
    medications = list((await session.scalars(
        select(Medication).where(Medication.patient_id == patient_id))).all())
    names = {m.id: m.drug for m in medications}
    changes = (await session.scalars(
        select(MedicationChange).where(MedicationChange.patient_id == patient_id)
        .order_by(MedicationChange.at.desc()).limit(TIMELINE_SHOWN))).all()
    timeline = [TimelineEntry(c.at, "action", _action(c, names.get(c.medication_id, "")))
                for c in changes]
    for checkin in done:
        text = _effects(checkin.data or {})
        if text and checkin.completed_at is not None:
            timeline.append(TimelineEntry(checkin.completed_at, "reported", text))
    timeline.sort(key=lambda entry: entry.at, reverse=True)
    latest = await session.scalar(
        select(MeasureResult).where(MeasureResult.patient_id == patient_id,
                                    MeasureResult.instrument == "fibser")
        .order_by(MeasureResult.at.desc()).limit(1))
    fibser = None
    if latest is not None:
        r = latest.result
        decision = str(r.get("decision"))
        fibser = Fibser(latest.at, int(r["frequency"]), int(r["intensity"]), int(r["burden"]),
                        decision, FIBSER_DECISIONS.get(decision, decision))
    audit.record(session, actor, "read", "medication_costs", patient_id,
                 patient_id=patient_id)
    return Costs(fibser=fibser, missed=missed, timeline=timeline[:TIMELINE_SHOWN],
                 moud=substance_use.retention(medications, now),
                 retention_days=substance_use.RETENTION_DAYS)
