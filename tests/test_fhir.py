"""The FHIR export of a patient's measures, validated against the FHIR structures.

``fhir.resources`` ships R5 by default and R4B (the R4 line's last release, the same
resources and JSON as R4 for everything exported here) under ``fhir.resources.R4B``;
there is no plain R4 package, so R4B it is. Beyond what the models check, the JSON
rules of the spec are checked too: no nulls, no empty arrays, objects or strings.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from starlette.testclient import TestClient

from server.models import Visit, VisitKind, VisitStatus
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

LOINC = "http://loinc.org"
SURVEY = "http://terminology.hl7.org/CodeSystem/observation-category"


def json_shape_problems(value: Any, path: str = "$") -> list[str]:
    """Where the FHIR JSON rules are broken: nulls, empty arrays, objects or strings."""
    if value is None:
        return [f"{path} is null"]
    if isinstance(value, str | list | dict) and not value:
        return [f"{path} is empty"]
    if isinstance(value, list):
        return [found for index, item in enumerate(value)
                for found in json_shape_problems(item, f"{path}[{index}]")]
    if isinstance(value, dict):
        return [found for key, item in value.items()
                for found in json_shape_problems(item, f"{path}.{key}")]
    return []


def two_checkins(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
                 services: Services) -> None:
    """An intake-like first check-in with every instrument and an emergency C-SSRS,
    then a follow-up with PHQ-9 and GAD-7 only."""
    sign_in(clinic.patient)
    first = checkin_body(phq9=[3, 3, 3, 3, 2, 2, 2, 2, 1], cssrs=HIGH_RISK_CSSRS)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=first).status_code == 201

    async def next_visit() -> int:
        async with services.transaction() as session:
            now = services.clock.now()
            visit = Visit(patient_id=clinic.patient.id, prescriber_id=clinic.prescriber.id,
                          kind=VisitKind.follow_up, scheduled_at=now + timedelta(hours=2),
                          duration_minutes=15, status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    second_visit = run(next_visit)
    services.clock.advance(timedelta(minutes=5))
    second = checkin_body(phq9=[1, 1, 1, 1, 0, 0, 0, 0, 0])
    for instrument in ("auditc", "asrm"):
        del second["responses"][instrument]
    assert client.post(f"/api/v1/visits/{second_visit}/checkin",
                       json=second).status_code == 201


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_measures_bundle_is_valid_fhir(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    two_checkins(client, clinic, sign_in, run, services)
    sign_in(clinic.prescriber)
    response = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    raw = response.json()

    bundle = get_fhir_model_class("Bundle").model_validate(raw)
    assert bundle.type == "collection"
    assert json_shape_problems(raw) == []
    for entry in raw["entry"]:
        resource = entry["resource"]
        model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert model.get_resource_type() == resource["resourceType"]
        assert entry["fullUrl"].startswith("urn:uuid:")
    full_urls = [e["fullUrl"] for e in raw["entry"]]
    assert len(set(full_urls)) == len(full_urls)

    answers = resources(raw, "QuestionnaireResponse")
    observations = resources(raw, "Observation")
    # One of each per instrument per check-in: 5 in the first, 2 in the second.
    assert len(answers) == 7 and len(observations) == 7
    for resource in answers + observations:
        assert resource["subject"] == {"reference": f"Patient/{clinic.patient.id}"}
    for observation in observations:
        assert observation["status"] == "final"
        assert observation["category"][0]["coding"][0]["system"] == SURVEY
        assert observation["category"][0]["coding"][0]["code"] == "survey"
        assert observation["derivedFrom"][0]["reference"] in full_urls


def test_observations_carry_the_loinc_totals(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    two_checkins(client, clinic, sign_in, run, services)
    sign_in(clinic.prescriber)
    raw = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    by_code: dict[str, list[Any]] = {}
    for observation in resources(raw, "Observation"):
        coding = observation["code"]["coding"][0]
        if coding["system"] == LOINC:
            by_code.setdefault(coding["code"], []).append(observation["valueInteger"])
    assert by_code == {"44261-6": [21, 4], "70274-6": [2, 2]}
    risk = [o["valueString"] for o in resources(raw, "Observation") if "valueString" in o]
    assert risk == ["high"]


def test_questionnaire_responses_hold_what_was_asked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    two_checkins(client, clinic, sign_in, run, services)
    sign_in(clinic.patient)  # the patient may export their own record
    raw = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    first = resources(raw, "QuestionnaireResponse")[:5]
    phq9 = next(r for r in first if r["questionnaire"].endswith("44249-1"))
    assert phq9["status"] == "completed"
    assert [i["linkId"] for i in phq9["item"]] == [
        *(f"phq9.{n}" for n in range(1, 10)), "phq9.difficulty"]
    assert phq9["item"][8]["answer"] == [{"valueInteger": 1}]
    cssrs = next(r for r in first if r["questionnaire"].endswith("cssrs"))
    # q6_recent was not asked (q6 is no), so it is left out rather than answered.
    assert [i["linkId"] for i in cssrs["item"]] == [
        "cssrs.q1", "cssrs.q2", "cssrs.q3", "cssrs.q4", "cssrs.q5", "cssrs.q6"]
    assert cssrs["item"][3]["answer"] == [{"valueBoolean": True}]


@pytest.mark.parametrize("who,status", [
    ("prescriber", 200), ("coordinator", 200), ("patient", 200), ("other_prescriber", 403),
    ("patient2", 403), ("admin", 403),
])
def test_fhir_export_access(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str, status: int
) -> None:
    sign_in(getattr(clinic, who))
    assert client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").status_code == status


def test_an_empty_bundle_follows_the_json_rules(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    raw = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    get_fhir_model_class("Bundle").model_validate(raw)
    assert json_shape_problems(raw) == []
