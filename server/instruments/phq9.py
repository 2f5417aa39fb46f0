"""PHQ-9 depression: 9 items scored 0-3, total 0-27 (Kroenke, Spitzer & Williams 2001).

What is computed, exactly (see docs/clinical.md):
- total = sum of the 9 items; the optional difficulty question is stored, never added;
- severity by total: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately_severe,
  20-27 severe;
- PHQ-2 = items 1 + 2 (0-6), positive at >= 3; reported only, it triggers nothing;
- item 9 (thoughts of being better off dead or of self-harm) is reported on its own
  because triage acts on it whatever the total is.
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
    scale,
)

Severity = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]

# Lowest to highest, so a band's position is its rank.
SEVERITIES: Final[tuple[Severity, ...]] = (
    "minimal",
    "mild",
    "moderate",
    "moderately_severe",
    "severe",
)
# Lowest total of each band, highest band first (Kroenke 2001, table 3).
SEVERITY_FROM: Final[tuple[tuple[int, Severity], ...]] = (
    (20, "severe"),
    (15, "moderately_severe"),
    (10, "moderate"),
    (5, "mild"),
    (0, "minimal"),
)
ITEM_COUNT: Final = 9
ITEM_MAX: Final = 3
TOTAL_MAX: Final = ITEM_COUNT * ITEM_MAX
DIFFICULTY_MAX: Final = 3
PHQ2_POSITIVE_AT: Final = 3  # Kroenke, Spitzer & Williams 2003

DIFFICULTY = scale(
    "Not difficult at all", "Somewhat difficult", "Very difficult", "Extremely difficult"
)

_ITEMS: Final = (
    ("anhedonia", "Little interest or pleasure in doing things"),
    ("depressed_mood", "Feeling down, depressed, or hopeless"),
    ("sleep", "Trouble falling or staying asleep, or sleeping too much"),
    ("energy", "Feeling tired or having little energy"),
    ("appetite", "Poor appetite or overeating"),
    (
        "self_worth",
        "Feeling bad about yourself, or that you are a failure or have let yourself or "
        "your family down",
    ),
    (
        "concentration",
        "Trouble concentrating on things, such as reading or watching TV",
    ),
    (
        "psychomotor",
        "Moving or speaking so slowly that other people could have noticed, or the "
        "opposite: being so fidgety or restless that you have been moving around a lot "
        "more than usual",
    ),
    (
        "self_harm_thoughts",
        "Thoughts that you would be better off dead, or of hurting yourself in some way",
    ),
)

DEFINITION: Final = Instrument(
    id="phq9",
    name="PHQ-9 depression",
    recall="last 2 weeks",
    intro=(
        "Over the last 2 weeks, how often have you been bothered by any of the following? "
        "There are no right or wrong answers; pick what fits best."
    ),
    answer_type="integer",
    total_range=(0, TOTAL_MAX),
    loinc_panel="44249-1",
    loinc_total="44261-6",
    items=(
        *(
            Item(
                id=f"q{number}",
                answer_path=f"answers.{number - 1}",
                topic=topic,
                text=text,
                options=FREQUENCY,
                loinc="44260-8" if number == 9 else None,
            )
            for number, (topic, text) in enumerate(_ITEMS, start=1)
        ),
        Item(
            id="difficulty",
            answer_path="difficulty",
            topic="functional_difficulty",
            text=(
                "If any of these have bothered you, how difficult have they made it to do "
                "your work, take care of things at home, or get along with other people?"
            ),
            options=DIFFICULTY,
            required=False,
        ),
    ),
)


def severity(total: int) -> Severity:
    if not 0 <= total <= TOTAL_MAX:
        raise ValueError(f"PHQ-9 total must be from 0 to {TOTAL_MAX}, got {total}")
    return next(band for lowest, band in SEVERITY_FROM if total >= lowest)


@dataclass(frozen=True)
class Phq9Score:
    answers: tuple[int, ...]
    difficulty: int | None
    total: int
    severity: Severity
    item9: int
    phq2: int
    phq2_positive: bool

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "total": self.total,
            "severity": self.severity,
            "item9": self.item9,
            "phq2": self.phq2,
            "phq2_positive": self.phq2_positive,
            "difficulty": self.difficulty,
        }


def from_answers(answers: tuple[int, ...], difficulty: int | None = None) -> Phq9Score:
    """Score answers that have already been validated."""
    total = sum(answers)
    phq2 = answers[0] + answers[1]
    return Phq9Score(
        answers=answers,
        difficulty=difficulty,
        total=total,
        severity=severity(total),
        item9=answers[8],
        phq2=phq2,
        phq2_positive=phq2 >= PHQ2_POSITIVE_AT,
    )


Frequency = Annotated[int, Scale(ITEM_MAX)]
Difficulty = Annotated[int, Scale(DIFFICULTY_MAX)]


class Phq9Response(ClosedAnswers):
    answers: Annotated[list[Frequency], OnePerItem(ITEM_COUNT)] = Field(
        description=f"{ITEM_COUNT} answers, one per item in order, each 0 to {ITEM_MAX}.")
    difficulty: Difficulty | None = Field(
        default=None, description="How difficult the problems made things (0 to 3); "
                                  "stored, never added to the total.")


class Phq9SoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Frequency | None], OnePerItem(ITEM_COUNT)]
    difficulty: Difficulty | None = None

    def least(self) -> Phq9Response:
        """The least the finished questionnaire can score: 0 for each item not reached."""
        return Phq9Response(answers=[answer or 0 for answer in self.answers],
                            difficulty=self.difficulty)


def scored(response: Phq9Response) -> Phq9Score:
    return from_answers(tuple(response.answers), response.difficulty)


def score(raw: object, *, field: str = "responses.phq9") -> Phq9Score:
    try:
        return scored(Phq9Response.model_validate(raw))
    except ValidationError as exc:
        raise refusal(exc, field) from None
