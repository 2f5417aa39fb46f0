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

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BeforeValidator,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from server.instruments.base import YES_NO, ClosedAnswers, Instrument, Item, refusal, refused

Risk = Literal["none", "low", "moderate", "high"]

RISKS: Final[tuple[Risk, ...]] = ("none", "low", "moderate", "high")
QUESTIONS: Final = ("q1", "q2", "q3", "q4", "q5", "q6", "q6_recent")

def _null_is_missing(value: object) -> object:
    if value is None:
        raise refused("is required")
    return value


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
class _FollowUp:
    """A question shown only when ``asked_if`` was answered yes."""

    asked_if: str
    # A "no" to an unasked q3-q5 while q2 is no agrees with what the patient meant, so it
    # is tolerated. Any q6_recent while q6 is no is not (CLINICAL.md): it claims the
    # patient answered a question that was never shown.
    no_tolerated: bool


SKIP_LOGIC: Final = {
    "q3": _FollowUp("q2", no_tolerated=True),
    "q4": _FollowUp("q2", no_tolerated=True),
    "q5": _FollowUp("q2", no_tolerated=True),
    "q6_recent": _FollowUp("q6", no_tolerated=False),
}
_ASKED_IF_Q2 = "Asked only when q2 is yes; omitted, null or false otherwise."
_YES_OR_NO = "is required and must be true or false"


def _follow_up(description: str) -> Any:
    # Checked when omitted too: omitted is an answer missing when the question was asked.
    return Field(default=None, validate_default=True, description=description)


class CssrsAnswers(ClosedAnswers):
    """The C-SSRS screener, yes/no, with its skip logic (CLINICAL.md).

    Once read, ``None`` marks a question the skip logic left unasked. The questions are
    checked in order, each follow-up against the answer that decides whether it was
    asked."""

    MISSING = _YES_OR_NO
    UNKNOWN_KEY = "is not a C-SSRS screener question"
    NOT_OBJECT = "must be an object of yes/no answers"

    q1: bool
    q2: bool
    q3: bool | None = _follow_up(_ASKED_IF_Q2)
    q4: bool | None = _follow_up(_ASKED_IF_Q2)
    q5: bool | None = _follow_up(_ASKED_IF_Q2)
    q6: bool
    q6_recent: bool | None = _follow_up("Asked only when q6 is yes; omitted or null otherwise.")

    @field_validator(*QUESTIONS, mode="wrap")
    @classmethod
    def _skip_logic(cls, value: object, handler: ValidatorFunctionWrapHandler,
                    info: ValidationInfo) -> bool | None:
        try:
            answer: bool | None = handler(value)
            valid = True
        except ValidationError:
            answer, valid = None, False
        rule = SKIP_LOGIC.get(info.field_name or "")
        if rule is None or info.data.get(rule.asked_if) is True:
            if answer is None:
                raise refused(_YES_OR_NO)
            return answer
        if valid and (answer is None or (answer is False and rule.no_tolerated)):
            return None
        allowed = "omitted, null or false" if rule.no_tolerated else "omitted or null"
        raise refused(f"must be {allowed}: it is asked only when {rule.asked_if} is yes")


class CssrsResponse(ClosedAnswers):
    # Null answers are no answers at all.
    answers: Annotated[CssrsAnswers, BeforeValidator(_null_is_missing)]


class CssrsAnswersSoFar(ClosedAnswers):
    """A draft's answers: null for a question not answered yet."""

    q1: bool | None = None
    q2: bool | None = None
    q3: bool | None = None
    q4: bool | None = None
    q5: bool | None = None
    q6: bool | None = None
    q6_recent: bool | None = None


class CssrsSoFar(ClosedAnswers):
    answers: CssrsAnswersSoFar

    def least(self) -> CssrsResponse | None:
        """The least the finished screener can show: "no" for each question not reached
        that the answers so far ask. None when the answers go against the skip logic."""
        given = self.answers.model_dump()
        for key in ("q1", "q2", "q6"):
            given[key] = bool(given[key])
        for key, rule in SKIP_LOGIC.items():
            if given[rule.asked_if] and given[key] is None:
                given[key] = False
        try:
            return CssrsResponse.model_validate({"answers": given})
        except ValidationError:
            return None


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

    def to_json(self) -> dict[str, JsonValue]:
        return {"risk": self.risk}


def parse(raw: object, *, field: str = "responses.cssrs") -> CssrsAnswers:
    try:
        return CssrsResponse.model_validate(raw).answers
    except ValidationError as exc:
        raise refusal(exc, field) from None


def scored(answers: CssrsAnswers) -> CssrsScore:
    return CssrsScore(answers=answers, risk=risk(answers))


def score(raw: object, *, field: str = "responses.cssrs") -> CssrsScore:
    return scored(parse(raw, field=field))
