"""Triage: from a check-in's answers to an escalation level, its reasons and what to ask next.

Stateless and pure: ``evaluate`` reads the raw JSON body of ``POST /api/v1/triage`` with
its model (``TriageBody``), scores every instrument given and applies the rules;
``triage`` does the same for answers already read (the scored part of a check-in). The
rules are data (``TriageRules``); the reviewed defaults live in
``escalation/triage_rules.toml``, which this module never imports (layering: ``server``
imports nothing from ``escalation``), so callers pass the rules in.

A check-in's level is the highest level among its reasons, and every triggered reason is
reported, not only the highest (CLINICAL.md, "Triage").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic.config import JsonDict
from pydantic_core import ErrorDetails

from server.errors import ValidationFailed
from server.instruments import (
    INSTRUMENTS,
    InstrumentId,
    asrm,
    auditc,
    bam,
    cssrs,
    fibser,
    gad7,
    phq9,
)
from server.instruments.asrm import AsrmResponse, AsrmScore
from server.instruments.auditc import AuditcResponse, AuditcScore, Sex
from server.instruments.bam import BamResponse, BamScore
from server.instruments.base import ClosedAnswers, refusal_of, refused
from server.instruments.cssrs import CssrsResponse, CssrsScore
from server.instruments.fibser import FibserResponse, FibserScore
from server.instruments.gad7 import Gad7Response, Gad7Score
from server.instruments.phq9 import Phq9Response, Phq9Score


class Level(StrEnum):
    NONE = "none"
    REVIEW = "review"
    STEP_UP = "step_up"
    URGENT = "urgent"
    EMERGENCY = "emergency"


# Lowest to highest; a level's position is its rank.
LEVELS: Final[tuple[Level, ...]] = tuple(Level)


class Reason(StrEnum):
    """Reason codes, in the order of CLINICAL.md's table (the tie-break between reasons
    of the same level)."""

    CSSRS_HIGH = "cssrs_high"
    CSSRS_MODERATE = "cssrs_moderate"
    PHQ9_ITEM9_UNASSESSED = "phq9_item9_unassessed"
    CSSRS_LOW = "cssrs_low"
    PHQ9_ITEM9_POSITIVE = "phq9_item9_positive"
    PHQ9_SEVERE = "phq9_severe"
    ASRM_POSITIVE = "asrm_positive"
    GAD7_SEVERE = "gad7_severe"
    AUDITC_POSITIVE = "auditc_positive"
    PHQ9_WORSENED = "phq9_worsened"


_REASON_ORDER: Final = {reason: index for index, reason in enumerate(Reason)}


def _level(value: object) -> Level:
    if isinstance(value, str):
        try:
            return Level(value)
        except ValueError:
            pass
    raise ValueError(f"unknown level {value!r}; expected one of {', '.join(LEVELS)}")


def level_rank(level: str) -> int:
    return LEVELS.index(_level(level))


def level_at_least(level: str, minimum: str) -> bool:
    """Whether ``level`` is ``minimum`` or higher, e.g. ``level_at_least(x, "review")``."""
    return level_rank(level) >= level_rank(minimum)


# A threshold outside these bounds would make its reason fire on every answer (0) or
# never fire at all (above the instrument's maximum): both silently change care, so
# such rules are rejected instead.
_THRESHOLD_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "phq9_item9": (1, phq9.ITEM_MAX),
    "phq9_severe_total": (1, phq9.TOTAL_MAX),
    "phq9_worsened_rise": (1, phq9.TOTAL_MAX),
    "gad7_severe_total": (1, gad7.TOTAL_MAX),
    "asrm_positive_total": (1, asrm.TOTAL_MAX),
    "auditc_positive_male": (1, auditc.TOTAL_MAX),
    "auditc_positive_female": (1, auditc.TOTAL_MAX),
    "auditc_positive_sex_unknown": (1, auditc.TOTAL_MAX),
}


def _threshold(name: str, value: object) -> int:
    low, high = _THRESHOLD_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"threshold {name!r} must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class Thresholds:
    """Every number a reason depends on; each is the lowest value that triggers it."""

    phq9_item9: int
    phq9_severe_total: int
    phq9_worsened_rise: int
    gad7_severe_total: int
    asrm_positive_total: int
    auditc_positive_male: int
    auditc_positive_female: int
    auditc_positive_sex_unknown: int

    def __post_init__(self) -> None:
        for name in _THRESHOLD_BOUNDS:
            _threshold(name, getattr(self, name))

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Thresholds:
        _check_keys("threshold", data, list(_THRESHOLD_BOUNDS))
        return cls(**{name: _threshold(name, data[name]) for name in _THRESHOLD_BOUNDS})

    def auditc_cutoffs(self) -> auditc.Cutoffs:
        return auditc.Cutoffs(
            male=self.auditc_positive_male,
            female=self.auditc_positive_female,
            unknown=self.auditc_positive_sex_unknown,
        )


def _check_keys(table: str, given: Mapping[str, object], expected: list[str]) -> None:
    unknown = [key for key in given if key not in expected]
    if unknown:
        raise ValueError(f"unknown {table} {unknown[0]!r}; expected {', '.join(expected)}")
    missing = [key for key in expected if key not in given]
    if missing:
        raise ValueError(f"missing {table} {missing[0]!r}")


def _table(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"triage rules need a [{key}] table")
    return value


def _reason_levels(data: Mapping[str, object]) -> dict[Reason, Level]:
    _check_keys("reason", data, [reason.value for reason in Reason])
    levels: dict[Reason, Level] = {}
    for reason in Reason:
        try:
            level = _level(data[reason.value])
        except ValueError as error:
            raise ValueError(f"reason {reason.value!r}: {error}") from None
        if level is Level.NONE:
            # A reason at "none" would be reported but reach nobody; turning a rule off
            # must be a visible change to this module, not a quiet edit of the data.
            raise ValueError(f"reason {reason.value!r} cannot be at level 'none'")
        levels[reason] = level
    return levels


@dataclass(frozen=True)
class TriageRules:
    thresholds: Thresholds
    reason_levels: Mapping[Reason, Level]
    levels: tuple[Level, ...] = LEVELS

    def __post_init__(self) -> None:
        if tuple(self.levels) != LEVELS:
            raise ValueError(f"levels must be, lowest to highest: {', '.join(LEVELS)}")
        checked = _reason_levels({str(key): value for key, value in self.reason_levels.items()})
        # Read-only, so rules shared across requests cannot be edited by one of them.
        object.__setattr__(self, "reason_levels", MappingProxyType(checked))
        object.__setattr__(self, "levels", LEVELS)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> TriageRules:
        """Rules from their data form (the parsed TOML), or a clear ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError("triage rules must be a mapping")
        for key in data:
            if key not in ("levels", "thresholds", "reasons"):
                raise ValueError(f"unknown key {key!r} in triage rules")
        levels = data.get("levels", LEVELS)
        if not isinstance(levels, list | tuple):
            raise ValueError(f"levels must be, lowest to highest: {', '.join(LEVELS)}")
        return cls(
            thresholds=Thresholds.from_mapping(_table(data, "thresholds")),
            reason_levels=_reason_levels(_table(data, "reasons")),
            levels=tuple(levels),
        )

    def level_of(self, reason: Reason) -> Level:
        return self.reason_levels[reason]

    def level_of_code(self, code: str) -> Level:
        """The level of a stored reason code; an unknown (retired) one counts as review,
        so a reason on record never vanishes from a safety decision."""
        try:
            return self.reason_levels[Reason(code)]
        except ValueError:
            return Level.REVIEW


