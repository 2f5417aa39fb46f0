"""What every instrument is made of, and the checks its raw JSON answers go through.

An instrument module (``phq9.py`` and its siblings) holds one ``Instrument`` definition
for ``GET /api/v1/instruments`` plus its own scoring. The helpers here only check the
shape of untrusted JSON and raise ``ValidationFailed`` naming the offending field as a
dotted path with 0-based list indexes, e.g. ``responses.phq9.answers.3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard

from server.errors import ValidationFailed

AnswerType = Literal["integer", "boolean"]


@dataclass(frozen=True)
class Option:
    value: int | bool
    label: str

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "label": self.label}


@dataclass(frozen=True)
class Item:
    """One question as the patient sees it.

    ``answer_path`` says where its answer goes inside the instrument's response object
    (``answers.0`` for a list item, ``answers.q3`` for a C-SSRS question, ``difficulty``
    for the PHQ-9 difficulty question). ``asked_if`` is C-SSRS skip logic: the question
    is shown only when the named question was answered with the given value.
    """

    id: str
    answer_path: str
    topic: str
    text: str
    options: tuple[Option, ...]
    required: bool = True
    asked_if: tuple[str, bool] | None = None
    loinc: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "answer_path": self.answer_path,
            "topic": self.topic,
            "text": self.text,
            "options": [option.to_json() for option in self.options],
            "required": self.required,
            "asked_if": None if self.asked_if is None else {self.asked_if[0]: self.asked_if[1]},
            "loinc": self.loinc,
        }


@dataclass(frozen=True)
class Instrument:
    id: str
    name: str
    recall: str
    intro: str
    answer_type: AnswerType
    items: tuple[Item, ...]
    total_range: tuple[int, int] | None = None
    loinc_panel: str | None = None
    loinc_total: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "recall": self.recall,
            "intro": self.intro,
            "answer_type": self.answer_type,
            "total_range": None if self.total_range is None else list(self.total_range),
            "loinc": {"panel": self.loinc_panel, "total": self.loinc_total},
            "items": [item.to_json() for item in self.items],
        }


def scale(*labels: str) -> tuple[Option, ...]:
    """Options valued 0, 1, 2 ... in the order given."""
    return tuple(Option(value, label) for value, label in enumerate(labels))


YES_NO = (Option(True, "Yes"), Option(False, "No"))
# PHQ-9 and GAD-7 share these answer labels (CLINICAL.md).
FREQUENCY = scale("Not at all", "Several days", "More than half the days", "Nearly every day")


def response_object(raw: object, field: str, allowed: frozenset[str]) -> Mapping[str, object]:
    """The instrument's response object, e.g. ``{"answers": [...]}``.

    Unknown keys are rejected rather than ignored: a misspelt optional key such as
    ``dificulty`` would otherwise be dropped without anyone noticing.
    """
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{field} must be an object", field=field)
    for key in raw:
        if key not in allowed:
            raise ValidationFailed(f"{field}.{key} is not a known field", field=f"{field}.{key}")
    return raw


def is_int(value: object) -> TypeGuard[int]:
    # JSON true/false decode to bool, which Python treats as an int subclass; 2.0 is a
    # float. Neither is a valid answer, so only a true int passes.
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, field: str, high: int) -> int:
    if is_int(value) and 0 <= value <= high:
        return value
    raise ValidationFailed(f"{field} must be an integer from 0 to {high}", field=field)


def int_answers(
    response: Mapping[str, object], field: str, count: int, high: int
) -> tuple[int, ...]:
    """The ``answers`` list of an instrument whose items are all scored 0..high."""
    path = f"{field}.answers"
    answers = response.get("answers")
    if answers is None:
        raise ValidationFailed(f"{path} is required", field=path)
    if not isinstance(answers, list):
        raise ValidationFailed(f"{path} must be a list of {count} integers", field=path)
    if len(answers) != count:
        raise ValidationFailed(
            f"{path} must have exactly {count} answers, one per item", field=path
        )
    return tuple(check_int(value, f"{path}.{index}", high) for index, value in enumerate(answers))
