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
from server.models import CheckIn, CheckInStatus

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


async def measures_bundle(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> dict[str, Any]:
    await access_patient(session, actor, patient_id, now=now)
    checkins = (await session.scalars(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.status == CheckInStatus.completed)
        .order_by(CheckIn.completed_at)
    )).all()
    patient = f"Patient/{patient_id}"
    entries: list[dict[str, Any]] = []
    for checkin in checkins:
        assert checkin.completed_at is not None
        when = checkin.completed_at.isoformat()
        responses = checkin.data.get("responses", {})
        for instrument, score in (checkin.scores or {}).items():
            response = responses.get(instrument)
            if not isinstance(response, dict):
                continue
            qr_url = f"urn:uuid:{uuid.uuid4()}"
            entries.append({"fullUrl": qr_url, "resource": {
                "resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": _questionnaire(instrument), "subject": {"reference": patient},
                "authored": when, "item": _items(instrument, response)}})
            observation = _observation(instrument, score, patient, when, qr_url)
            if observation is not None:
                entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation})
    audit.record(session, actor, "export_fhir", "measures", patient_id, patient_id=patient_id,
                 count=len(entries))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if entries:  # FHIR JSON forbids empty arrays: no check-ins, no "entry"
        bundle["entry"] = entries
    return bundle
