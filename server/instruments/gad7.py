"""GAD-7 anxiety: 7 items scored 0-3, total 0-21 (Spitzer, Kroenke, Williams & Löwe 2006).

What is computed, exactly (see docs/clinical.md):
- total = sum of the 7 items;
- severity by total: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe;
- GAD-2 = items 1 + 2 (0-6), positive at >= 3; reported only, it triggers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import Field, JsonValue, ValidationError

from server.instruments.base import (
    FREQUENCY,
    ClosedAnswers,
    Instrument,
    Item,
    OnePerItem,
    Scale,
    refusal,
)

Severity = Literal["minimal", "mild", "moderate", "severe"]

SEVERITIES: Final[tuple[Severity, ...]] = ("minimal", "mild", "moderate", "severe")
# Lowest total of each band, highest band first (Spitzer 2006).
SEVERITY_FROM: Final[tuple[tuple[int, Severity], ...]] = (
    (15, "severe"),
    (10, "moderate"),
    (5, "mild"),
    (0, "minimal"),
)
ITEM_COUNT: Final = 7
ITEM_MAX: Final = 3
TOTAL_MAX: Final = ITEM_COUNT * ITEM_MAX
GAD2_POSITIVE_AT: Final = 3  # Kroenke et al. 2007

_ITEMS: Final = (
    ("nervous", "Feeling nervous, anxious, or on edge"),
    ("uncontrolled_worry", "Not being able to stop or control worrying"),
    ("excessive_worry", "Worrying too much about different things"),
    ("trouble_relaxing", "Trouble relaxing"),
    ("restless", "Being so restless that it is hard to sit still"),
    ("irritable", "Becoming easily annoyed or irritable"),
    ("afraid", "Feeling afraid, as if something awful might happen"),
)

DEFINITION: Final = Instrument(
    id="gad7",
    name="GAD-7 anxiety",
    recall="last 2 weeks",
    intro=(
        "Over the last 2 weeks, how often have you been bothered by the following? "
        "Pick the answer that fits best."
    ),
    answer_type="integer",
    total_range=(0, TOTAL_MAX),
    loinc_panel="69737-5",
    loinc_total="70274-6",
    items=tuple(
        Item(
            id=f"q{number}",
            answer_path=f"answers.{number - 1}",
            topic=topic,
            text=text,
            options=FREQUENCY,
        )
        for number, (topic, text) in enumerate(_ITEMS, start=1)
    ),
)


def severity(total: int) -> Severity:
    if not 0 <= total <= TOTAL_MAX:
        raise ValueError(f"GAD-7 total must be from 0 to {TOTAL_MAX}, got {total}")
    return next(band for lowest, band in SEVERITY_FROM if total >= lowest)


@dataclass(frozen=True)
class Gad7Score:
    answers: tuple[int, ...]
    total: int
    severity: Severity
    gad2: int
    gad2_positive: bool

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "total": self.total,
            "severity": self.severity,
            "gad2": self.gad2,
            "gad2_positive": self.gad2_positive,
        }


def from_answers(answers: tuple[int, ...]) -> Gad7Score:
    """Score answers that have already been validated."""
    total = sum(answers)
    gad2 = answers[0] + answers[1]
    return Gad7Score(
        answers=answers,
        total=total,
        severity=severity(total),
        gad2=gad2,
        gad2_positive=gad2 >= GAD2_POSITIVE_AT,
    )


Frequency = Annotated[int, Scale(ITEM_MAX)]


class Gad7Response(ClosedAnswers):
    answers: Annotated[list[Frequency], OnePerItem(ITEM_COUNT)] = Field(
        description=f"{ITEM_COUNT} answers, one per item in order, each 0 to {ITEM_MAX}.")


class Gad7SoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Frequency | None], OnePerItem(ITEM_COUNT)]

    def least(self) -> Gad7Response:
        """The least the finished questionnaire can score: 0 for each item not reached."""
        return Gad7Response(answers=[answer or 0 for answer in self.answers])


def scored(response: Gad7Response) -> Gad7Score:
    return from_answers(tuple(response.answers))


def score(raw: object, *, field: str = "responses.gad7") -> Gad7Score:
    try:
        return scored(Gad7Response.model_validate(raw))
    except ValidationError as exc:
        raise refusal(exc, field) from None
