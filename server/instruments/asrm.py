"""Altman Self-Rating Mania Scale: 5 items scored 0-4, total 0-20 (Altman et al. 1997).

What is computed, exactly (see docs/clinical.md):
- total = sum of the 5 items;
- positive (probable mania or hypomania) at total >= 6.

The cut-off is a parameter because triage takes it from the reviewed rules file
(``escalation/triage_rules.toml``); the default below is the published one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import Field, JsonValue, ValidationError

from server.instruments.base import (
    ClosedAnswers,
    Instrument,
    Item,
    OnePerItem,
    Scale,
    refusal,
    scale,
)

ITEM_COUNT: Final = 5
ITEM_MAX: Final = 4
TOTAL_MAX: Final = ITEM_COUNT * ITEM_MAX
PUBLISHED_POSITIVE_AT: Final = 6

# Each item is a ladder of five statements; the patient picks the one that fits.
_ITEMS: Final = (
    (
        "mood",
        "Feeling happier or more cheerful than usual",
        (
            "I do not feel happier or more cheerful than usual.",
            "I sometimes feel happier or more cheerful than usual.",
            "I often feel happier or more cheerful than usual.",
            "I feel happier or more cheerful than usual most of the time.",
            "I feel happier or more cheerful than usual all of the time.",
        ),
    ),
    (
        "self_confidence",
        "Feeling more self-confident than usual",
        (
            "I do not feel more self-confident than usual.",
            "I sometimes feel more self-confident than usual.",
            "I often feel more self-confident than usual.",
            "I feel more self-confident than usual most of the time.",
            "I feel extremely self-confident all of the time.",
        ),
    ),
    (
        "sleep",
        "Needing less sleep than usual",
        (
            "I do not need less sleep than usual.",
            "I sometimes need less sleep than usual.",
            "I often need less sleep than usual.",
            "I need less sleep than usual most of the time.",
            "I can go all day and all night without any sleep and still not feel tired.",
        ),
    ),
    (
        "speech",
        "Talking more than usual",
        (
            "I do not talk more than usual.",
            "I sometimes talk more than usual.",
            "I often talk more than usual.",
            "I talk more than usual most of the time.",
            "I talk constantly and cannot be interrupted.",
        ),
    ),
    (
        "activity",
        "Being more active than usual (socially, sexually, at work, at home or at school)",
        (
            "I have not been more active than usual.",
            "I have sometimes been more active than usual.",
            "I have often been more active than usual.",
            "I have been more active than usual most of the time.",
            "I am constantly more active, or on the go, all of the time.",
        ),
    ),
)

DEFINITION: Final = Instrument(
    id="asrm",
    name="Altman Self-Rating Mania Scale",
    recall="past week",
    intro=(
        "For each group below, choose the one statement that best describes how you "
        "have been over the past week. 'Usual' means how you are when you feel like "
        "yourself."
    ),
    answer_type="integer",
    total_range=(0, TOTAL_MAX),
    items=tuple(
        Item(
            id=f"q{number}",
            answer_path=f"answers.{number - 1}",
            topic=topic,
            text=text,
            options=scale(*statements),
        )
        for number, (topic, text, statements) in enumerate(_ITEMS, start=1)
    ),
)


@dataclass(frozen=True)
class AsrmScore:
    answers: tuple[int, ...]
    total: int
    positive: bool

    def to_json(self) -> dict[str, JsonValue]:
        return {"total": self.total, "positive": self.positive}


def from_answers(answers: tuple[int, ...], positive_at: int = PUBLISHED_POSITIVE_AT) -> AsrmScore:
    """Score answers that have already been validated."""
    total = sum(answers)
    return AsrmScore(answers=answers, total=total, positive=total >= positive_at)


Answer = Annotated[int, Scale(ITEM_MAX)]


class AsrmResponse(ClosedAnswers):
    answers: Annotated[list[Answer], OnePerItem(ITEM_COUNT)] = Field(
        description=f"{ITEM_COUNT} answers, one per item in order, each 0 to {ITEM_MAX}.")


class AsrmSoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Answer | None], OnePerItem(ITEM_COUNT)]

    def least(self) -> AsrmResponse:
        """The least the finished questionnaire can score: 0 for each item not reached."""
        return AsrmResponse(answers=[answer or 0 for answer in self.answers])


def scored(response: AsrmResponse, positive_at: int = PUBLISHED_POSITIVE_AT) -> AsrmScore:
    return from_answers(tuple(response.answers), positive_at)


def score(
    raw: object, *, positive_at: int = PUBLISHED_POSITIVE_AT, field: str = "responses.asrm"
) -> AsrmScore:
    try:
        return scored(AsrmResponse.model_validate(raw), positive_at)
    except ValidationError as exc:
        raise refusal(exc, field) from None
