"""An escalation as people read it: levels, reasons, dispositions and timeline steps in
plain words, emergency information with numbers a phone can dial, and the waiting time.

Pure functions over the typed results of ``escalation.queries`` (the values the JSON
API serialises), so the pages and the API show the same facts. The wording of clinical
items comes from ``server.instruments`` unchanged (validated wording, see
docs/clinical.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, assert_never

from pydantic import JsonValue

from escalation.queries import (
    EscalationSummary,
    TimelineEvent,
    Trigger,
    TriggeringAnswers,
)
from escalation.vocabulary import (
    CONTACT_OUTCOMES,
    DISPOSITIONS,
    MANUAL_REASONS,
    OUTREACH_REASONS,
    TASK_LEVELS,
    TriggerEffect,
)
from server import us_states
from server.emergency_info import readable_phone
from server.instruments import INSTRUMENTS
from server.instruments.base import FREQUENCY
from server.labs import REASON_LABELS as LAB_REASON_LABELS
from server.results import Person

LEVEL_LABELS: Final = {
    "emergency": "Emergency", "urgent": "Urgent", "step_up": "Step up care",
    "review": "Review", "none": "None",
}
# What each level asks of the coordinator (CLINICAL.md, "What the levels mean").
LEVEL_MEANINGS: Final[dict[str, str]] = {
    "emergency": "Imminent risk",
    "urgent": "Same-day safety or in-person evaluation",
    "step_up": "Higher level of care or in-person care within days",
}
STATUS_LABELS: Final = {
    "open": "Not acknowledged", "acknowledged": "Acknowledged",
    "in_progress": "In progress", "resolved": "Resolved",
}

REASON_LABELS: Final = {
    # From check-ins (CLINICAL.md, "Triage").
    "cssrs_high": "Suicide risk screen high: intent or a plan, or recent suicidal behaviour",
    "cssrs_moderate": "Suicide risk screen moderate: thinking about a method, or past "
                      "suicidal behaviour",
    "phq9_item9_unassessed": "Thoughts of death or self-harm, not yet assessed further",
    "cssrs_low": "Suicide risk screen low: wish to be dead or suicidal thoughts",
    "phq9_item9_positive": "Thoughts of death or self-harm (depression questionnaire)",
    "phq9_severe": "Severe depression (PHQ-9 20 or more)",
    "asrm_positive": "Possible mania or hypomania (ASRM 6 or more)",
    "gad7_severe": "Severe anxiety (GAD-7 15 or more)",
    "auditc_positive": "Risky drinking (AUDIT-C positive)",
    "phq9_worsened": "Depression worse by 5 points or more since the last PHQ-9",
    # Overdue monitoring labs that gate signing (server/lab_rules.toml).
    **LAB_REASON_LABELS,
    # Raised by hand (escalation.vocabulary.MANUAL_REASONS).
    "suicidal_ideation_plan_or_intent": "Suicidal thoughts with a plan or intent",
    "homicidal_ideation": "Thoughts of harming someone else",
    "mania": "Mania",
    "psychosis": "Psychosis",
    "severe_withdrawal_or_intoxication": "Severe withdrawal or intoxication",
    "overdose_risk": "Overdose risk or a recent overdose",
    "relapse": "Relapse",
    "medically_unstable": "Medically unstable",
    "needs_in_person_assessment": "Needs in-person assessment or labs",
    "other": "Other",
    # Raised by an outreach rule (escalation.vocabulary.OUTREACH_REASONS).
    "moud_missed_visit": "On MOUD, missed a visit and nothing rebooked within 7 days: "
                         "reach out",
}
# How an escalation or a trigger came about, in a few words.
SOURCE_WORDS: Final = {"manual": "by hand", "checkin": "from a check-in",
                       "outreach": "by an outreach rule"}

DISPOSITION_LABELS: Final[dict[str, str]] = {
    "emergency_services": "Emergency services (911 or emergency department)",
    "mobile_crisis": "Mobile crisis team",
    "inpatient": "Inpatient admission",
    "residential": "Residential treatment",
    "partial_hospitalization": "Partial hospitalization program",
    "intensive_outpatient": "Intensive outpatient program",
    "in_person_visit": "In-person visit",
    "outpatient_follow_up": "Outpatient follow-up",
    "no_action_needed": "No action needed (say why)",
}

OUTCOME_LABELS: Final = {
    "reached": "Reached the patient", "no_answer": "No answer",
    "voicemail": "Left a voicemail", "wrong_number": "Wrong number", "busy": "Line busy",
}

SEVERITY_LABELS: Final = {
    "minimal": "minimal", "mild": "mild", "moderate": "moderate",
    "moderately_severe": "moderately severe", "severe": "severe",
}
RISK_LABELS: Final = {"none": "none", "low": "low", "moderate": "moderate", "high": "high"}

# Every choice a form offers has its words: a new code must not show up as a raw code.
assert set(MANUAL_REASONS) <= set(REASON_LABELS)
assert set(OUTREACH_REASONS) <= set(REASON_LABELS)
assert set(TASK_LEVELS) <= set(LEVEL_MEANINGS)
assert set(DISPOSITIONS) == set(DISPOSITION_LABELS)
assert set(CONTACT_OUTCOMES) == set(OUTCOME_LABELS)


def _humanize(code: str) -> str:
    return code.replace("_", " ").capitalize()


def reason_label(code: str) -> str:
    return REASON_LABELS.get(code, _humanize(code))


def level_label(level: str) -> str:
    return LEVEL_LABELS.get(level, _humanize(level))


def choices(codes: tuple[str, ...], labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(value, label) pairs for a <select>, in the vocabulary's own order."""
    return [(code, labels.get(code, _humanize(code))) for code in codes]


