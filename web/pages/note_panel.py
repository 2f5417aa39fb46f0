"""The note panel beside the video: what the prescriber needs for this visit, on first
paint, and the structured note they write.

Everything comes from the domain functions that check access and write the audit
record (``checkins.get_checkin``, ``notes.get_note``, ``queries.escalation_detail``,
``trends.patient_measures``, ``trials.patient_trials``, ``medication_list.medication_list``,
``labs.labs_due``), so the panel shows no more than the API would give the same person.
``static/note-panel.js`` keeps it live: it saves the note and fetches the parts that
change again (``/visits/{id}?part=...``, ``PARTS``), each built here by the same
function the whole panel uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import queries
from server import checkins, labs, medication_list, medications, notes, trends, trials
from server.actors import Actor
from server.emergency_info import EmergencyInfo, readable_phone
from server.models import (
    CheckInStatus,
    NoteStatus,
    Role,
    VisitNote,
)
from server.services import Services
from server.timezones import clinic_zone
from server.triage import Reason, level_rank
from server.visits import ENDED, VisitRecord
from web import escalation_view as view
from web.pages import panel_controlled
from web.pages.checkin import (
    MISSED_DOSE_REASON_LABELS,
    SEVERITY_LABELS,
    SIDE_EFFECT_LABELS,
)
from web.pages.coordinator import raise_form_choices
from web.pages.panel_costs import Costs, costs_part
from web.pages.patient import Measure, OtherResult, charted_measures, other_results

SECTION_LABELS: Final[dict[notes.Section, str]] = {
    "interval_history": "Interval history",
    "mental_status": "Mental status observations",
    "assessment": "Assessment",
    "plan": "Plan",
    "side_effect_actions": "Side-effect actions",
    "for_patient": "For the patient (goes in their summary)",
    "safety_assessed": "What was assessed",
    "safety_risk_judgement": "Your risk judgement",
    "safety_plan": "Safety plan",
    "visit_mode": "How this visit took place",
    "audio_only_reason": "Why video was not possible",
    "in_person_evaluated_on": "Your in-person evaluation of the patient (date)",
}
# The same sections named where they stand alone, in a message rather than under
# the safety assessment's heading (the editor's "not saved" and merge lines).
SECTION_NAMES: Final[dict[notes.Section, str]] = {
    **SECTION_LABELS,
    "safety_assessed": "What was assessed (safety)",
    "safety_risk_judgement": "Risk judgement",
    "for_patient": "For the patient",
}
SECTION_HINTS: Final[dict[notes.Section, str]] = {
    "interval_history": "Since the last visit: symptoms, adherence, life events.",
    "mental_status": "Appearance, mood and affect, thought process and content, "
                      "cognition, insight.",
    "side_effect_actions": "What to do about the side effects reported; the patient "
                           "reads this in their summary.",
    "for_patient": "What the patient should do and expect, in plain words. Their "
                   "after-visit summary shows this as written; your plan and "
                   "assessment stay in the note.",
    "safety_assessed": "Ideation, intent, plan, behaviour, access to means, protective "
                       "factors.",
    "safety_risk_judgement": "Low, moderate, high or imminent; say why in what was "
                             "assessed and the plan.",
    "safety_plan": "Safety plan, means restriction, crisis numbers given, follow-up.",
    "audio_only_reason": "Required for an audio-only visit.",
    "in_person_evaluated_on": "Needed to prescribe a controlled substance by "
                              "telemedicine once the DEA's flexibilities end, except "
                              "buprenorphine for opioid use disorder.",
}
# The order the sections are written in: the safety assessment follows the mental
# status examination, before the assessment and plan.
MAIN_BEFORE_SAFETY: Final[tuple[notes.Section, ...]] = ("interval_history", "mental_status")
SAFETY: Final = notes.SAFETY_SECTIONS
MAIN_AFTER_SAFETY: Final[tuple[notes.Section, ...]] = ("assessment", "plan")
ACTIONS: Final = medications.ACTIONS
ACTION_LABELS: Final[dict[medications.Action, str]] = {
    "start": "Start", "increase": "Increase", "decrease": "Decrease", "switch": "Switch to",
    "taper": "Taper", "stop": "Stop", "continue": "Continue",
}
# What ``/visits/{id}?part=NAME`` answers alone, each from its own audited reads in a
# fixed number of queries, for note-panel.js to fetch again when an event says it
# changed (docs/note-panel.md, "Live parts").
PARTS: Final = ("safety", "medications", "labs", "trends", "costs", "controlled")
RISK_JUDGEMENT_LABELS: Final[dict[notes.RiskJudgement, str]] = {
    "low": "Low", "moderate": "Moderate", "high": "High", "imminent": "Imminent",
}

assert set(SECTION_LABELS) == set(notes.SECTIONS)
assert set(ACTION_LABELS) == set(ACTIONS)
assert tuple(RISK_JUDGEMENT_LABELS) == notes.RISK_JUDGEMENTS


@dataclass(frozen=True)
class ReasonLine:
    """One triage reason of this visit's check-in, with the level it carries, when it
    first showed and whether the patient's latest answers still show it (a reason stays
    on record when an answer is changed: CLINICAL.md invariant 1)."""

    code: str
    label: str
    level: str
    level_label: str
    first_seen_at: datetime | None = None
    first_seen_kind: str | None = None
    in_latest: bool = True


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
    medication_changes: list[medications.MedicationChangeRow]


@dataclass(frozen=True)
class Safety:
    """The top of the panel, also answered alone (``?part=safety``) when it changes."""

    # The freshest emergency information and how fresh (confirmed, or on file only).
    info: view.EmergencyInfo
    checked_in: bool
    reasons: list[ReasonLine]
    escalations: list[view.Summary]
    emergency: view.Summary | None
    patient_name: str
    # The call is over: the emergency box stops saying "keep the patient on the call".
    visit_ended: bool


@dataclass(frozen=True)
class Trends:
    """"Scores and trends" (``?part=trends``): the current medication trial ("is it
    working") and the charts, which draw the medication events on the trial's axis."""

    measures: list[Measure]
    trial: trials.Trial | None
    others: list[OtherResult]


@dataclass(frozen=True)
class Reported:
    """"Side effects and missed doses" (``?part=costs``): what the patient reported in
    this visit's check-in, and what it costs over time (``panel_costs``)."""

    side_effects: list[SideEffectLine]
    missed: MissedDoses | None
    costs: Costs


@dataclass(frozen=True)
class Panel:
    visit_id: int
    patient_id: int
    patient_name: str
    can_write: bool
    safety: Safety
    labs: labs.LabsDue
    trends: Trends
    medications: list[medication_list.MedicationEntry]
    last_plan: LastPlan | None
    reported: Reported
    note: notes.Note
    gate: list[ReasonLine]          # why the safety assessment is required (if it is)
    task_reasons: list[ReasonLine]  # the open addendum task's reasons, if one is open
    gate_vocabulary: dict[str, Any]
    controlled: panel_controlled.ControlledPanel


def _info(info: EmergencyInfo) -> view.EmergencyInfo:
    """The check-in's freshest emergency information, as the panel shows it."""
    return view.EmergencyInfo(
        address=info.address, state=info.state, callback=readable_phone(info.callback_phone),
        callback_href=view.tel_href(info.callback_phone), contact_name=info.contact_name,
        contact_phone=readable_phone(info.contact_phone),
        contact_href=view.tel_href(info.contact_phone), confirmed_at=info.confirmed_at,
        on_file_at=info.on_file_at, source=info.source)


def reason_lines(codes: list[str], services: Services) -> list[ReasonLine]:
    lines = [ReasonLine(code, view.reason_label(code), level, view.level_label(level))
             for code in codes
             for level in [services.rules.level_of_code(code).value]]
    return sorted(lines, key=lambda line: -level_rank(line.level))


def checkin_reason_lines(checkin: checkins.CheckInView | None,
                         services: Services) -> list[ReasonLine]:
    """Every reason the check-in ever showed (``checkins.get_checkin`` as the care team
    reads it: ``reasons_seen`` says when each first showed)."""
    if checkin is None:
        return []
    seen = {r.code: r for r in checkin.reasons_seen or []}
    lines = []
    for code in checkin.reasons:
        level = services.rules.level_of_code(code).value
        first = seen.get(code)
        lines.append(ReasonLine(
            code, view.reason_label(code), level, view.level_label(level),
            first_seen_at=first.first_seen_at if first else None,
            first_seen_kind=first.first_seen_kind if first else None,
            in_latest=first.in_latest if first else True))
    return sorted(lines, key=lambda line: -level_rank(line.level))


def escalation_open_label(escalation: notes.GatingEscalation) -> str:
    how = {"manual": "raised by hand", "outreach": "raised by an outreach rule"}.get(
        escalation.source, "from a check-in")
    reasons = "; ".join(view.reason_label(code) for code in escalation.reasons)
    return f"An open escalation ({how}){': ' + reasons if reasons else ''}"


def gate_lines(note: notes.Note, services: Services) -> list[ReasonLine]:
    """Why the note's safety assessment is required (``notes.safety_gate``): the visit's
    check-in reasons, and the patient's open escalation as one line at its own level."""
    codes = list(note.safety_reasons)
    escalation = note.safety_escalation
    if notes.ESCALATION_OPEN in codes:
        codes = codes[:codes.index(notes.ESCALATION_OPEN)]
    lines = reason_lines(codes, services)
    if escalation:
        level = escalation.level
        lines.append(ReasonLine(notes.ESCALATION_OPEN, escalation_open_label(escalation),
                                level, view.level_label(level)))
    return sorted(lines, key=lambda line: -level_rank(line.level))


async def open_escalations(session: AsyncSession, actor: Actor, patient_id: int,
                           now: datetime) -> list[view.Summary]:
    """The patient's escalations that are not resolved, highest level first (access
    checked and each read audited by ``patient_open_escalations``)."""
    found = await queries.patient_open_escalations(session, actor, patient_id, now=now)
    return sorted((view.summary(e, now) for e in found),
                  key=lambda e: (-level_rank(e.level), e.raised_at))


async def safety(session: AsyncSession, services: Services, actor: Actor,
                 visit: VisitRecord, patient_name: str,
                 found: checkins.CheckInState | None = None) -> Safety:
    """``found``: the visit's check-in as ``checkins.get_checkin`` answered it."""
    now = services.clock.now()
    if found is None:
        found = await checkins.get_checkin(session, services, actor, visit.id)
    checkin = found.checkin
    escalations = await open_escalations(session, actor, visit.patient_id, now)
    emergency = next((e for e in escalations if e.level == "emergency"), None)
    return Safety(info=_info(found.emergency_info),
                  checked_in=checkin is not None and checkin.status is CheckInStatus.completed,
                  reasons=checkin_reason_lines(checkin, services),
                  escalations=escalations, emergency=emergency, patient_name=patient_name,
                  visit_ended=visit.status in ENDED)


async def last_plan(session: AsyncSession, services: Services, actor: Actor,
                    visit: VisitRecord) -> LastPlan | None:
    """The plan of this patient's last signed note from another visit."""
    visit_id = await session.scalar(select(VisitNote.visit_id).where(
        VisitNote.patient_id == visit.patient_id, VisitNote.status == NoteStatus.signed,
        VisitNote.visit_id != visit.id).order_by(VisitNote.signed_at.desc()).limit(1))
    if visit_id is None:
        return None
    note = await notes.get_note(session, services, actor, visit_id)
    # Signed: the query above found it so.
    assert note.signed_at is not None
    return LastPlan(visit_id=visit_id, signed_at=note.signed_at,
                    signed_by=note.signed_by.name if note.signed_by else "",
                    plan=note.sections["plan"], medication_changes=note.medication_changes)


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


async def labs_part(session: AsyncSession, services: Services, actor: Actor,
                    patient_id: int) -> labs.LabsDue:
    return await labs.labs_due(session, actor, patient_id, now=services.clock.now(),
                               zone=clinic_zone(services.settings))


async def medication_part(session: AsyncSession, services: Services, actor: Actor,
                          patient_id: int) -> list[medication_list.MedicationEntry]:
    return await medication_list.medication_list(session, actor, patient_id,
                                                 now=services.clock.now(),
                                                 zone=clinic_zone(services.settings))


async def trends_part(session: AsyncSession, services: Services, actor: Actor,
                      patient_id: int, tz: str) -> Trends:
    now = services.clock.now()
    series = await trends.patient_measures(session, actor, patient_id, now=now)
    found_trials = await trials.patient_trials(session, actor, patient_id, now=now)
    return Trends(measures=charted_measures(series, chart_prefix="panel", tz=tz,
                                            found=found_trials),
                  trial=found_trials.current, others=other_results(series, tz))


async def reported_part(session: AsyncSession, services: Services, actor: Actor,
                        visit: VisitRecord,
                        found: checkins.CheckInState | None = None) -> Reported:
    """``found``: the visit's check-in as ``checkins.get_checkin`` answered it."""
    if found is None:
        found = await checkins.get_checkin(session, services, actor, visit.id)
    effects, missed = reported(found.checkin.data if found.checkin else {})
    return Reported(side_effects=effects, missed=missed,
                    costs=await costs_part(session, services, actor, visit.patient_id))


def can_write(actor: Actor) -> bool:
    """The prescriber writes the note and records PDMP checks; coordinators read."""
    return actor.role is Role.prescriber and actor.scope_visit_id is None


async def build(session: AsyncSession, services: Services, actor: Actor,
                visit: VisitRecord, tz: str) -> Panel:
    """The whole panel for a prescriber or coordinator of the patient's care team."""
    patient_name = visit.patient.name
    found = await checkins.get_checkin(session, services, actor, visit.id)
    top = await safety(session, services, actor, visit, patient_name, found)
    note = await notes.get_note(session, services, actor, visit.id)
    return Panel(
        visit_id=visit.id, patient_id=visit.patient_id, patient_name=patient_name,
        can_write=can_write(actor), safety=top,
        labs=await labs_part(session, services, actor, visit.patient_id),
        trends=await trends_part(session, services, actor, visit.patient_id, tz),
        medications=await medication_part(session, services, actor, visit.patient_id),
        last_plan=await last_plan(session, services, actor, visit),
        reported=await reported_part(session, services, actor, visit, found),
        note=note, gate=gate_lines(note, services),
        task_reasons=reason_lines(note.safety_addendum_task.reasons
                                  if note.safety_addendum_task else [], services),
        gate_vocabulary=gate_vocabulary(services),
        controlled=await panel_controlled.build(session, services, actor, visit),
    )


def template_context() -> dict[str, Any]:
    """The vocabularies the panel's templates need."""
    return {
        "section_labels": SECTION_LABELS, "section_hints": SECTION_HINTS,
        "main_before_safety": MAIN_BEFORE_SAFETY, "safety_sections": SAFETY,
        "main_after_safety": MAIN_AFTER_SAFETY, "actions": ACTIONS,
        "action_labels": ACTION_LABELS, "risk_judgements": RISK_JUDGEMENT_LABELS,
        **raise_form_choices(),
    }


def gate_vocabulary(services: Services) -> dict[str, Any]:
    """What note-panel.js needs to show the gate's reasons again when they change:
    each reason's words and level, and the levels' words."""
    levels = {}
    for reason in Reason:
        try:
            levels[reason.value] = services.rules.level_of(reason).value
        except (KeyError, ValueError):
            levels[reason.value] = "review"
    return {"labels": dict(view.REASON_LABELS), "levels": levels,
            "level_labels": dict(view.LEVEL_LABELS)}
