"""Altman Self-Rating Mania Scale: 5 items scored 0-4, total 0-20 (Altman et al. 1997).

What is computed, exactly (see docs/clinical.md):
- total = sum of the 5 items;
- positive (probable mania or hypomania) at total >= 6.

The cut-off is a parameter because triage takes it from the reviewed rules file
(``escalation/triage_rules.toml``); the default below is the published one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from server.instruments.base import Instrument, Item, int_answers, response_object, scale

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

    def to_json(self) -> dict[str, object]:
        return {"total": self.total, "positive": self.positive}


def from_answers(answers: tuple[int, ...], positive_at: int = PUBLISHED_POSITIVE_AT) -> AsrmScore:
    """Score answers that have already been validated."""
    total = sum(answers)
    return AsrmScore(answers=answers, total=total, positive=total >= positive_at)


def score(
    raw: object, *, positive_at: int = PUBLISHED_POSITIVE_AT, field: str = "responses.asrm"
) -> AsrmScore:
    response = response_object(raw, field, frozenset({"answers"}))
    return from_answers(int_answers(response, field, ITEM_COUNT, ITEM_MAX), positive_at)
