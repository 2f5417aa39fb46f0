"""A referral packet for a step-up: when video is not enough, the coordinator sends the
patient's record to a residential, intensive outpatient, partial hospitalization or
inpatient program.

What goes in is what a receiving program needs to take the patient on (why, the level
of care, current medications, the latest scores), less what 42 CFR Part 2 keeps back:
each Part 2 part goes only under a consent covering this program for treatment
(``server.disclosures.decide``), and then with the 2.32 notice. The packet is made once,
kept as it went (a printable page and a FHIR Bundle), and recorded in the patient's
accounting of disclosures once; printing it again reads what was sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, counseling_notes, disclosures, fhir
from server.access import access_escalation, require_role
from server.actors import Actor
from server.errors import NotFound
from server.instruments import INSTRUMENTS
from server.models import (
    CheckIn,
    CheckInStatus,
    Medication,
    Part2Disclosure,
    Role,
    SudCounselingNote,
    User,
)
from server.part2 import NOTICE, Category, rules
from server.results import Instant, JsonObject, Person, Result

# The levels of care above an outpatient video visit (CLINICAL.md, "Levels of care").
StepUpLevel = Literal["inpatient", "residential", "partial_hospitalization",
                      "intensive_outpatient"]
STEP_UP_LEVELS: Final[tuple[StepUpLevel, ...]] = get_args(StepUpLevel)
LEVEL_LABELS: Final[dict[str, str]] = {
    "inpatient": "Inpatient (ASAM 4 / LOCUS 6)",
    "residential": "Residential (ASAM 3.1-3.7 / LOCUS 5)",
    "partial_hospitalization": "Partial hospitalization (ASAM 2.5)",
    "intensive_outpatient": "Intensive outpatient (ASAM 2.1 / LOCUS 3-4)",
}


class ReferralBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program_name: str = Field(min_length=1, max_length=200)
    program_affiliation: str | None = Field(default=None, max_length=200)
    level_of_care: StepUpLevel
    note: str | None = Field(default=None, max_length=2000)


class Referral(Result):
    """A packet as it went: who it went to, what was in it, what was held back."""

    id: int
    escalation_id: int
    patient: Person
    at: Instant
    sent_by: Person
    program_name: str
    program_affiliation: str | None
    level_of_care: str
    content: dict[str, Any]


async def make(session: AsyncSession, actor: Actor, escalation_id: int,
               body: ReferralBody, *, now: datetime, zone: str,
               organization: str) -> Referral:
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True,
                                         now=now)
    patient_id = escalation.patient_id
    recipient = disclosures.Recipient(name=body.program_name,
                                      affiliation=body.program_affiliation,
                                      recipient_class="treating_providers")
    part2 = rules()
    # The record, each part with its Part 2 category (None: not Part 2).
    entries = await fhir.record_entries(session, patient_id)
    notes = await counseling_notes.fhir_entries(session, patient_id)
    medications = await _medications(session, patient_id)
    measures = await _latest_measures(session, patient_id)
    substance_use = await _latest_substance_use(session, patient_id)
    present: set[Category] = {c for c, _ in entries if c is not None}
    present |= {c for m in medications if (c := part2.of_medication(m["drug"]))}
    if substance_use is not None:
        present.add("sud_checkin")
    if notes:
        present.add("sud_counseling_notes")
    released, withheld = await disclosures.decide(
        session, patient_id, present, recipient=recipient, purpose="treatment", now=now,
        zone=zone)

    def goes(category: Category | None) -> bool:
        return category is None or category in released

    bundle_entries = [e if c is None else fhir.labelled(e) for c, e in entries if goes(c)]
    if "sud_counseling_notes" in released:
        bundle_entries += [fhir.labelled(e) for e in notes]
    bundle_entries.insert(0, {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"text": LEVEL_LABELS[body.level_of_care]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": now.isoformat(),
        "requester": {"display": f"{actor.name}, {organization}"},
        "performer": [{"display": body.program_name}],
        "reasonCode": [{"text": reason} for reason in escalation.reasons],
        **({"note": [{"text": body.note}]} if body.note else {}),
    }})
    bundle_entries += await disclosures.consent_entries(
        session, released, now=now, zone=zone, organization=organization)
    content: JsonObject = {
        "level_of_care": body.level_of_care, "note": body.note,
        "reasons": list(escalation.reasons), "level": escalation.level,
        "organization": organization,
        "medications": [m for m in medications
                        if goes(part2.of_medication(m["drug"]))],
        "measures": [m for m in measures if goes(part2.of_instrument(m["instrument"]))],
        "substance_use": substance_use if "sud_checkin" in released else None,
        "counseling_notes": await _notes_text(session, patient_id)
        if "sud_counseling_notes" in released else [],
        "part2": sorted(released), "withheld": withheld,
        "notice": NOTICE if released else None,
        "bundle": fhir.bundle_of(bundle_entries, **disclosures.notice_meta(released)),
    }
    main = disclosures.main_consent(released)
    recorded = await disclosures.record(
        session, actor, patient_id, channel="referral_packet", recipient=recipient,
        purpose="treatment", categories=sorted(released),
        consent_id=main.id if main else None, now=now, escalation_id=escalation_id,
        description=f"Referral packet for {LEVEL_LABELS[body.level_of_care].lower()}: "
                    "reason for referral, medications and latest scores"
                    + (f"; {disclosures.describe(released)}" if released else
                       "; no substance use records"),
        content=dict(content))
    row = await session.get(Part2Disclosure, recorded.id)
    assert row is not None
    audit.record(session, actor, "refer", "escalation", escalation_id, patient_id=patient_id,
                 at=now, level_of_care=body.level_of_care, withheld=withheld)
    return await _result(session, row)


async def get(session: AsyncSession, actor: Actor, escalation_id: int, referral_id: int, *,
              now: datetime) -> Referral:
    """A packet as it went, to print again (a read, audited; not a new disclosure)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, now=now)
    row = await session.get(Part2Disclosure, referral_id)
    if row is None or row.escalation_id != escalation.id or \
            row.channel != "referral_packet" or row.content is None:
        raise NotFound(f"There is no referral {referral_id} of this escalation.",
                       field="referral_id")
    audit.record(session, actor, "read", "referral", row.id, patient_id=row.patient_id, at=now)
    return await _result(session, row)


