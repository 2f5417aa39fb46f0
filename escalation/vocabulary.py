"""The vocabularies of escalations, each defined once (CLINICAL.md is the truth for
levels and dispositions).

Each is a ``Literal`` type: the API's request bodies use it as a pydantic field, so a
value outside it is refused with 422 naming the field before any domain code runs, the
OpenAPI document lists its values, and mypy checks every place that writes one. The
tuples hold the same values in the same order, for forms and loops. The levels
themselves are ``server.triage.Level``.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from server.triage import Level

# Levels that create a coordinator task, highest first, so the only ones a manual raise
# offers. `review` is for the prescriber in the visit (shown at the top of the note
# panel), not a coordinator task.
TaskLevel = Literal["emergency", "urgent", "step_up"]
TASK_LEVELS: Final[tuple[TaskLevel, ...]] = get_args(TaskLevel)

# Why a person raises an escalation by hand (check-ins bring the triage reasons).
ManualReason = Literal[
    "suicidal_ideation_plan_or_intent", "homicidal_ideation", "mania", "psychosis",
    "severe_withdrawal_or_intoxication", "overdose_risk", "relapse", "medically_unstable",
    "needs_in_person_assessment", "other",
]
MANUAL_REASONS: Final[tuple[ManualReason, ...]] = get_args(ManualReason)

# Why the product raises an escalation on its own (an outreach rule, not a check-in):
# a patient on MOUD missed a visit and nothing was rebooked within 7 days
# (server.substance_use; escalation.moud_outreach).
OutreachReason = Literal["moud_missed_visit"]
OUTREACH_REASONS: Final[tuple[OutreachReason, ...]] = get_args(OutreachReason)

# How an escalation is closed (CLINICAL.md, "Levels of care").
Disposition = Literal[
    "emergency_services", "mobile_crisis", "inpatient", "residential",
    "partial_hospitalization", "intensive_outpatient", "in_person_visit",
    "outpatient_follow_up", "no_action_needed",
]
DISPOSITIONS: Final[tuple[Disposition, ...]] = get_args(Disposition)
# Dispositions that are themselves the action taken for someone at risk: help was sent
# to the patient, so an emergency may close without a call that reached them (6).
HELP_SENT: Final[tuple[Disposition, ...]] = ("emergency_services", "mobile_crisis")

# What raised or added to an escalation: a check-in's triage, a person by hand, or an
# outreach rule.
Source = Literal["checkin", "manual", "outreach"]
# What a trigger did to the escalation.
TriggerEffect = Literal["raised", "rearmed", "added"]

# What a person logs on an escalation they work on.
LoggedKind = Literal["contact_attempt", "note", "message"]
LOGGED_KINDS: Final[tuple[LoggedKind, ...]] = get_args(LoggedKind)
# Every step of an escalation's timeline: the logged ones, and those the lifecycle and
# the deadlines write.
EventKind = Literal[
    LoggedKind, "raised", "level_raised", "rearmed", "reasons_added",
    "emergency_info_confirmed", "acknowledged", "assigned", "started", "realert",
    "call_dropped", "resolved",
]

# How a call to the patient went.
ContactOutcome = Literal["reached", "no_answer", "voicemail", "wrong_number", "busy"]
CONTACT_OUTCOMES: Final[tuple[ContactOutcome, ...]] = get_args(ContactOutcome)

# Task levels are levels.
assert set(TASK_LEVELS) <= set(Level)
