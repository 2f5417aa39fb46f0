"""What each card of the prescriber's day shows beside the visit: how long the patient has
waited, the check-in's triage at a glance (level, reasons, the key scores), and for the
No-show action whether the patient is on MOUD and when outreach is due.

Read for the whole day at once, four queries whatever the number of visits (the open
waits, the check-ins, the patients' active medications, pending outreach). The scores
are the ones the check-in stored when it was scored (``server.checkins``); nothing is
scored again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.actors import Actor
from server.models import CheckIn, CheckInStatus, Medication, Timer, VisitWait
from server.services import Services
from server.substance_use import OUTREACH_TIMER, is_moud
from server.triage import level_rank
from server.visits import VisitRecord
from web import escalation_view as view


@dataclass(frozen=True)
class Flag:
    """One triage reason of the check-in, with the level it carries."""

    code: str
    label: str
    level: str


@dataclass(frozen=True)
class Score:
    """One key score as the card shows it ("PHQ-9 14, moderate"); ``flagged`` when it
    is what a clinician looks at first (a positive screen, item 9 answered above 0)."""

    instrument: str
    label: str
    value: str
    flagged: bool = False


@dataclass(frozen=True)
class CheckInGlance:
    completed: bool
    completed_at: datetime | None
    level: str | None
    level_label: str
    flags: list[Flag]
    scores: list[Score]


@dataclass(frozen=True)
class Glance:
    # When the patient's current stay in the waiting room began (None: not waiting).
    waiting_since: datetime | None = None
    checkin: CheckInGlance | None = None
    # On MOUD: a no-show starts the outreach clock (server.substance_use), which the
    # No-show confirmation says; once recorded, when outreach is due unless rebooked.
    moud: bool = False
    outreach_due_at: datetime | None = None


def _severity(score: dict[str, Any]) -> str:
    severity = score.get("severity")
    return f", {str(severity).replace('_', ' ')}" if severity else ""


def key_scores(scores: dict[str, Any] | None) -> list[Score]:
    """PHQ-9 (with item 9), GAD-7, the C-SSRS risk and AUDIT-C, when answered."""
    scores = scores or {}
    found: list[Score] = []
    phq9 = scores.get("phq9")
    if isinstance(phq9, dict):
        found.append(Score("phq9", "PHQ-9", f"{phq9.get('total')}{_severity(phq9)}"))
        item9 = phq9.get("item9")
        if isinstance(item9, int):
            found.append(Score("phq9_item9", "PHQ-9 item 9", str(item9), flagged=item9 > 0))
    gad7 = scores.get("gad7")
    if isinstance(gad7, dict):
        found.append(Score("gad7", "GAD-7", f"{gad7.get('total')}{_severity(gad7)}"))
    cssrs = scores.get("cssrs")
    if isinstance(cssrs, dict):
        risk = str(cssrs.get("risk") or "none")
        found.append(Score("cssrs", "C-SSRS risk", risk, flagged=risk != "none"))
    auditc = scores.get("auditc")
    if isinstance(auditc, dict):
        positive = bool(auditc.get("positive"))
        found.append(Score("auditc", "AUDIT-C",
                           f"{auditc.get('total')}, {'positive' if positive else 'negative'}",
                           flagged=positive))
    return found


def _glance(checkin: CheckIn, services: Services) -> CheckInGlance:
    flags = [Flag(code, view.reason_label(code), services.rules.level_of_code(code).value)
             for code in checkin.reasons or []]
    flags.sort(key=lambda f: -level_rank(f.level))
    level = checkin.level
    return CheckInGlance(
        completed=checkin.status is CheckInStatus.completed,
        completed_at=checkin.completed_at, level=level,
        level_label=view.level_label(level) if level else "", flags=flags,
        scores=key_scores(checkin.scores))


async def day_glances(session: AsyncSession, services: Services, actor: Actor,
                      visits: list[VisitRecord]) -> dict[int, Glance]:
    """Per visit id: its open wait and its check-in (each check-in's read audited). The
    visits are ones ``visits.list_visits`` let the actor see."""
    ids = [v.id for v in visits]
    if not ids:
        return {}
    waits: dict[int, datetime] = {}
    for visit_id, started_at in await session.execute(
            select(VisitWait.visit_id, VisitWait.started_at)
            .where(VisitWait.visit_id.in_(ids), VisitWait.ended_at.is_(None))
            .order_by(VisitWait.id)):
        waits[visit_id] = started_at
    found = (await session.scalars(select(CheckIn).where(CheckIn.visit_id.in_(ids)))).all()
    audit.record_reads(session, actor, "checkin", [(c.id, c.patient_id) for c in found])
    checkins = {c.visit_id: _glance(c, services) for c in found}
    patients = {v.patient_id for v in visits}
    moud = {patient_id for patient_id, drug in await session.execute(
        select(Medication.patient_id, Medication.drug).where(
            Medication.patient_id.in_(patients), Medication.active.is_(True)))
        if is_moud(drug)}
    outreach: dict[int, datetime] = {}
    for patient_id, due_at in await session.execute(
            select(Timer.subject_id, Timer.due_at).where(
                Timer.kind == OUTREACH_TIMER, Timer.subject_id.in_(patients),
                Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
            .order_by(Timer.due_at)):
        outreach.setdefault(patient_id, due_at)
    return {v.id: Glance(waits.get(v.id), checkins.get(v.id), v.patient_id in moud,
                         outreach.get(v.patient_id)) for v in visits}
