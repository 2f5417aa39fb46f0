"""Lab results and lab monitoring: which labs a patient's medications need, and when.

The rules are reviewed data (``lab_rules.toml`` beside this module, CLINICAL.md
"Measurement-based care in the visit"), read and validated once per process. Staff of
the care team enter results (``add_result``); what is due or overdue is computed from
the rules, each medication's start and dose changes (``MedicationChange``) and the latest
result of each test (``due_labs``, pure; ``labs_due`` reads the record). An overdue lab
whose rule names a ``review_reason`` (the clozapine ANC, the lithium level) is a
``review`` reason of the signing gate (``gate_reasons``, called by
``server.notes.safety_gate``).

Every date here is a calendar day in the clinic's time zone: a result is dated by the
day its sample was taken, and a medication by the day the note that started it was
signed.
"""

from __future__ import annotations

import calendar
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient, require_full_session, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.errors import ValidationFailed
from server.events import emit
from server.medication_catalogue import Catalogue, catalogue
from server.medications import DOSE_CHANGES
from server.models import LabResult, Medication, MedicationChange, Role, User
from server.results import Instant, Person, Result
from server.timezones import local_date

RULES_PATH = Path(__file__).with_name("lab_rules.toml")

# The signing gate's reasons a rule may name, with their words (the panel's and the
# gate's; web/escalation_view.py takes them into its reason labels). Level `review`:
# codes unknown to triage count as review (``TriageRules.level_of_code``).
REASON_LABELS: Final[dict[str, str]] = {
    "lab_overdue_clozapine_anc": "Clozapine ANC overdue",
    "lab_overdue_lithium_level": "Lithium level overdue",
}
# Results before this day are refused as a typing error (no one enters a lab from 1926).
EARLIEST: Final = date(2000, 1, 1)

# Any day: an outer bound must fall on or after the inner one from it.
_PROBE: Final = date(2001, 1, 31)
_INTERVAL = re.compile(r"^([1-9][0-9]{0,2})([dwm])$")


@dataclass(frozen=True)
class Interval:
    """A span of days, weeks or calendar months ("5d", "4w", "3m")."""

    count: int
    unit: Literal["d", "w", "m"]

    @classmethod
    def parse(cls, text: str) -> Interval:
        found = _INTERVAL.match(text)
        if not found:
            raise ValueError(f'"{text}" is not an interval such as "5d", "4w" or "3m"')
        unit = found.group(2)
        if unit == "d":
            return cls(int(found.group(1)), "d")
        return cls(int(found.group(1)), "w" if unit == "w" else "m")

    def after(self, day: date) -> date:
        if self.unit == "d":
            return day + timedelta(days=self.count)
        if self.unit == "w":
            return day + timedelta(weeks=self.count)
        return add_months(day, self.count)


