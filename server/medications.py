"""The patient's medication list, changed only by signed notes (``apply_changes``).

The list as the care team reads it, with the labs each medication needs, is
``server.medication_list`` (the labs come from ``server.labs``, which reads the changes
made here).
"""

from __future__ import annotations

from datetime import datetime
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
from server.actors import Actor
from server.errors import ValidationFailed
from server.models import Medication, MedicationChange

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


# What dose-dependent regimens call a change of dose (for the follow-up cadence); each
# needs a dose.
DOSE_CHANGES: Final[frozenset[Action]] = frozenset(
    {"start", "increase", "decrease", "switch", "taper"})


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