async def of_escalation(session: AsyncSession, escalation_id: int) -> list[Referral]:
    rows = (await session.scalars(select(Part2Disclosure).where(
        Part2Disclosure.escalation_id == escalation_id,
        Part2Disclosure.channel == "referral_packet").order_by(Part2Disclosure.at))).all()
    return [await _result(session, row) for row in rows]


async def _result(session: AsyncSession, row: Part2Disclosure) -> Referral:
    patient = await session.get(User, row.patient_id)
    by = await session.get(User, row.disclosed_by_id)
    assert patient is not None and by is not None and row.escalation_id is not None
    content = row.content or {}
    return Referral(id=row.id, escalation_id=row.escalation_id,
                    patient=Person(id=patient.id, name=patient.name), at=row.at,
                    sent_by=Person(id=by.id, name=by.name), program_name=row.recipient_name,
                    program_affiliation=row.recipient_affiliation,
                    level_of_care=str(content.get("level_of_care", "")), content=content)


async def _medications(session: AsyncSession, patient_id: int) -> list[dict[str, Any]]:
    rows = (await session.scalars(select(Medication).where(
        Medication.patient_id == patient_id, Medication.active.is_(True))
        .order_by(Medication.drug))).all()
    return [{"drug": m.drug, "dose": m.dose, "unit": m.unit, "route": m.route,
             "frequency": m.frequency} for m in rows]


async def _latest_measures(session: AsyncSession, patient_id: int) -> list[dict[str, Any]]:
    """Each instrument's latest score, from the completed check-ins."""
    rows = (await session.scalars(select(CheckIn).where(
        CheckIn.patient_id == patient_id, CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at.desc()).limit(20))).all()
    found: dict[str, dict[str, Any]] = {}
    for checkin in rows:
        assert checkin.completed_at is not None
        for instrument, score in (checkin.scores or {}).items():
            if instrument in found or instrument not in INSTRUMENTS:
                continue
            value = score.get("total") if isinstance(score.get("total"), int) \
                else score.get("risk")
            found[instrument] = {"instrument": instrument,
                                 "name": INSTRUMENTS[instrument].name, "value": value,
                                 "severity": score.get("severity"),
                                 "at": checkin.completed_at.isoformat()}
    return sorted(found.values(), key=lambda m: str(m["name"]))


async def _latest_substance_use(session: AsyncSession,
                                patient_id: int) -> dict[str, Any] | None:
    checkin = await session.scalar(select(CheckIn).where(
        CheckIn.patient_id == patient_id, CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at.desc()).limit(1))
    if checkin is None or not isinstance(checkin.data.get("substance_use"), dict):
        return None
    assert checkin.completed_at is not None
    return {"at": checkin.completed_at.isoformat(), **checkin.data["substance_use"]}


async def _notes_text(session: AsyncSession, patient_id: int) -> list[dict[str, Any]]:
    rows = (await session.execute(
        select(SudCounselingNote, User.name).join(User, User.id == SudCounselingNote.author_id)
        .where(SudCounselingNote.patient_id == patient_id)
        .order_by(SudCounselingNote.created_at))).all()
    return [{"at": n.created_at.isoformat(), "author": name, "text": n.text}
            for n, name in rows]