_Score = Phq9Score | Gad7Score | CssrsScore | AuditcScore | AsrmScore | FibserScore | BamScore


@dataclass(frozen=True)
class Scores:
    phq9: Phq9Score | None = None
    gad7: Gad7Score | None = None
    cssrs: CssrsScore | None = None
    auditc: AuditcScore | None = None
    asrm: AsrmScore | None = None
    fibser: FibserScore | None = None
    bam: BamScore | None = None

    def to_json(self) -> dict[str, dict[str, JsonValue]]:
        given: dict[InstrumentId, _Score | None] = {
            "phq9": self.phq9,
            "gad7": self.gad7,
            "cssrs": self.cssrs,
            "auditc": self.auditc,
            "asrm": self.asrm,
            "fibser": self.fibser,
            "bam": self.bam,
        }
        return {key: score.to_json() for key, score in given.items() if score is not None}


@dataclass(frozen=True)
class TriageResult:
    scores: Scores
    level: Level
    reasons: tuple[Reason, ...]
    reason_levels: Mapping[Reason, Level]
    requires: tuple[InstrumentId, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "scores": self.scores.to_json(),
            "level": self.level.value,
            "reasons": [reason.value for reason in self.reasons],
            "requires": list(self.requires),
            "reason_levels": {
                reason.value: self.reason_levels[reason].value for reason in self.reasons
            },
        }


