"""FIBSER, the Frequency, Intensity and Burden of Side Effects Rating: 3 items, each
0-6, past week (Wisniewski et al. 2006, J Psychiatr Pract 12(2):71-79).

What is computed, exactly (see docs/clinical.md; CLINICAL.md, "Measurement-based care"):
- each of frequency, intensity and burden is reported on its own; they are not summed
  (the scale has no total);
- the decision follows the burden item: 0-2 continue the medication, 3-4 address the
  side effects, 5-6 lower the dose or change the drug.

Asked at check-in only of a patient who takes a psychotropic (``server.psychotropics``),
about the medicines they take for their mental health as a whole. No LOINC code exists
for it; exports use the local code ``fibser``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import Field, JsonValue, ValidationError

from server.instruments.base import (
    ClosedAnswers,
    Instrument,
    Item,
    OnePerItem,
    Option,
    Scale,
    refusal,
)

ITEM_COUNT: Final = 3
ITEM_MAX: Final = 6
# The burden item is the third (answers.2).
BURDEN: Final = 2

Decision = Literal["continue", "address_side_effects", "lower_dose_or_change"]
# The lowest burden of each decision after "continue" (CLINICAL.md: 3-4, 5-6).
ADDRESS_AT: Final = 3
CHANGE_AT: Final = 5


def _anchored(*anchors: str) -> tuple[Option, ...]:
    """0-6 with the published anchors on 0, 2, 4 and 6; the odd points lie between."""
    labels = []
    for value in range(ITEM_MAX + 1):
        if value % 2 == 0:
            labels.append(Option(value, anchors[value // 2]))
        else:
            below, above = anchors[value // 2], anchors[value // 2 + 1]
            labels.append(Option(value, f"Between “{below}” and “{above}”"))
    return tuple(labels)


DEFINITION: Final = Instrument(
    id="fibser",
    name="FIBSER side effects",
    recall="past week",
    intro=(
        "These questions are about side effects of the medicines you take for your mental "
        "health, over the past week. Your answers help your prescriber decide whether to "
        "keep, adjust or change them."
    ),
    answer_type="integer",
    items=(
        Item(
            id="frequency",
            answer_path="answers.0",
            topic="frequency",
            text="How often did you have side effects from your medicine in the past week?",
            options=_anchored("No side effects", "Present 10% of the time",
                              "Present 50% of the time", "Present all the time"),
        ),
        Item(
            id="intensity",
            answer_path="answers.1",
            topic="intensity",
            text="How bad were the side effects at their worst in the past week?",
            options=_anchored("No side effects", "Trivial", "Moderate", "Intolerable"),
        ),
        Item(
            id="burden",
            answer_path=f"answers.{BURDEN}",
            topic="burden",
            text=("How much did the side effects get in the way of your day-to-day "
                  "activities in the past week?"),
            options=_anchored("No impairment", "Minimal impairment", "Moderate impairment",
                              "Unable to function"),
        ),
    ),
)


def decision_for(burden: int) -> Decision:
    """The decision the burden calls for (CLINICAL.md; Wisniewski 2006)."""
    if not 0 <= burden <= ITEM_MAX:
        raise ValueError(f"burden must be from 0 to {ITEM_MAX}, not {burden}")
    if burden >= CHANGE_AT:
        return "lower_dose_or_change"
    if burden >= ADDRESS_AT:
        return "address_side_effects"
    return "continue"


@dataclass(frozen=True)
class FibserScore:
    frequency: int
    intensity: int
    burden: int
    decision: Decision

    def to_json(self) -> dict[str, JsonValue]:
        return {"frequency": self.frequency, "intensity": self.intensity,
                "burden": self.burden, "decision": self.decision}


def from_answers(answers: tuple[int, ...]) -> FibserScore:
    """Score answers that have already been validated."""
    frequency, intensity, burden = answers
    return FibserScore(frequency=frequency, intensity=intensity, burden=burden,
                       decision=decision_for(burden))


Answer = Annotated[int, Scale(ITEM_MAX)]


class FibserResponse(ClosedAnswers):
    answers: Annotated[list[Answer], OnePerItem(ITEM_COUNT)] = Field(
        description=f"{ITEM_COUNT} answers (frequency, intensity, burden), each 0 to "
                    f"{ITEM_MAX}.")


class FibserSoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Answer | None], OnePerItem(ITEM_COUNT)]

    def least(self) -> FibserResponse:
        return FibserResponse(answers=[answer or 0 for answer in self.answers])


def scored(response: FibserResponse) -> FibserScore:
    return from_answers(tuple(response.answers))


def score(raw: object, *, field: str = "responses.fibser") -> FibserScore:
    try:
        return scored(FibserResponse.model_validate(raw))
    except ValidationError as exc:
        raise refusal(exc, field) from None