def add_months(day: date, months: int) -> date:
    """The same day of the month ``months`` later, or that month's last day (31 Jan + 1
    month is 28 or 29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Strict):
    """Due from ``due`` after a day, overdue after ``latest`` (the same for one interval)."""

    due: Interval
    latest: Interval

    @classmethod
    def of(cls, value: object) -> Window:
        if isinstance(value, str):
            one = Interval.parse(value)
            return cls(due=one, latest=one)
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str)
                                                                for v in value):
            due, latest = Interval.parse(value[0]), Interval.parse(value[1])
            if latest.after(_PROBE) < due.after(_PROBE):
                raise ValueError(f"{value}: the outer bound is before the inner one")
            return cls(due=due, latest=latest)
        raise ValueError(f"{value!r}: an interval or [inner, outer]")


class Phase(_Strict):
    every: Window
    until: Interval | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _window(cls, value: object) -> Window:
        return value if isinstance(value, Window) else Window.of(value)

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: object) -> Interval | None:
        if value is None or isinstance(value, Interval):
            return value
        if not isinstance(value, str):
            raise ValueError("until: an interval such as 12w")
        return Interval.parse(value)


class LabTest(_Strict):
    label: str = Field(min_length=1)
    kind: Literal["numeric", "text"] = "numeric"
    # unit -> [lowest, highest] a real result can take in it
    units: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _units(self) -> LabTest:
        if (self.kind == "numeric") != bool(self.units):
            raise ValueError("a numeric test lists its units; a text test has none")
        for unit, (low, high) in self.units.items():
            if not 0 < len(unit) <= 20 or low > high:
                raise ValueError(f"unit {unit!r}: a name of 1-20 characters, low <= high")
        return self


class Check(_Strict):
    label: str = Field(min_length=1)
    tests: tuple[str, ...] = Field(min_length=1)


class Rule(_Strict):
    drug: str
    check: str
    baseline: bool = False
    after_change: Window | None = None
    phases: tuple[Phase, ...] = Field(min_length=1)
    review_reason: str | None = None

    @field_validator("after_change", mode="before")
    @classmethod
    def _after(cls, value: object) -> Window | None:
        return value if value is None or isinstance(value, Window) else Window.of(value)

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.baseline and self.after_change:
            raise ValueError("a rule is due at baseline or after a change, not both")
        *ended, last = self.phases
        if last.until is not None or any(p.until is None for p in ended):
            raise ValueError("every phase but the last ends (until); the last does not")
        if self.review_reason is not None and self.review_reason not in REASON_LABELS:
            raise ValueError(f"unknown review_reason {self.review_reason!r}")
        return self


class LabRules(_Strict):
    baseline_lookback_days: int = Field(ge=0, le=365)
    due_soon_days: int = Field(ge=0, le=60)
    tests: dict[str, LabTest]
    checks: dict[str, Check]
    rules: tuple[Rule, ...] = Field(min_length=1)
    # Which drugs are in which group: the medication catalogue's ``labs``, the one list
    # of drug names (given by ``load_rules``, not read from this file).
    _catalogue: Catalogue = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _no_names(cls, data: object) -> object:
        if isinstance(data, dict) and "drugs" in data:
            raise ValueError("[drugs]: which drugs are in a group is the medication "
                             "catalogue's (server/medication_catalogue.toml, `labs`)")
        return data

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> LabRules:
        for name, check in self.checks.items():
            unknown = [t for t in check.tests if t not in self.tests]
            if unknown:
                raise ValueError(f"check {name}: unknown tests {unknown}")
        groups = _context_catalogue(info).lab_groups
        for rule in self.rules:
            if rule.drug not in groups:
                raise ValueError(f"rule for {rule.drug}: unknown drug group (the medication "
                                 f"catalogue's lab groups: {', '.join(groups)})")
            if rule.check not in self.checks:
                raise ValueError(f"rule for {rule.drug}: unknown check {rule.check}")
        for group in groups:
            if not any(rule.drug == group for rule in self.rules):
                raise ValueError(f"lab group {group} of the medication catalogue has no rule")
        for name in self.tests:
            if not re.fullmatch(r"[a-z0-9_]{1,40}", name):
                raise ValueError(f"test {name!r}: a code of a-z, 0-9 and _ (40 at most)")
        return self

    def model_post_init(self, context: object) -> None:
        if isinstance(context, dict):
            self._catalogue = context["catalogue"]

    def rules_for(self, drug: str) -> list[Rule]:
        """The rules of every lab group the catalogue puts the drug in."""
        groups = self._catalogue.lab_groups_of(drug)
        return [rule for rule in self.rules if rule.drug in groups]


def _context_catalogue(info: ValidationInfo) -> Catalogue:
    found = info.context.get("catalogue") if isinstance(info.context, dict) else None
    if not isinstance(found, Catalogue):
        raise ValueError("lab rules are read with the medication catalogue (load_rules)")
    return found


def load_rules(path: Path, known: Catalogue | None = None) -> LabRules:
    """The rules at ``path``, their drug groups filled from the medication catalogue
    (``known``, or the process's)."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    try:
        return LabRules.model_validate(data, context={"catalogue": known or catalogue()})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@cache
def rules() -> LabRules:
    # Read once per process (server.app loads it at start, so a bad file stops the start);
    # frozen, so sharing it is safe.
    return load_rules(RULES_PATH)


# --- what is due -----------------------------------------------------------------------

Status = Literal["upcoming", "due", "overdue"]


@dataclass(frozen=True)
class Taken:
    """A result as monitoring reads it: which test, on which day."""

    test: str
    taken_on: date


@dataclass(frozen=True)
class OnMedication:
    """An active medication as monitoring reads it: the day it started and the day of
    its latest start or dose change."""

    id: int
    drug: str
    started_on: date
    changed_on: date


class LabDue(Result):
    """One monitored lab for one medication: when it is due and how it stands today."""

    medication_id: int
    drug: str
    check: str
    label: str
    # As the panel names it: the check, with the drug unless the check names it
    # ("Lithium level"; "ANC (clozapine)").
    title: str
    status: Status
    due_on: date
    # The outer bound: the last day it is not overdue, and the first day it is.
    due_by: date
    overdue_on: date
    last_taken_on: date | None
    # Overdue and gating: the signing gate's reason code (level review).
    review_reason: str | None


def _phase(rule: Rule, start: date, taken_on: date) -> Phase:
    for phase in rule.phases:
        if phase.until is None or taken_on < phase.until.after(start):
            return phase
    raise AssertionError("the last phase has no end")  # checked when the rules load


def due_for(rule: Rule, lab_rules: LabRules, medication: OnMedication,
            results: Sequence[Taken], today: date) -> LabDue:
    """When ``rule`` wants its check next for ``medication``, and its status today.

    Results count from the baseline lookback before the start, or, for a rule due after
    a change, from the inner bound after the latest start or dose change (a lithium level
    two days after a new dose is not at steady state). With none, the rule is due at the
    start (baseline), in the window after the change, or one interval after the start.
    After the last counted result it is due by the phase that result falls in."""
    check = lab_rules.checks[rule.check]
    mine = [r.taken_on for r in results if r.test in check.tests]
    start = medication.started_on
    if rule.after_change is not None:
        window_start = rule.after_change.due.after(medication.changed_on)
    else:
        window_start = start - timedelta(days=lab_rules.baseline_lookback_days)
    counted = [day for day in mine if day >= window_start]
    if counted:
        last = max(counted)
        every = _phase(rule, start, last).every
        due_on, latest = every.due.after(last), every.latest.after(last)
    elif rule.after_change is not None:
        due_on = window_start
        latest = rule.after_change.latest.after(medication.changed_on)
    elif rule.baseline:
        due_on = latest = start
    else:
        every = rule.phases[0].every
        due_on, latest = every.due.after(start), every.latest.after(start)
    overdue_on = latest + timedelta(days=1)
    status: Status = ("overdue" if today >= overdue_on else
                      "due" if today >= due_on else "upcoming")
    drug_words = set(re.findall(r"[a-z0-9]+", medication.drug.lower()))
    named = drug_words & set(re.findall(r"[a-z0-9]+", check.label.lower()))
    title = check.label if named else f"{check.label} ({medication.drug})"
    return LabDue(medication_id=medication.id, drug=medication.drug, check=rule.check,
                  label=check.label, title=title, status=status, due_on=due_on,
                  due_by=latest, overdue_on=overdue_on,
                  last_taken_on=max(mine) if mine else None,
                  review_reason=rule.review_reason if status == "overdue" else None)


_ORDER: Final[dict[Status, int]] = {"overdue": 0, "due": 1, "upcoming": 2}


def due_labs(lab_rules: LabRules, medications: Sequence[OnMedication],
             results: Sequence[Taken], today: date) -> list[LabDue]:
    """Every monitored lab of the active medications: overdue first (longest first),
    then due, then upcoming (soonest first)."""
    found = [due_for(rule, lab_rules, medication, results, today)
             for medication in medications for rule in lab_rules.rules_for(medication.drug)]
    return sorted(found, key=lambda d: (_ORDER[d.status], d.overdue_on if d.status ==
                                        "overdue" else d.due_on, d.drug, d.check))


def on_medication(medication: Medication, dose_changes: Iterable[datetime],
                  zone: str) -> OnMedication:
    """An active medication as monitoring reads it; ``dose_changes``: the times of its
    changes that were starts or dose changes (``DOSE_CHANGES``)."""
    changed = max([medication.started_at, *dose_changes])
    return OnMedication(id=medication.id, drug=medication.drug,
                        started_on=local_date(medication.started_at, zone),
                        changed_on=local_date(changed, zone))


async def results_taken(session: AsyncSession, patient_id: int) -> list[Taken]:
    """Every result of the patient, as monitoring reads it (one query)."""
    return [Taken(test, day) for test, day in (await session.execute(
        select(LabResult.test, LabResult.taken_on).where(
            LabResult.patient_id == patient_id))).all()]


async def _monitoring_inputs(session: AsyncSession, patient_id: int, zone: str
                             ) -> tuple[list[OnMedication], list[Taken]]:
    medications = (await session.scalars(select(Medication).where(
        Medication.patient_id == patient_id, Medication.active.is_(True))
        .order_by(Medication.id))).all()
    changes = (await session.execute(select(MedicationChange.medication_id,
                                            MedicationChange.at).where(
        MedicationChange.patient_id == patient_id,
        MedicationChange.action.in_(sorted(DOSE_CHANGES))))).all()
    on = [on_medication(m, [at for medication_id, at in changes if medication_id == m.id],
                        zone) for m in medications]
    return on, await results_taken(session, patient_id)


class LabsDue(Result):
    """The patient's monitored labs as of ``today`` (the clinic's day)."""

    patient_id: int
    today: date
    due_soon_days: int
    items: list[LabDue]

    def to_act_on(self) -> list[LabDue]:
        """What the note panel lists: overdue, due, and due within the soon window."""
        soon = self.today + timedelta(days=self.due_soon_days)
        return [item for item in self.items
                if item.status != "upcoming" or item.due_on <= soon]


async def labs_due(session: AsyncSession, actor: Actor, patient_id: int, *,
                   now: datetime, zone: str) -> LabsDue:
    """The patient's monitored labs, for whoever may read the patient's record."""
    await access_patient(session, actor, patient_id, now=now)
    today = local_date(now, zone)
    medications, taken = await _monitoring_inputs(session, patient_id, zone)
    lab_rules = rules()
    audit.record(session, actor, "read", "lab_monitoring", patient_id, patient_id=patient_id)
    return LabsDue(patient_id=patient_id, today=today,
                   due_soon_days=lab_rules.due_soon_days,
                   items=due_labs(lab_rules, medications, taken, today))


async def gate_reasons(session: AsyncSession, patient_id: int, *, now: datetime,
                       zone: str) -> list[str]:
    """The signing gate's lab reasons (level review): each gating rule overdue today for
    an active medication, once. Read as part of the gate (the note's read or sign is
    the audited access)."""
    medications, taken = await _monitoring_inputs(session, patient_id, zone)
    found = due_labs(rules(), medications, taken, local_date(now, zone))
    return list(dict.fromkeys(d.review_reason for d in found if d.review_reason))


# --- results ---------------------------------------------------------------------------


class NewLabResult(BaseModel):
    """A result as staff enter it: ``value`` and ``unit`` for a numeric test,
    ``text_value`` for a report in words; the day the sample was taken."""

    model_config = ConfigDict(extra="forbid")

    test: str = Field(min_length=1, max_length=40)
    value: float | None = Field(default=None, allow_inf_nan=False)
    unit: str | None = Field(default=None, min_length=1, max_length=20)
    text_value: str | None = Field(default=None, min_length=1, max_length=200)
    taken_on: date


class LabResultEntry(Result):
    id: int
    patient_id: int
    test: str
    label: str
    value: float | None
    unit: str | None
    text_value: str | None
    taken_on: date
    entered_by: Person
    entered_at: Instant


def checked_result(body: NewLabResult, lab_rules: LabRules, today: date) -> NewLabResult:
    """The result, or 422 naming the field: a known test, a value with a unit of that
    test within its range (or words for a text test), a day neither in the future nor
    before ``EARLIEST``."""
    test = lab_rules.tests.get(body.test)
    if test is None:
        raise ValidationFailed(f'There is no test "{body.test}".', field="test")
    if body.taken_on > today:
        raise ValidationFailed("The day the sample was taken cannot be in the future.",
                               field="taken_on")
    if body.taken_on < EARLIEST:
        raise ValidationFailed(f"The day the sample was taken is before {EARLIEST:%Y}.",
                               field="taken_on")
    if test.kind == "text":
        words = (body.text_value or "").strip()
        if not words:
            raise ValidationFailed(f"Give the {test.label.lower()} result in words.",
                                   field="text_value")
        if body.value is not None or body.unit is not None:
            raise ValidationFailed(f"{test.label} is a report in words, without a number.",
                                   field="value" if body.value is not None else "unit")
        return body.model_copy(update={"text_value": words})
    if body.value is None:
        raise ValidationFailed(f"Give the {test.label} value.", field="value")
    if body.unit is None:
        raise ValidationFailed(f"Give the unit of the {test.label} value "
                               f"({', '.join(test.units)}).", field="unit")
    if body.unit not in test.units:
        raise ValidationFailed(f"{test.label} is entered in {', '.join(test.units)}.",
                               field="unit")
    if body.text_value is not None:
        raise ValidationFailed(f"{test.label} takes a number, not words.", field="text_value")
    low, high = test.units[body.unit]
    if not low <= body.value <= high:
        raise ValidationFailed(f"{test.label} in {body.unit} is between {low:g} and {high:g}.",
                               field="value")
    return body


def _entry(result: LabResult, lab_rules: LabRules, author: str) -> LabResultEntry:
    test = lab_rules.tests.get(result.test)
    return LabResultEntry(id=result.id, patient_id=result.patient_id, test=result.test,
                          label=test.label if test else result.test, value=result.value,
                          unit=result.unit, text_value=result.text_value,
                          taken_on=result.taken_on,
                          entered_by=Person(id=result.entered_by_id, name=author),
                          entered_at=result.entered_at)


async def add_result(session: AsyncSession, actor: Actor, patient_id: int,
                     body: NewLabResult, *, now: datetime, zone: str) -> LabResultEntry:
    """Enter a lab result for the patient: the care team's prescribers and coordinators,
    signed in with their password. Audited; the care team hears of it (``lab.added``:
    the note panel's lab list and signing gate follow)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    await access_patient(session, actor, patient_id, now=now)
    lab_rules = rules()
    body = checked_result(body, lab_rules, local_date(now, zone))
    result = LabResult(patient_id=patient_id, test=body.test, value=body.value,
                       unit=body.unit, text_value=body.text_value, taken_on=body.taken_on,
                       entered_by_id=actor.user_id, entered_at=now)
    session.add(result)
    await session.flush()
    audit.record(session, actor, "create", "lab_result", result.id, patient_id=patient_id,
                 at=now, test=body.test)
    emit(session, "lab.added", await care_team_ids(session, patient_id),
         patient_id=patient_id, lab_result_id=result.id)
    return _entry(result, lab_rules, actor.name)


async def list_results(session: AsyncSession, actor: Actor, patient_id: int, *,
                       now: datetime) -> list[LabResultEntry]:
    """The patient's lab results, newest sample first, for whoever may read the record;
    each read audited."""
    await access_patient(session, actor, patient_id, now=now)
    rows = (await session.execute(select(LabResult, User.name).join(
        User, User.id == LabResult.entered_by_id).where(LabResult.patient_id == patient_id)
        .order_by(LabResult.taken_on.desc(), LabResult.id.desc()))).all()
    audit.record_reads(session, actor, "lab_result", [(r.id, patient_id) for r, _ in rows])
    lab_rules = rules()
    return [_entry(result, lab_rules, name) for result, name in rows]
