"""The patient's medication list as the care team reads it: each medication (current or
stopped) with its history and, for a current one, the monitoring labs it needs.

"Needs monitoring" is not a list of its own: it is ``server.labs``'s rules for the drug
(the medication catalogue puts the drug in its lab groups, ``lab_rules.toml`` says what
each group needs and when), judged against the patient's lab results, the same items
the note panel's labs block lists (``labs.labs_due``), so the two always agree.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import JsonValue, SerializerFunctionWrapHandler, model_serializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, labs
from server.access import access_patient
from server.actors import Actor
from server.medications import DOSE_CHANGES
from server.models import Medication, MedicationChange
from server.results import Instant, Result
from server.timezones import local_date


class MonitoringDue(Result):
    """What the lab rules call for on one current medication, and how it stands today
    (the clinic's day)."""

    # The checks, as the rules name them, in the rules' order ("Lithium level, TSH,
    # Creatinine/eGFR, Calcium").
    what: str
    # The most pressing of its labs: overdue, then due, then upcoming.
    status: labs.Status
    # Whether any of its labs is due or overdue today.
    due: bool
    # The first day one of its labs is (or was) due.
    due_on: date
    # Each lab, as the note panel's labs block shows it: overdue first.
    labs: list[labs.LabDue]


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
    # None: a stopped medication, or one no lab rule applies to.
    monitoring: MonitoringDue | None
    history: list[MedicationEvent]


def monitoring_of(items: list[labs.LabDue]) -> MonitoringDue | None:
    """One medication's labs (``labs.due_labs`` order: overdue first) summed up."""
    if not items:
        return None
    statuses = {item.status for item in items}
    status: labs.Status = ("overdue" if "overdue" in statuses else
                           "due" if "due" in statuses else "upcoming")
    order = {rule.check: n for n, rule in enumerate(labs.rules().rules)}
    what = list(dict.fromkeys(item.label for item in sorted(
        items, key=lambda item: order.get(item.check, len(order)))))
    return MonitoringDue(what=", ".join(what), status=status, due=status != "upcoming",
                         due_on=min(item.due_on for item in items), labs=items)


def medication_entry(medication: Medication, history: list[MedicationChange],
                     monitoring: MonitoringDue | None) -> MedicationEntry:
    return MedicationEntry(
        id=medication.id, drug=medication.drug, dose=medication.dose, unit=medication.unit,
        route=medication.route, frequency=medication.frequency, active=medication.active,
        started_at=medication.started_at, changed_at=medication.changed_at,
        stopped_at=medication.stopped_at, monitoring=monitoring,
        history=[MedicationEvent(action=c.action, at=c.at, by_id=c.by_id, reason=c.reason,
                                 note_id=c.note_id, detail=c.detail) for c in history])


async def medication_list(session: AsyncSession, actor: Actor, patient_id: int, *,
                          now: datetime, zone: str) -> list[MedicationEntry]:
    """The patient's medications, current first, for whoever may read the record: at
    most three queries whatever the list's length (medications, their changes, the lab
    results). The read is audited, and so is the monitoring it shows (``lab_monitoring``,
    as ``labs.labs_due`` records it)."""
    await access_patient(session, actor, patient_id, now=now)
    medications = (await session.scalars(select(Medication).where(
        Medication.patient_id == patient_id).order_by(Medication.active.desc(),
                                                      Medication.drug))).all()
    changes = (await session.scalars(select(MedicationChange).where(
        MedicationChange.patient_id == patient_id).order_by(MedicationChange.at,
                                                            MedicationChange.id))).all()
    current = [labs.on_medication(m, [c.at for c in changes if c.medication_id == m.id
                                      and c.action in DOSE_CHANGES], zone)
               for m in medications if m.active]
    due: list[labs.LabDue] = []
    audit.record(session, actor, "read", "medications", patient_id, patient_id=patient_id)
    if current:
        due = labs.due_labs(labs.rules(), current,
                            await labs.results_taken(session, patient_id),
                            local_date(now, zone))
        audit.record(session, actor, "read", "lab_monitoring", patient_id,
                     patient_id=patient_id)
    return [medication_entry(m, [c for c in changes if c.medication_id == m.id],
                             monitoring_of([d for d in due if d.medication_id == m.id]))
            for m in medications]
