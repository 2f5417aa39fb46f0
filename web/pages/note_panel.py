"""The note panel beside the video: what the prescriber needs for this visit, on first
paint, and the structured note they write.

Everything comes from the domain functions that check access and write the audit
record (``checkins.get_checkin``, ``notes.get_note``, ``queries.escalation_detail``,
``trends.patient_measures``, ``medications.medication_list``), so the panel shows no
more than the API would give the same person. ``static/note-panel.js`` keeps it live:
it saves the note and fetches the parts that change again (``/visits/{id}?part=...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import queries
from server import checkins, medications, notes, trends
from server.actors import Actor
from server.models import (
    Escalation,
    EscalationStatus,
    NoteStatus,
    Role,
    Visit,
    VisitNote,
)
from server.services import Services
from server.triage import Reason, level_rank
from web import escalation_view as view
from web.pages.checkin import (
    MISSED_DOSE_REASON_LABELS,
    SEVERITY_LABELS,
    SIDE_EFFECT_LABELS,
)
from web.pages.coordinator import raise_form_choices
from web.pages.patient import Measure, OtherResult, charted_measures, other_results

SECTION_LABELS: Final = {
    "interval_history": "Interval history",
    "mental_status": "Mental status observations",
    "assessment": "Assessment",
    "plan": "Plan",
    "side_effect_actions": "Side-effect actions",
    "safety_assessed": "What was assessed",
    "safety_risk_judgement": "Your risk judgement",
    "safety_plan": "Safety plan",
}
SECTION_HINTS: Final = {
    "interval_history": "Since the last visit: symptoms, adherence, life events.",
    "mental_status": "Appearance, mood and affect, thought process and content, "
                      "cognition, insight.",
    "side_effect_actions": "What to do about the side effects reported; the patient "
                           "reads this in their summary.",
    "safety_assessed": "Ideation, intent, plan, behaviour, access to means, protective "
                       "factors.",
    "safety_risk_judgement": "Low, moderate or high, and why.",
    "safety_plan": "Safety plan, means restriction, crisis numbers given, follow-up.",
}
# The order the sections are written in: the safety assessment follows the mental
# status examination, before the assessment and plan.
MAIN_BEFORE_SAFETY: Final = ("interval_history", "mental_status")
SAFETY: Final = notes.SAFETY_SECTIONS
MAIN_AFTER_SAFETY: Final = ("assessment", "plan")
ACTIONS: Final = get_args(medications.Action)
ACTION_LABELS: Final = {
    "start": "Start", "increase": "Increase", "decrease": "Decrease", "switch": "Switch to",
    "taper": "Taper", "stop": "Stop", "continue": "Continue",
}
PARTS: Final = ("safety", "medications")

assert set(SECTION_LABELS) == set(notes.SECTIONS)
assert set(ACTION_LABELS) == set(ACTIONS)


@dataclass(frozen=True)
class ReasonLine:
    """One triage reason of this visit's check-in, with the level it carries."""

    code: str
    label: str
    level: str
    level_label: str


@dataclass(frozen=True)
class SideEffectLine:
    label: str
    severity: str
    details: str | None


@dataclass(frozen=True)
class MissedDoses:
    days: int
    reasons: list[str]
    details: str | None


@dataclass(frozen=True)
class LastPlan:
    visit_id: int
    signed_at: datetime
    signed_by: str
    plan: str
    medication_changes: list[dict[str, Any]]


@dataclass(frozen=True)
class Safety:
    """The top of the panel, also answered alone (``?part=safety``) when it changes."""

    info: view.EmergencyInfo
    info_source: str            # "checkin": this visit's; "last": the last known
    checked_in: bool
    reasons: list[ReasonLine]
    escalations: list[view.Summary]
    emergency: view.Summary | None
    patient_name: str


@dataclass(frozen=True)
class Panel:
    visit_id: int
    patient_id: int
    patient_name: str
    can_write: bool
    safety: Safety
    measures: list[Measure]
    others: list[OtherResult]
    medications: list[dict[str, Any]]
    last_plan: LastPlan | None
    side_effects: list[SideEffectLine]
    missed: MissedDoses | None
    note: dict[str, Any]


def _info(source: dict[str, Any]) -> view.EmergencyInfo:
    return view.emergency_info(source)


def reason_lines(codes: list[str], services: Services) -> list[ReasonLine]:
    lines = []
    for code in codes:
        try:
            level = services.rules.level_of(Reason(code)).value
        except ValueError:
            level = "review"  # an unknown reason is shown, never hidden
        lines.append(ReasonLine(code, view.reason_label(code), level, view.level_label(level)))
    return sorted(lines, key=lambda line: -level_rank(line.level))


