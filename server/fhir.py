"""FHIR R4 export of a patient's measures (CLINICAL.md, "FHIR R4 mapping").

One QuestionnaireResponse per completed instrument and one Observation (category
``survey``) per total, LOINC-coded where CLINICAL.md gives a code, in a collection
Bundle.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient
from server.actors import Actor
from server.instruments import INSTRUMENTS
from server.models import CheckIn, CheckInStatus, Medication
from server.part2 import NO_REDISCLOSURE, SECURITY_LABELS, Category, rules

LOINC = "http://loinc.org"
LOCAL = "urn:mendwell:instrument"
SURVEY = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "survey", "display": "Survey"}]}


def _questionnaire(instrument: str) -> str:
    panel = INSTRUMENTS[instrument].loinc_panel
    return f"{LOINC}/q/{panel}" if panel else f"{LOCAL}:{instrument}"


def _answer(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    return {"valueInteger": value}


def _items(instrument: str, response: dict[str, Any]) -> list[dict[str, Any]]:
    answers = response.get("answers")
    items: list[dict[str, Any]] = []
    if isinstance(answers, list):
        for index, value in enumerate(answers):
            if value is not None:  # AUDIT-C's 2 and 3 after "Never": not asked
                items.append({"linkId": f"{instrument}.{index + 1}",
                              "answer": [_answer(value)]})
    elif isinstance(answers, dict):
        for key, value in answers.items():
            if value is not None:  # unasked questions are left out, not answered "no"
                items.append({"linkId": f"{instrument}.{key}", "answer": [_answer(value)]})
    if instrument == "phq9" and isinstance(response.get("difficulty"), int):
        items.append({"linkId": "phq9.difficulty",
                      "answer": [_answer(response["difficulty"])]})
    return items


def _observation(instrument: str, score: dict[str, Any], patient: str, when: str,
                 qr_url: str) -> dict[str, Any] | None:
    definition = INSTRUMENTS[instrument]
    if definition.loinc_total:
        code = {"coding": [{"system": LOINC, "code": definition.loinc_total,
                            "display": f"{definition.name} total score"}],
                "text": f"{definition.name} total"}
    else:
        code = {"coding": [{"system": LOCAL, "code": f"{instrument}-total"}],
                "text": f"{definition.name} total"}
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final", "category": [SURVEY],
        "code": code, "subject": {"reference": patient}, "effectiveDateTime": when,
        "derivedFrom": [{"reference": qr_url}],
    }
    if isinstance(score.get("total"), int):
        observation["valueInteger"] = score["total"]
    elif isinstance(score.get("risk"), str):
        observation["code"] = {"coding": [{"system": LOCAL, "code": "cssrs-risk"}],
                               "text": "C-SSRS screener risk"}
        observation["valueString"] = score["risk"]
    else:
        return None
    if isinstance(score.get("severity"), str):
        observation["interpretation"] = [{"text": score["severity"]}]
    return observation


Entry = dict[str, Any]


def labelled(entry: Entry) -> Entry:
    """The entry with its resource marked as a 42 CFR Part 2 record (HL7 DS4P security
    labels, plus the obligation not to redisclose without consent)."""
    resource = dict(entry["resource"])
    resource["meta"] = {"security": [*SECURITY_LABELS, NO_REDISCLOSURE]}
    return {**entry, "resource": resource}


async def record_entries(session: AsyncSession,
                         patient_id: int) -> list[tuple[Category | None, Entry]]:
    """Every resource of the patient's exportable record with its Part 2 category (None
    for what Part 2 does not cover): one QuestionnaireResponse and one Observation per
    completed instrument, one MedicationStatement per medication on the list. Access is
    the caller's to check."""
    checkins = (await session.scalars(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at)
    )).all()
    part2 = rules()
    patient = f"Patient/{patient_id}"
    entries: list[tuple[Category | None, Entry]] = []
    for checkin in checkins:
        assert checkin.completed_at is not None
        when = checkin.completed_at.isoformat()
        responses = checkin.data.get("responses", {})
        for instrument, score in (checkin.scores or {}).items():
            response = responses.get(instrument)
            if not isinstance(response, dict):
                continue
            category = part2.of_instrument(instrument)
            qr_url = f"urn:uuid:{uuid.uuid4()}"
            entries.append((category, {"fullUrl": qr_url, "resource": {
                "resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": _questionnaire(instrument), "subject": {"reference": patient},
                "authored": when, "item": _items(instrument, response)}}))
            observation = _observation(instrument, score, patient, when, qr_url)
            if observation is not None:
                entries.append((category, {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                                           "resource": observation}))
    medications = (await session.scalars(select(Medication).where(
        Medication.patient_id == patient_id).order_by(Medication.started_at,
                                                      Medication.id))).all()
    for medication in medications:
        entries.append((part2.of_medication(medication.drug), {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": _medication_statement(medication, patient)}))
    return entries


def _medication_statement(medication: Medication, patient: str) -> dict[str, Any]:
    dosage = " ".join(part for part in (medication.dose, medication.unit, medication.route,
                                        medication.frequency) if part)
    statement: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "status": "active" if medication.active else "stopped",
        "medicationCodeableConcept": {"text": medication.drug},
        "subject": {"reference": patient},
        "effectivePeriod": {"start": medication.started_at.isoformat()},
    }
    if medication.stopped_at is not None:
        statement["effectivePeriod"]["end"] = medication.stopped_at.isoformat()
    if dosage:
        statement["dosage"] = [{"text": dosage}]
    return statement


def bundle_of(entries: list[Entry], **extra: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", **extra}
    if entries:  # FHIR JSON forbids empty arrays: no resources, no "entry"
        bundle["entry"] = entries
    return bundle


async def measures_bundle(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> dict[str, Any]:
    """The patient's record for use within the program (the patient's own copy, or the
    care team's; 42 CFR 2.12(c)(3) lets the program's staff share it among themselves).
    Part 2 resources carry their security labels, so a copy passed on still says what it
    is; sending it outside goes through ``server.disclosures`` instead."""
    await access_patient(session, actor, patient_id, now=now)
    found = await record_entries(session, patient_id)
    entries = [labelled(entry) if category else entry for category, entry in found]
    audit.record(session, actor, "export_fhir", "measures", patient_id, patient_id=patient_id,
                 count=len(entries))
    return bundle_of(entries)
