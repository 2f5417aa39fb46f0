"""The patient's medication list, changed only by signed notes.

Monitoring flags: medications whose safe use needs labs or vital signs. Sources:
lithium (serum level, renal and thyroid function; NICE CG185 / APA), valproate
(level, liver function, blood count), carbamazepine (level, sodium, blood count,
liver), clozapine (absolute neutrophil count, REMS), and antipsychotics (metabolic
monitoring of weight, glucose and lipids; ADA/APA consensus 2004).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient
from server.actors import Actor
from server.errors import ValidationFailed
from server.models import Medication, MedicationChange
from server.results import Instant, Result

# What a note's medication change does: the one list (the editor's <select> and the
# summary's sentences follow it).
Action = Literal["start", "increase", "decrease", "switch", "taper", "stop", "continue"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)


# One shape for the row: as a save sends it, as the note stores it and as the note and
# the summary answer it.
class MedicationChangeRow(BaseModel):
    """One structured row of a note's medication changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    drug: str = Field(min_length=1, max_length=120)
    dose: str | None = Field(default=None, max_length=40)
    unit: str | None = Field(default=None, max_length=20)
    route: str | None = Field(default=None, max_length=40)
    frequency: str | None = Field(default=None, max_length=60)
    reason: str | None = Field(default=None, max_length=500)
    # For a switch: the medication being replaced by ``drug``.
    replaces: str | None = Field(default=None, max_length=120)
    # Days' supply of the prescription: the controlled-substance rules need it
    # (server.controlled: buprenorphine's 7-day and 6-month limits).
    days_supply: int | None = Field(default=None, ge=1, le=365)

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, JsonValue]:
        # A row is stored with the fields that were given, and answered as stored:
        # no "dose": null for a row without one.
        return {key: value for key, value in handler(self).items() if value is not None}


@dataclass(frozen=True)
class Monitoring:
    what: str
    every_days: int


_ANTIPSYCHOTIC = Monitoring("weight, glucose and lipids (metabolic)", 90)
MONITORING: dict[str, Monitoring] = {
    "lithium": Monitoring("lithium level, kidney and thyroid function", 90),
    "valproate": Monitoring("valproate level, liver function and blood count", 180),
    "divalproex": Monitoring("valproate level, liver function and blood count", 180),
    "valproic acid": Monitoring("valproate level, liver function and blood count", 180),
    "carbamazepine": Monitoring("carbamazepine level, sodium, blood count, liver", 180),
    "clozapine": Monitoring("absolute neutrophil count (ANC)", 30),
    **{name: _ANTIPSYCHOTIC for name in (
        "aripiprazole", "asenapine", "brexpiprazole", "cariprazine", "haloperidol",
        "iloperidone", "lurasidone", "olanzapine", "paliperidone", "quetiapine",
        "risperidone", "ziprasidone", "lumateperone", "chlorpromazine", "fluphenazine",
        "perphenazine")},
}
# What dose-dependent regimens call a change of dose (for the follow-up cadence); each
# needs a dose.
DOSE_CHANGES: Final[frozenset[Action]] = frozenset(
    {"start", "increase", "decrease", "switch", "taper"})


def monitoring_for(drug: str) -> Monitoring | None:
    return MONITORING.get(drug.strip().lower())


class MonitoringDue(Result):
    """What a medication on the list needs watching, and by when."""

    what: str
    due_at: Instant | None
    due: bool


class MedicationEvent(Result):
    """One change in a medication's history, with the row's details (drug, dose...,
    ``switched_to``) beside its own fields, as they were stored."""

    action: str
    at: Instant
    by_id: int
    reason: str | None
    note_id: int | None
    detail: dict[str, JsonValue]

    @model_serializer(mode="wrap")
    def _detail_beside(self, handler: SerializerFunctionWrapHandler) -> dict[str, JsonValue]:
        fields = handler(self)
        detail = fields.pop("detail")
        assert isinstance(detail, dict)
        return {**fields, **detail}


class MedicationEntry(Result):
    """A medication on the patient's list (current or stopped) with its history."""

    id: int
    drug: str
    dose: str | None
    unit: str | None
    route: str | None
    frequency: str | None
    active: bool
    started_at: Instant
    changed_at: Instant
    stopped_at: Instant | None
    monitoring: MonitoringDue | None
    history: list[MedicationEvent]