def tel_href(phone: str | None) -> str | None:
    """A ``tel:`` link for a number as the patient typed it ("+1 (555) 010-0100")."""
    if not phone:
        return None
    digits = re.sub(r"[^\d+]", "", phone)
    digits = digits[:1] + digits[1:].replace("+", "")
    return f"tel:{digits}" if any(c.isdigit() for c in digits) else None


def duration_text(seconds: float) -> str:
    """"42 s", "4 min 05 s", "2 h 07 min", "3 d 4 h": the same as the pages' script
    (escalation-clock.js), so a live clock does not jump when it takes over."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def minutes_text(minutes: float | None) -> str:
    """A measure in minutes, for the clinic measures table ("—" when nothing to measure)."""
    if minutes is None:
        return "—"
    return duration_text(minutes * 60)


@dataclass(frozen=True)
class Clock:
    """How long since the escalation was raised, and how long to its deadline."""

    waiting: str
    due: str | None
    overdue: bool


def clock(escalation: EscalationSummary, now: datetime) -> Clock:
    waiting = duration_text((now - escalation.raised_at).total_seconds())
    due_at = escalation.ack_due_at
    if due_at is None:
        return Clock(waiting, None, False)
    left = (due_at - now).total_seconds()
    if left >= 0:
        return Clock(waiting, f"Acknowledge within {duration_text(left)}", False)
    return Clock(waiting, f"Overdue by {duration_text(-left)}", True)


@dataclass(frozen=True)
class EmergencyInfo:
    """Emergency information as a screen shows it, with how fresh it is (CLINICAL.md
    invariant 2): ``confirmed_at`` when the patient confirmed the location and callback
    recently; otherwise ``source`` says where the values come from ("last_checkin",
    confirmed ``on_file_at``; "profile"; None: nothing at all), and the screen says they
    are not confirmed today."""

    address: str | None
    # The USPS code the patient named with the address (None: not given with it).
    state: str | None
    callback: str | None
    callback_href: str | None
    contact_name: str | None
    contact_phone: str | None
    contact_href: str | None
    confirmed_at: datetime | None = None
    on_file_at: datetime | None = None
    source: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def state_name(self) -> str | None:
        """The state in full ("Massachusetts"): read out to a dispatcher, a code is
        easily misheard."""
        return us_states.state_name(self.state) if self.state else None


def _emergency_info(address: str | None, state: str | None, callback_phone: str | None,
                    contact_name: str | None, contact_phone: str | None, *,
                    confirmed_at: datetime | None, on_file_at: datetime | None,
                    source: str | None) -> EmergencyInfo:
    return EmergencyInfo(
        address=address, state=state, callback=readable_phone(callback_phone),
        callback_href=tel_href(callback_phone), contact_name=contact_name,
        contact_phone=readable_phone(contact_phone), contact_href=tel_href(contact_phone),
        confirmed_at=confirmed_at, on_file_at=on_file_at, source=source,
    )


def escalation_emergency_info(escalation: EscalationSummary) -> EmergencyInfo:
    """What the escalation holds (the patient's freshest, copied at every confirmation):
    ``emergency_confirmed_at`` is a confirmation when it comes from this check-in
    (``checkin``), the date of one on file when from an earlier one (``last_checkin``)."""
    source = escalation.emergency_source
    when = escalation.emergency_confirmed_at
    return _emergency_info(
        escalation.location.address, escalation.location.state, escalation.callback_phone,
        escalation.emergency_contact.name, escalation.emergency_contact.phone,
        confirmed_at=when if source == "checkin" else None,
        on_file_at=when if source == "last_checkin" else None, source=source,
    )


def person_name(person: Person | None) -> str:
    return (person.name or f"user {person.id}") if person else ""


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    who: str
    what: str
    text: str | None


def _reasons_text(codes: JsonValue) -> str:
    if not isinstance(codes, list):
        return ""
    return "; ".join(reason_label(str(c)) for c in codes)


def timeline_entry(event: TimelineEvent, names: Mapping[int, str]) -> TimelineEntry:
    """``names``: people an ``assigned`` step names by id (``assignee_id``)."""
    kind = event.kind
    detail = event.detail
    who = person_name(event.actor) if event.actor else "Mendwell"
    text = str(detail["text"]) if detail.get("text") else None
    if kind == "raised":
        source = "from the check-in" if detail.get("source") == "checkin" else "by hand"
        what = f"Raised {source} at level {level_label(str(detail.get('level')))}: " \
            f"{_reasons_text(detail.get('reasons'))}"
    elif kind == "level_raised":
        what = f"Level raised from {level_label(str(detail.get('previous_level')))} to " \
            f"{level_label(str(detail.get('level')))}: {_reasons_text(detail.get('reasons'))}"
    elif kind == "rearmed":
        what = f"New {level_label(str(detail.get('level')))} trigger after it was taken: " \
            f"{_reasons_text(detail.get('reasons'))}. It needs acknowledging again"
    elif kind == "reasons_added":
        what = f"Reasons added: {_reasons_text(detail.get('reasons'))}"
    elif kind == "emergency_info_confirmed":
        what = "The patient confirmed where they are and their callback number"
    elif kind == "acknowledged":
        what = "Acknowledged"
    elif kind == "assigned":
        assignee = detail.get("assignee_id")
        name = names.get(assignee, f"user {assignee}") if isinstance(assignee, int) else "?"
        what = f"Assigned to {name}"
    elif kind == "started":
        what = "Started working on it"
    elif kind == "contact_attempt":
        outcome = str(detail.get("outcome") or "")
        what = f"Call to the patient: {OUTCOME_LABELS.get(outcome, _humanize(outcome))}"
    elif kind == "note":
        what = "Note"
    elif kind == "message":
        what = "Message"
    elif kind == "realert":
        what = "Not acknowledged in time: coordinators alerted again"
        if detail.get("backup"):
            what += ", and the backup (on call)"
    elif kind == "call_dropped":
        what = "The video call with the patient dropped"
    elif kind == "resolved":
        disposition = str(detail.get("disposition") or "")
        what = f"Resolved: {DISPOSITION_LABELS.get(disposition, _humanize(disposition))}"
    else:
        assert_never(kind)
    return TimelineEntry(event.at, who, what, text)


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str


@dataclass(frozen=True)
class Score:
    name: str
    result: str


@dataclass(frozen=True)
class Triggering:
    """The check-in answers behind an escalation, as the coordinator reads them: as they
    were saved when they triggered (``at``; ``kind`` "draft": while the patient was still
    answering), even if the patient changed them later."""

    scores: list[Score]
    reasons: list[str]
    cssrs: list[Answer]
    phq9_item9: Answer | None
    at: datetime | None = None
    kind: str | None = None


def _yes_no(value: object) -> str:
    if value is True:
        return "Yes"
    if value is False:
        return "No"
    return "Not asked"


def _score_lines(scores: Mapping[str, Any]) -> list[Score]:
    lines: list[Score] = []
    if phq9 := scores.get("phq9"):
        severity = SEVERITY_LABELS.get(phq9.get("severity"), phq9.get("severity"))
        lines.append(Score("PHQ-9 depression", f"{phq9.get('total')} of 27, {severity}"))
    if gad7 := scores.get("gad7"):
        severity = SEVERITY_LABELS.get(gad7.get("severity"), gad7.get("severity"))
        lines.append(Score("GAD-7 anxiety", f"{gad7.get('total')} of 21, {severity}"))
    if cssrs := scores.get("cssrs"):
        risk = RISK_LABELS.get(cssrs.get("risk"), cssrs.get("risk"))
        lines.append(Score("C-SSRS suicide risk screen", f"risk {risk}"))
    if auditc := scores.get("auditc"):
        positive = "positive" if auditc.get("positive") else "negative"
        lines.append(Score("AUDIT-C alcohol", f"{auditc.get('total')} of 12, {positive}"))
    if asrm := scores.get("asrm"):
        positive = "positive" if asrm.get("positive") else "negative"
        lines.append(Score("ASRM mania", f"{asrm.get('total')} of 20, {positive}"))
    return lines


def triggering(data: TriggeringAnswers | None) -> Triggering | None:
    if data is None:
        return None
    responses: Mapping[str, Any] = data.responses if isinstance(data.responses, dict) else {}
    cssrs_answers = ((responses.get("cssrs") or {}).get("answers")) or {}
    cssrs = [Answer(item.text, _yes_no(cssrs_answers.get(item.id)))
             for item in INSTRUMENTS["cssrs"].items] if cssrs_answers else []
    item9 = None
    phq9_answers = (responses.get("phq9") or {}).get("answers")
    if isinstance(phq9_answers, list) and len(phq9_answers) == 9:
        value = phq9_answers[8]
        label = FREQUENCY[value].label if isinstance(value, int) and \
            0 <= value < len(FREQUENCY) else str(value)
        item9 = Answer(INSTRUMENTS["phq9"].items[8].text, label)
    return Triggering(scores=_score_lines(data.scores or {}),
                      reasons=[reason_label(r) for r in data.reasons or []],
                      cssrs=cssrs, phq9_item9=item9, at=data.at, kind=data.kind)


@dataclass(frozen=True)
class TriggerLine:
    """One thing that raised, re-armed or added to the escalation."""

    at: datetime
    what: str
    who: str
    level: str
    level_label: str
    reasons: list[str]
    text: str | None
    answers_at: datetime | None
    answers_kind: str | None


TRIGGER_EFFECTS: Final[dict[TriggerEffect, str]] = {
    "raised": "Raised", "rearmed": "Re-armed", "added": "Added"}


def trigger_lines(triggers: list[Trigger]) -> list[TriggerLine]:
    lines = []
    for t in triggers:
        source = SOURCE_WORDS.get(t.source, t.source)
        lines.append(TriggerLine(
            at=t.at, what=f"{TRIGGER_EFFECTS[t.effect]} {source}", who=person_name(t.actor),
            level=t.level.value, level_label=level_label(t.level),
            reasons=[reason_label(r) for r in t.reasons], text=t.text,
            answers_at=t.answers.at if t.answers else None,
            answers_kind=t.answers.kind if t.answers else None))
    return lines


@dataclass(frozen=True)
class Summary:
    """What a queue row and the top of the escalation page show."""

    id: int
    level: str
    level_label: str
    level_meaning: str | None
    patient_id: int
    patient: str
    reasons: list[str]
    reason_text: str | None
    status: str
    status_label: str
    raised_at: datetime
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str
    assigned_to: str
    clock: Clock
    info: EmergencyInfo
    visit_id: int | None
    live_visit_id: int | None


def summary(escalation: EscalationSummary, now: datetime) -> Summary:
    level = escalation.level.value
    status = escalation.status.value
    return Summary(
        id=escalation.id, level=level, level_label=level_label(level),
        level_meaning=LEVEL_MEANINGS.get(level),
        patient_id=escalation.patient.id, patient=person_name(escalation.patient),
        reasons=[reason_label(r) for r in escalation.reasons],
        reason_text=escalation.reason_text,
        status=status, status_label=STATUS_LABELS.get(status, _humanize(status)),
        raised_at=escalation.raised_at, ack_due_at=escalation.ack_due_at,
        acknowledged_at=escalation.acknowledged_at,
        acknowledged_by=person_name(escalation.acknowledged_by),
        assigned_to=person_name(escalation.assigned_to),
        clock=clock(escalation, now), info=escalation_emergency_info(escalation),
        visit_id=escalation.visit_id, live_visit_id=escalation.live_visit_id,
    )