# --- the body -------------------------------------------------------------------------


def _left_out_not_null(schema: JsonDict) -> None:
    # The JSON Schema as at run time: an instrument may be left out, but is not null.
    schema.pop("default", None)
    choices = schema.pop("anyOf", [])
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice != {"type": "null"}:
                schema.update(choice)


def _instrument() -> Any:
    return Field(default=None, json_schema_extra=_left_out_not_null)


class TriageResponses(ClosedAnswers):
    """Any subset of the instruments."""

    UNKNOWN_KEY = f"is not a known instrument (expected one of {', '.join(INSTRUMENTS)})"

    phq9: Phq9Response | None = _instrument()
    gad7: Gad7Response | None = _instrument()
    cssrs: CssrsResponse | None = _instrument()
    auditc: AuditcResponse | None = _instrument()
    asrm: AsrmResponse | None = _instrument()
    fibser: FibserResponse | None = _instrument()
    bam: BamResponse | None = _instrument()

    @field_validator(*INSTRUMENTS, mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise refused("must be an object")
        return value


def _sex_in_words(value: object, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        raise refused('must be "female", "male" or null') from None


class TriageBody(BaseModel):
    """Answers to score and triage; nothing is stored. Keys other than these are
    ignored."""

    model_config = ConfigDict(frozen=True)

    responses: TriageResponses
    sex: Annotated[Sex | None, WrapValidator(_sex_in_words)] = Field(
        default=None, description="For the AUDIT-C cut-off; null when not given.")


def _checked_first(error: ErrorDetails) -> int:
    """The order the body has always been checked in: the responses object and the names
    of its instruments, then sex, then each instrument's answers."""
    loc = error["loc"]
    if loc[0] == "responses" and (len(loc) == 1 or (len(loc) == 2 and loc[1] not in INSTRUMENTS)):
        return 0
    return 1 if loc[0] == "sex" else 2


def read_body(body: object) -> TriageBody:
    """The body of ``POST /api/v1/triage``, or ``ValidationFailed`` (HTTP 422) naming the
    offending field."""
    try:
        return TriageBody.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["loc"] == ():
            raise ValidationFailed("The request body must be a JSON object") from None
        raise refusal_of(min(errors, key=_checked_first)) from None


def score_responses(responses: TriageResponses, sex: Sex | None,
                    thresholds: Thresholds) -> Scores:
    """Score every instrument given."""
    return Scores(
        phq9=phq9.scored(responses.phq9) if responses.phq9 is not None else None,
        gad7=gad7.scored(responses.gad7) if responses.gad7 is not None else None,
        cssrs=cssrs.scored(responses.cssrs.answers) if responses.cssrs is not None else None,
        auditc=(
            auditc.scored(responses.auditc, sex, thresholds.auditc_cutoffs())
            if responses.auditc is not None
            else None
        ),
        asrm=(
            asrm.scored(responses.asrm, thresholds.asrm_positive_total)
            if responses.asrm is not None
            else None
        ),
        # Side effects and substance use are shown to the prescriber as scored; no
        # triage reason follows from them (CLINICAL.md's table lists none).
        fibser=fibser.scored(responses.fibser) if responses.fibser is not None else None,
        bam=bam.scored(responses.bam) if responses.bam is not None else None,
    )


def triggered_reasons(
    scores: Scores, thresholds: Thresholds, *, previous_phq9_total: int | None = None
) -> set[Reason]:
    """Every reason the scores trigger, whatever its level."""
    reasons: set[Reason] = set()
    if scores.cssrs is not None:
        risk_reason = {
            "high": Reason.CSSRS_HIGH,
            "moderate": Reason.CSSRS_MODERATE,
            "low": Reason.CSSRS_LOW,
        }.get(scores.cssrs.risk)
        if risk_reason is not None:
            reasons.add(risk_reason)
    if scores.phq9 is not None:
        total = scores.phq9.total
        # Item 9 >= 1 always needs the C-SSRS in the same check-in; without it the risk
        # is unknown, which is treated as urgent rather than as "probably fine".
        if scores.phq9.item9 >= thresholds.phq9_item9:
            if scores.cssrs is None:
                reasons.add(Reason.PHQ9_ITEM9_UNASSESSED)
            else:
                reasons.add(Reason.PHQ9_ITEM9_POSITIVE)
        if total >= thresholds.phq9_severe_total:
            reasons.add(Reason.PHQ9_SEVERE)
        if (
            previous_phq9_total is not None
            and total - previous_phq9_total >= thresholds.phq9_worsened_rise
        ):
            reasons.add(Reason.PHQ9_WORSENED)
    if scores.gad7 is not None and scores.gad7.total >= thresholds.gad7_severe_total:
        reasons.add(Reason.GAD7_SEVERE)
    # AUDIT-C and ASRM were scored with the rules' cut-offs, so "positive" here is the
    # same flag the patient's score shows.
    if scores.auditc is not None and scores.auditc.positive:
        reasons.add(Reason.AUDITC_POSITIVE)
    if scores.asrm is not None and scores.asrm.positive:
        reasons.add(Reason.ASRM_POSITIVE)
    return reasons


def required_next(scores: Scores, thresholds: Thresholds) -> tuple[InstrumentId, ...]:
    """Instruments the check-in form must ask next (the adaptive flow)."""
    if (
        scores.phq9 is not None
        and scores.phq9.item9 >= thresholds.phq9_item9
        and scores.cssrs is None
    ):
        return ("cssrs",)
    return ()


def evaluate(
    body: object, rules: TriageRules, *, previous_phq9_total: int | None = None
) -> TriageResult:
    """Score and triage a raw ``{"responses": {...}, "sex": ...}`` body.

    Raises ``ValidationFailed`` (HTTP 422) naming the offending field. An empty
    ``responses`` object is valid and gives level ``none``. ``previous_phq9_total`` comes
    from stored history, never from the request, and enables ``phq9_worsened``.
    """
    read = read_body(body)
    return triage(read.responses, read.sex, rules, previous_phq9_total=previous_phq9_total)


def triage(
    responses: TriageResponses,
    sex: Sex | None,
    rules: TriageRules,
    *,
    previous_phq9_total: int | None = None,
) -> TriageResult:
    """Score and triage answers already read (``TriageResponses``)."""
    if previous_phq9_total is not None and not (
        isinstance(previous_phq9_total, int)
        and not isinstance(previous_phq9_total, bool)
        and 0 <= previous_phq9_total <= phq9.TOTAL_MAX
    ):
        raise ValueError(f"previous_phq9_total must be an integer from 0 to {phq9.TOTAL_MAX}")
    scores = score_responses(responses, sex, rules.thresholds)
    triggered = triggered_reasons(scores, rules.thresholds, previous_phq9_total=previous_phq9_total)
    reasons = tuple(
        sorted(
            triggered,
            key=lambda reason: (-level_rank(rules.level_of(reason)), _REASON_ORDER[reason]),
        )
    )
    reason_levels = {reason: rules.level_of(reason) for reason in reasons}
    level = max(reason_levels.values(), key=level_rank, default=Level.NONE)
    return TriageResult(
        scores=scores,
        level=level,
        reasons=reasons,
        reason_levels=MappingProxyType(reason_levels),
        requires=required_next(scores, rules.thresholds),
    )
