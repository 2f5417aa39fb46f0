"""C-SSRS Screener, recent version, with its skip logic (Posner et al. 2011; Columbia
Lighthouse Project screener with triage points).

Answers are yes/no, keyed ``q1`` .. ``q6`` and ``q6_recent``. The screener is not summed:
the highest endorsed answer decides the risk.

- high: q4 or q5 yes, or q6 yes with q6_recent yes (Columbia's imminent-risk point);
- moderate: q3 yes, or q6 yes with q6_recent no;
- low: q1 or q2 yes, and nothing above;
- none: every asked answer no.

Skip logic: q3-q5 are asked only if q2 is yes, q6_recent only if q6 is yes. Our form
never sends an answer to an unasked question, so a ``true`` there (or any q6_recent when
q6 is no) means the client is confused about what the patient saw, and is rejected
rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from server.errors import ValidationFailed
from server.instruments.base import YES_NO, Instrument, Item, response_object

Risk = Literal["none", "low", "moderate", "high"]

RISKS: Final[tuple[Risk, ...]] = ("none", "low", "moderate", "high")
QUESTIONS: Final = ("q1", "q2", "q3", "q4", "q5", "q6", "q6_recent")

_ITEMS: Final = (
    (
        "q1",
        "wish_to_be_dead",
        "In the past month, have you wished you were dead, or wished you could go to "
        "sleep and not wake up?",
        None,
    ),
    (
        "q2",
        "suicidal_thoughts",
        "In the past month, have you had any thoughts of killing yourself?",
        None,
    ),
    (
        "q3",
        "method",
        "In the past month, have you been thinking about how you might do this?",
        ("q2", True),
    ),
    (
        "q4",
        "intent",
        "In the past month, have you had these thoughts and had some intention of acting on them?",
        ("q2", True),
    ),
    (
        "q5",
        "plan",
        "In the past month, have you started to work out, or worked out, the details of "
        "how to kill yourself, and do you intend to carry out this plan?",
        ("q2", True),
    ),
    (
        "q6",
        "behavior_lifetime",
        "Have you ever done anything, started to do anything, or got ready to do anything "
        "to end your life? For example: collected pills, got hold of a weapon, gave away "
        "things you value, wrote a goodbye note, or tried to hurt yourself to die.",
        None,
    ),
    (
        "q6_recent",
        "behavior_recent",
        "Was this within the past 3 months?",
        ("q6", True),
    ),
)

DEFINITION: Final = Instrument(
    id="cssrs",
    name="C-SSRS Screener, recent",
    recall="past month; question 6 lifetime and past 3 months",
    intro=(
        "We ask everyone these questions about thoughts of death and suicide, because "
        "they help your care team keep you safe. Please answer yes or no. If you are in "
        "danger right now, call or text 988, or call 911."
    ),
    answer_type="boolean",
    items=tuple(
        Item(
            id=key,
            answer_path=f"answers.{key}",
            topic=topic,
            text=text,
            options=YES_NO,
            asked_if=asked_if,
        )
        for key, topic, text, asked_if in _ITEMS
    ),
)


@dataclass(frozen=True)
class CssrsAnswers:
    """Validated answers; ``None`` marks a question that skip logic left unasked."""

    q1: bool
    q2: bool
    q3: bool | None
    q4: bool | None
    q5: bool | None
    q6: bool
    q6_recent: bool | None


def risk(answers: CssrsAnswers) -> Risk:
    if answers.q4 or answers.q5 or (answers.q6 and answers.q6_recent):
        return "high"
    if answers.q3 or (answers.q6 and answers.q6_recent is False):
        return "moderate"
    if answers.q1 or answers.q2:
        return "low"
    return "none"


@dataclass(frozen=True)
class CssrsScore:
    answers: CssrsAnswers
    risk: Risk

    def to_json(self) -> dict[str, object]:
        return {"risk": self.risk}


def _asked(answers: Mapping[str, object], key: str, path: str) -> bool:
    value = answers.get(key)
    if not isinstance(value, bool):
        raise ValidationFailed(
            f"{path}.{key} is required and must be true or false", field=f"{path}.{key}"
        )
    return value


def _follow_up(
    answers: Mapping[str, object],
    key: str,
    path: str,
    *,
    asked_if: str,
    asked: bool,
    no_tolerated: bool,
) -> bool | None:
    """A question shown only when ``asked_if`` was answered yes; ``None`` when unasked."""
    if asked:
        return _asked(answers, key, path)
    value = answers.get(key)
    if value is None or (value is False and no_tolerated):
        return None
    allowed = "omitted, null or false" if no_tolerated else "omitted or null"
    raise ValidationFailed(
        f"{path}.{key} must be {allowed}: it is asked only when {asked_if} is yes",
        field=f"{path}.{key}",
    )


def parse(raw: object, *, field: str = "responses.cssrs") -> CssrsAnswers:
    response = response_object(raw, field, frozenset({"answers"}))
    path = f"{field}.answers"
    answers = response.get("answers")
    if answers is None:
        raise ValidationFailed(f"{path} is required", field=path)
    if not isinstance(answers, dict):
        raise ValidationFailed(f"{path} must be an object of yes/no answers", field=path)
    for key in answers:
        if key not in QUESTIONS:
            raise ValidationFailed(
                f"{path}.{key} is not a C-SSRS screener question", field=f"{path}.{key}"
            )

    q1 = _asked(answers, "q1", path)
    q2 = _asked(answers, "q2", path)
    # A q3-q5 "no" while q2 is no agrees with what the patient meant, so it is tolerated.
    # Any q6_recent while q6 is no is not (CLINICAL.md): it claims the patient answered a
    # question that was never shown.
    q3 = _follow_up(answers, "q3", path, asked_if="q2", asked=q2, no_tolerated=True)
    q4 = _follow_up(answers, "q4", path, asked_if="q2", asked=q2, no_tolerated=True)
    q5 = _follow_up(answers, "q5", path, asked_if="q2", asked=q2, no_tolerated=True)
    q6 = _asked(answers, "q6", path)
    q6_recent = _follow_up(answers, "q6_recent", path, asked_if="q6", asked=q6, no_tolerated=False)
    return CssrsAnswers(q1=q1, q2=q2, q3=q3, q4=q4, q5=q5, q6=q6, q6_recent=q6_recent)


def score(raw: object, *, field: str = "responses.cssrs") -> CssrsScore:
    answers = parse(raw, field=field)
    return CssrsScore(answers=answers, risk=risk(answers))