def medication_entry(medication: Medication, history: list[MedicationChange],
                     now: datetime) -> MedicationEntry:
    monitoring = monitoring_for(medication.drug)
    due_at = None
    if monitoring and medication.active:
        since = medication.last_monitored_at or medication.started_at
        due_at = since + timedelta(days=monitoring.every_days)
    return MedicationEntry(
        id=medication.id, drug=medication.drug, dose=medication.dose, unit=medication.unit,
        route=medication.route, frequency=medication.frequency, active=medication.active,
        started_at=medication.started_at, changed_at=medication.changed_at,
        stopped_at=medication.stopped_at,
        monitoring=MonitoringDue(what=monitoring.what, due_at=due_at,
                                 due=bool(due_at and due_at <= now)) if monitoring else None,
        history=[MedicationEvent(action=c.action, at=c.at, by_id=c.by_id, reason=c.reason,
                                 note_id=c.note_id, detail=c.detail) for c in history])


async def _active(session: AsyncSession, patient_id: int, drug: str) -> Medication | None:
    return await session.scalar(select(Medication).where(
        Medication.patient_id == patient_id, Medication.active.is_(True),
        func.lower(Medication.drug) == drug.strip().lower()))


def check_rows(rows: list[MedicationChangeRow]) -> None:
    for index, row in enumerate(rows):
        if row.action in DOSE_CHANGES and not row.dose:
            raise ValidationFailed(f"Give the dose for {row.action} {row.drug}.",
                                   field=f"medication_changes.{index}.dose")
        if row.action == "switch" and not row.replaces:
            raise ValidationFailed("Say which medication this replaces.",
                                   field=f"medication_changes.{index}.replaces")


async def apply_changes(session: AsyncSession, actor: Actor, *, patient_id: int, note_id: int,
                        rows: list[MedicationChangeRow], now: datetime) -> None:
    """Update the medication list from a note being signed (all rows or none)."""
    check_rows(rows)
    for index, row in enumerate(rows):
        field = f"medication_changes.{index}.drug"
        detail = {k: v for k, v in row.model_dump().items()
                  if k in ("drug", "dose", "unit", "route", "frequency", "replaces",
                           "days_supply") and v}
        if row.action == "start":
            if await _active(session, patient_id, row.drug) is not None:
                raise ValidationFailed(f"{row.drug} is already on the list; use increase, "
                                       "decrease or continue.", field=field)
            medication = Medication(patient_id=patient_id, drug=row.drug.strip(), dose=row.dose,
                                    unit=row.unit, route=row.route, frequency=row.frequency,
                                    active=True, started_at=now, changed_at=now)
            session.add(medication)
            await session.flush()
        elif row.action == "switch":
            assert row.replaces is not None
            old = await _active(session, patient_id, row.replaces)
            if old is None:
                raise ValidationFailed(f"{row.replaces} is not on the list.",
                                       field=f"medication_changes.{index}.replaces")
            old.active, old.stopped_at, old.changed_at = False, now, now
            session.add(MedicationChange(medication_id=old.id, patient_id=patient_id,
                                         note_id=note_id, action="stop", at=now,
                                         by_id=actor.user_id, reason=row.reason,
                                         detail={"switched_to": row.drug}))
            medication = Medication(patient_id=patient_id, drug=row.drug.strip(), dose=row.dose,
                                    unit=row.unit, route=row.route, frequency=row.frequency,
                                    active=True, started_at=now, changed_at=now)
            session.add(medication)
            await session.flush()
        else:
            found = await _active(session, patient_id, row.drug)
            if found is None:
                raise ValidationFailed(f"{row.drug} is not on the list; use start.",
                                       field=field)
            medication = found
            if row.action == "stop":
                medication.active, medication.stopped_at = False, now
            elif row.action != "continue":
                for name in ("dose", "unit", "route", "frequency"):
                    if getattr(row, name):
                        setattr(medication, name, getattr(row, name))
            medication.changed_at = now
        session.add(MedicationChange(medication_id=medication.id, patient_id=patient_id,
                                     note_id=note_id, action=row.action, at=now,
                                     by_id=actor.user_id, reason=row.reason, detail=detail))
    if rows:
        audit.record(session, actor, "update", "medications", patient_id,
                     patient_id=patient_id, note_id=note_id, changes=len(rows))


async def medication_list(session: AsyncSession, actor: Actor, patient_id: int,
                          now: datetime) -> list[MedicationEntry]:
    await access_patient(session, actor, patient_id, now=now)
    medications = (await session.scalars(select(Medication).where(
        Medication.patient_id == patient_id).order_by(Medication.active.desc(),
                                                      Medication.drug))).all()
    changes = (await session.scalars(select(MedicationChange).where(
        MedicationChange.patient_id == patient_id).order_by(MedicationChange.at,
                                                            MedicationChange.id))).all()
    audit.record(session, actor, "read", "medications", patient_id, patient_id=patient_id)
    return [medication_entry(m, [c for c in changes if c.medication_id == m.id], now)
            for m in medications]