async def open_escalations(session: AsyncSession, actor: Actor, patient_id: int,
                           now: datetime) -> list[view.Summary]:
    """The patient's escalations that are not resolved, highest level first (each read
    through ``escalation_detail``: access checked, read audited)."""
    ids = (await session.scalars(select(Escalation.id).where(
        Escalation.patient_id == patient_id,
        Escalation.status != EscalationStatus.resolved))).all()
    found = [view.summary(await queries.escalation_detail(session, actor, i, now=now), now)
             for i in ids]
    return sorted(found, key=lambda e: (-level_rank(e.level), e.raised_at))


async def safety(session: AsyncSession, services: Services, actor: Actor,
                 visit: Visit, patient_name: str,
                 found: dict[str, Any] | None = None) -> Safety:
    """``found``: the visit's check-in as ``checkins.get_checkin`` answered it."""
    now = services.clock.now()
    if found is None:
        found = await checkins.get_checkin(session, services, actor, visit.id)
    checkin = found["checkin"]
    completed = bool(checkin and checkin["callback_phone"])
    info = _info(checkin if completed else found["prefill"])
    escalations = await open_escalations(session, actor, visit.patient_id, now)
    emergency = next((e for e in escalations if e.level == "emergency"), None)
    return Safety(info=info, info_source="checkin" if completed else "last",
                  checked_in=bool(checkin and checkin["status"] == "completed"),
                  reasons=reason_lines(list(checkin["reasons"]) if checkin else [], services),
                  escalations=escalations, emergency=emergency, patient_name=patient_name)


async def last_plan(session: AsyncSession, services: Services, actor: Actor,
                    visit: Visit) -> LastPlan | None:
    """The plan of this patient's last signed note from another visit."""
    visit_id = await session.scalar(select(VisitNote.visit_id).where(
        VisitNote.patient_id == visit.patient_id, VisitNote.status == NoteStatus.signed,
        VisitNote.visit_id != visit.id).order_by(VisitNote.signed_at.desc()).limit(1))
    if visit_id is None:
        return None
    note = await notes.get_note(session, services, actor, visit_id)
    return LastPlan(visit_id=visit_id, signed_at=datetime.fromisoformat(note["signed_at"]),
                    signed_by=(note["signed_by"] or {}).get("name", ""),
                    plan=note["sections"].get("plan", ""),
                    medication_changes=note["medication_changes"])


def reported(data: dict[str, Any]) -> tuple[list[SideEffectLine], MissedDoses | None]:
    """Side effects and missed doses as the patient reported them in the check-in."""
    effects = [SideEffectLine(SIDE_EFFECT_LABELS.get(str(e.get("effect")), str(e.get("effect"))),
                              SEVERITY_LABELS.get(str(e.get("severity")), str(e.get("severity"))),
                              e.get("details"))
               for e in data.get("side_effects") or [] if isinstance(e, dict)]
    raw = data.get("missed_doses")
    missed = None
    if isinstance(raw, dict) and isinstance(raw.get("days_missed"), int):
        missed = MissedDoses(raw["days_missed"],
                             [MISSED_DOSE_REASON_LABELS.get(str(r), str(r))
                              for r in raw.get("reasons") or []], raw.get("details"))
    return effects, missed


async def medication_part(session: AsyncSession, services: Services, actor: Actor,
                          patient_id: int) -> list[dict[str, Any]]:
    return await medications.medication_list(session, actor, patient_id, services.clock.now())


async def build(session: AsyncSession, services: Services, actor: Actor,
                visit: Visit, tz: str) -> Panel:
    """The whole panel for a prescriber or coordinator of the patient's care team."""
    patient_name = visit.patient.name
    found = await checkins.get_checkin(session, services, actor, visit.id)
    top = await safety(session, services, actor, visit, patient_name, found)
    series = await trends.patient_measures(session, actor, visit.patient_id,
                                           now=services.clock.now())
    effects, missed = reported((found["checkin"] or {}).get("data") or {})
    note = await notes.get_note(session, services, actor, visit.id)
    return Panel(
        visit_id=visit.id, patient_id=visit.patient_id, patient_name=patient_name,
        can_write=actor.role is Role.prescriber and actor.scope_visit_id is None,
        safety=top, measures=charted_measures(series, chart_prefix="panel", tz=tz),
        others=other_results(series, tz),
        medications=await medication_part(session, services, actor, visit.patient_id),
        last_plan=await last_plan(session, services, actor, visit),
        side_effects=effects, missed=missed, note=note,
    )


def template_context() -> dict[str, Any]:
    """The vocabularies the panel's templates need."""
    return {
        "section_labels": SECTION_LABELS, "section_hints": SECTION_HINTS,
        "main_before_safety": MAIN_BEFORE_SAFETY, "safety_sections": SAFETY,
        "main_after_safety": MAIN_AFTER_SAFETY, "actions": ACTIONS,
        "action_labels": ACTION_LABELS, **raise_form_choices(),
    }
