"""What every instrument is made of, and the models its JSON answers are read with.

An instrument module (``phq9.py`` and its siblings) holds one ``Instrument`` definition
for ``GET /api/v1/instruments``, the pydantic model of its answers and its scoring. The
models here refuse an answer in the words the API has always used, after the field as a
dotted path with 0-based list indexes: ``responses.phq9.answers.3 must be an integer
from 0 to 3`` (``refusal``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from annotated_types import Ge, GroupedMetadata, Le, MaxLen, MinLen
from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from server.errors import ValidationFailed

AnswerType = Literal["integer", "boolean"]
# Every instrument a check-in may contain, in the order the form asks them.
InstrumentId = Literal["phq9", "gad7", "cssrs", "auditc", "asrm", "fibser", "bam"]


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
    is shown only when the named question was answered with the given value;
    ``asked_unless`` is AUDIT-C's: shown once the named question is answered with
    anything but the given value.
    """

    id: str
    answer_path: str
    topic: str
    text: str
    options: tuple[Option, ...]
    required: bool = True
    asked_if: tuple[str, bool] | None = None
    asked_unless: tuple[str, int] | None = None
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
            "asked_unless": None if self.asked_unless is None
            else {self.asked_unless[0]: self.asked_unless[1]},
            "loinc": self.loinc,
        }


@dataclass(frozen=True)
class Instrument:
    id: InstrumentId
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


# --- answers --------------------------------------------------------------------------

# The type of every refusal worded here; its message follows the field's name.
REFUSED = "answer"


def refused(words: str) -> PydanticCustomError:
    """An answer refused, in the words that follow its field: ``refused("is required")``."""
    return PydanticCustomError(REFUSED, words)


@dataclass(frozen=True)
class Scale(GroupedMetadata):
    """An answer scored 0 to ``high``. Strict: JSON true/false decode to bool, which
    Python treats as an int, and 2.0 is a float; neither is a valid answer."""

    high: int

    def __iter__(self) -> Iterator[object]:
        yield Strict()
        yield Ge(0)
        yield Le(self.high)
        yield WrapValidator(self._worded)

    def _worded(self, value: object, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise refused(f"must be an integer from 0 to {self.high}") from None


@dataclass(frozen=True)
class OnePerItem(GroupedMetadata):
    """The ``answers`` list of an instrument whose items are all scored: one per item."""

    count: int

    def __iter__(self) -> Iterator[object]:
        yield MinLen(self.count)
        yield MaxLen(self.count)
        yield WrapValidator(self._worded)

    def _worded(self, value: object, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            # The list before its items: an answer at the wrong place means nothing.
            if value is None:
                raise refused("is required") from None
            if not isinstance(value, list):
                raise refused(f"must be a list of {self.count} integers") from None
            if len(value) != self.count:
                raise refused(f"must have exactly {self.count} answers, one per item") \
                    from None
            raise


class ClosedAnswers(BaseModel):
    """A closed object of answers. Unknown keys are refused rather than ignored (a
    misspelt optional key such as ``dificulty`` would otherwise be dropped without
    anyone noticing), and named before anything else is wrong in the object."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # How a refusal of this object says what is wrong (after the field's name).
    MISSING: ClassVar[str] = "is required"
    UNKNOWN_KEY: ClassVar[str] = "is not a known field"
    NOT_OBJECT: ClassVar[str] = "must be an object"

    @model_validator(mode="wrap")
    @classmethod
    def _in_our_words(cls, value: object, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(value)
        except ValidationError as exc:
            errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
            raise ValidationError.from_exception_data(
                exc.title, [cls._worded(error) for error in errors]) from None

    @classmethod
    def _worded(cls, error: ErrorDetails) -> InitErrorDetails:
        words = {"missing": cls.MISSING, "extra_forbidden": cls.UNKNOWN_KEY,
                 "model_type": cls.NOT_OBJECT, REFUSED: error["msg"]}.get(error["type"])
        worded: InitErrorDetails = {
            "type": error["type"] if words is None else refused(words),
            "loc": error["loc"], "input": error["input"]}
        if words is None and "ctx" in error:
            worded["ctx"] = error["ctx"]
        return worded


def refusal(exc: ValidationError, prefix: str | None = None) -> ValidationFailed:
    """The first refusal of ``exc`` as the API's 422, its field under ``prefix``."""
    return refusal_of(exc.errors()[0], prefix)


def refusal_of(error: ErrorDetails, prefix: str | None = None) -> ValidationFailed:
    """One error as the API's 422: the field, then the words of the answer's model."""
    field = ".".join(str(part) for part in ((prefix,) if prefix else ()) + error["loc"])
    if error["type"] == REFUSED:
        return ValidationFailed(f"{field} {error['msg']}", field=field)
    if error["type"] == "missing":
        return ValidationFailed(f"{field} is required", field=field)
    return ValidationFailed(f"{field}: {error['msg']}", field=field)
