"""AUDIT-C alcohol use: 3 items scored 0-4, total 0-12 (Bush et al. 1998).

What is computed, exactly (see docs/clinical.md):
- total = sum of the 3 items;
- positive at total >= 4 for men and >= 3 for women (Bradley et al. 2007). When sex is
  not given we use >= 3, the more sensitive cut-off, so a missing answer never hides a
  positive screen.
- skip logic: when question 1 is 0 ("Never"), questions 2 and 3 are not asked and come as
  ``null``, scored 0 (CLINICAL.md). Answers given to them anyway are scored as given.

The cut-offs are parameters because triage takes them from the reviewed rules file
(``escalation/triage_rules.toml``); the defaults below are the published ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

from pydantic import Field, JsonValue, ValidationError, model_validator

from server.instruments.base import (
    ClosedAnswers,
    Instrument,
    Item,
    OnePerItem,
    Scale,
    refusal,
    scale,
)

Sex = Literal["female", "male"]

SEXES: Final[tuple[Sex, ...]] = get_args(Sex)

ITEM_COUNT: Final = 3
ITEM_MAX: Final = 4
TOTAL_MAX: Final = ITEM_COUNT * ITEM_MAX
# Question 1's "Never": questions 2 and 3 are then not asked.
NEVER: Final = 0


@dataclass(frozen=True)
class Cutoffs:
    """Lowest total that screens positive, by the sex given at check-in."""

    male: int = 4
    female: int = 3
    unknown: int = 3

    def positive_at(self, sex: Sex | None) -> int:
        if sex == "male":
            return self.male
        if sex == "female":
            return self.female
        return self.unknown


PUBLISHED_CUTOFFS: Final = Cutoffs()

DEFINITION: Final = Instrument(
    id="auditc",
    name="AUDIT-C alcohol",
    recall="past year",
    intro=(
        "These questions are about drinking alcohol over the past year. Your honest "
        "answers help your care team choose medicines that are safe for you."
    ),
    answer_type="integer",
    total_range=(0, TOTAL_MAX),
    items=(
        Item(
            id="q1",
            answer_path="answers.0",
            topic="frequency",
            text="How often do you have a drink containing alcohol?",
            options=scale(
                "Never",
                "Monthly or less",
                "2 to 4 times a month",
                "2 to 3 times a week",
                "4 or more times a week",
            ),
        ),
        Item(
            id="q2",
            answer_path="answers.1",
            topic="typical_quantity",
            text="How many standard drinks do you have on a typical day when you are drinking?",
            options=scale("1 or 2", "3 or 4", "5 or 6", "7 to 9", "10 or more"),
            asked_unless=("0", NEVER),
        ),
        Item(
            id="q3",
            answer_path="answers.2",
            topic="heavy_episodes",
            text="How often do you have 6 or more drinks on one occasion?",
            options=scale(
                "Never", "Less than monthly", "Monthly", "Weekly", "Daily or almost daily"
            ),
            asked_unless=("0", NEVER),
        ),
    ),
)


@dataclass(frozen=True)
class AuditcScore:
    answers: tuple[int, ...]
    sex: Sex | None
    total: int
    positive: bool

    def to_json(self) -> dict[str, JsonValue]:
        return {"total": self.total, "positive": self.positive}


def from_answers(
    answers: tuple[int, ...], sex: Sex | None, cutoffs: Cutoffs = PUBLISHED_CUTOFFS
) -> AuditcScore:
    """Score answers that have already been validated."""
    total = sum(answers)
    return AuditcScore(
        answers=answers, sex=sex, total=total, positive=total >= cutoffs.positive_at(sex)
    )


Answer = Annotated[int, Scale(ITEM_MAX)]


class AuditcResponse(ClosedAnswers):
    answers: Annotated[list[Answer], OnePerItem(ITEM_COUNT)] = Field(
        description=(f"{ITEM_COUNT} answers, one per item in order, each 0 to {ITEM_MAX}. "
                     f"When question 1 is {NEVER} (Never), questions 2 and 3 are not asked "
                     "and may be null (scored 0)."),
        # What the body may hold, nulls included; the validator says where.
        json_schema_extra={"items": {"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": ITEM_MAX}, {"type": "null"}]}})

    @model_validator(mode="before")
    @classmethod
    def _not_asked_scores_zero(cls, value: object) -> object:
        # After "Never" to question 1, questions 2 and 3 were not asked: null, scored 0.
        # Anywhere else a null is a missing answer, refused as before.
        if isinstance(value, dict) and isinstance(answers := value.get("answers"), list) \
                and len(answers) == ITEM_COUNT and type(answers[0]) is int \
                and answers[0] == NEVER:
            return {**value, "answers": [NEVER, *(0 if a is None else a for a in answers[1:])]}
        return value


class AuditcSoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Answer | None], OnePerItem(ITEM_COUNT)]

    def least(self) -> AuditcResponse:
        """The least the finished questionnaire can score: 0 for each item not reached."""
        return AuditcResponse(answers=[answer or 0 for answer in self.answers])


def scored(
    response: AuditcResponse, sex: Sex | None, cutoffs: Cutoffs = PUBLISHED_CUTOFFS
) -> AuditcScore:
    return from_answers(tuple(response.answers), sex, cutoffs)


def score(
    raw: object,
    *,
    sex: Sex | None,
    cutoffs: Cutoffs = PUBLISHED_CUTOFFS,
    field: str = "responses.auditc",
) -> AuditcScore:
    try:
        return scored(AuditcResponse.model_validate(raw), sex, cutoffs)
    except ValidationError as exc:
        raise refusal(exc, field) from None
