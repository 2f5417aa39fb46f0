"""The check-in over the real API: drafts, completion, scoring, window, measures, FHIR."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, CheckIn, MeasureResult, Visit
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn


def url(clinic: Clinic) -> str:
    return f"/api/v1/visits/{clinic.visit_id}/checkin"


def test_instruments_are_listed_with_loinc(client: TestClient) -> None:
    body = client.get("/api/v1/instruments").json()
    ids = [i["id"] for i in body["instruments"]]
    assert ids == ["phq9", "gad7", "cssrs", "auditc", "asrm", "fibser", "bam"]
    phq9 = body["instruments"][0]
    assert phq9["loinc"] == {"panel": "44249-1", "total": "44261-6"}
    assert len([i for i in phq9["items"] if i["required"]]) == 9


def test_triage_is_stateless_and_needs_no_sign_in(client: TestClient) -> None:
    response = client.post("/api/v1/triage", json={"responses": {
        "phq9": {"answers": [0, 0, 0, 0, 0, 0, 0, 0, 1]}}})
    assert response.status_code == 200
    assert response.json()["level"] == "urgent"
    assert response.json()["requires"] == ["cssrs"]
    bad = client.post("/api/v1/triage", json={"responses": {
        "phq9": {"answers": [0, 0, 0, 0, 0, 0, 0, 0, 4]}}})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "responses.phq9.answers.8"


def test_complete_checkin_stores_scores_and_checks_in_the_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    state = client.get(url(clinic)).json()
    assert state["open"] is True
    assert state["needs"] == ["phq9", "gad7", "auditc", "asrm"]
    response = client.post(url(clinic), json=checkin_body(gad7=[3, 3, 3, 3, 3, 0, 0]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scores"]["phq9"]["total"] == 4
    assert body["scores"]["gad7"] == {"total": 15, "severity": "severe", "gad2": 6,
                                      "gad2_positive": True}
    assert body["level"] == "review"
    assert body["reasons"] == ["gad7_severe"]
    assert body["escalations"] == []

    async def stored() -> tuple[str, str | None, list[str], str | None]:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            checkin = await session.scalar(select(CheckIn))
            kinds = (await session.scalars(select(MeasureResult.instrument)
                                           .order_by(MeasureResult.id))).all()
            assert visit is not None and checkin is not None
            return visit.status.value, checkin.level, list(kinds), checkin.callback_phone

    assert run(stored) == ("checked_in", "review", ["phq9", "gad7", "auditc", "asrm"],
                           "+16175550100")
    again = client.post(url(clinic), json=checkin_body())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "checkin_completed"


def test_missing_emergency_information_is_named(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    body = checkin_body()
    del body["callback_phone"]
    response = client.post(url(clinic), json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "callback_phone"


def test_urgent_checkin_is_stored_even_with_missing_parts(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    body = checkin_body(cssrs=HIGH_RISK_CSSRS)
    del body["location"]
    response = client.post(url(clinic), json=body)
    assert response.status_code == 201
    assert response.json()["level"] == "emergency"
    assert response.json()["missing"] == ["location.address", "location.state"]


@pytest.mark.parametrize("change,field", [
    ({"side_effects": [{"effect": "headache", "severity": "mild"}]}, "side_effects.0.effect"),
    ({"missed_doses": {"days_missed": 9}}, "missed_doses.days_missed"),
    ({"sleep": {"hours": "lots"}}, "sleep.hours"),
    ({"sex": "other"}, "sex"),
    ({"surprise": 1}, "surprise"),
])
def test_non_scored_parts_are_validated(
    client: TestClient, clinic: Clinic, sign_in: SignIn, change: dict[str, object], field: str
) -> None:
    sign_in(clinic.patient)
    response = client.post(url(clinic), json={**checkin_body(), **change})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_draft_with_item9_is_triaged_and_stored_at_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    draft = {"responses": {"phq9": {"answers": [1, 1, 1, 1, 1, 1, 1, 1, 2]}}}
    response = client.put(f"{url(clinic)}/draft", json=draft)
    assert response.status_code == 200
    body = response.json()
    assert body["crisis"] is True
    assert body["level"] == "urgent"
    assert body["requires"] == ["cssrs"]

    async def stored() -> tuple[str | None, list[str] | None]:
        async with services.transaction() as session:
            checkin = await session.scalar(select(CheckIn))
            assert checkin is not None
            return checkin.level, checkin.reasons

    assert run(stored) == ("urgent", ["phq9_item9_unassessed"])
    # A later draft that looks calmer does not erase the stored risk.
    client.put(f"{url(clinic)}/draft", json={"responses": {}})
    assert run(stored) == ("urgent", ["phq9_item9_unassessed"])
    # And the draft comes back for the page to resume from.
    assert client.get(url(clinic)).json()["checkin"]["data"] == {"responses": {}}


def test_window_opens_72_hours_before(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    async def move(days: int) -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            visit.scheduled_at = services.clock.now() + timedelta(days=days)

    run(move, 4)
    sign_in(clinic.patient)
    response = client.post(url(clinic), json=checkin_body())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "checkin_not_open"
    run(move, 2)
    assert client.post(url(clinic), json=checkin_body()).status_code == 201


def test_only_the_patient_submits_and_staff_read(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert client.post(url(clinic), json=checkin_body()).status_code == 403
    sign_in(clinic.patient2)
    assert client.post(url(clinic), json=checkin_body()).status_code == 403
    sign_in(clinic.patient)
    client.post(url(clinic), json=checkin_body())
    sign_in(clinic.prescriber)
    data = client.get(url(clinic)).json()
    assert data["checkin"]["emergency_contact"]["name"] == "Taylor Rivera"

    async def reads() -> int:
        async with services.transaction() as session:
            rows = await session.scalars(select(AuditEntry).where(
                AuditEntry.resource_type == "checkin", AuditEntry.action == "read",
                AuditEntry.actor_id == clinic.prescriber.id))
            return len(rows.all())

    assert run(reads) == 1


def test_measures_trend_and_fhir_bundle(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    client.post(url(clinic), json=checkin_body(phq9=[3, 3, 3, 3, 2, 2, 2, 2, 0]))

    async def next_visit() -> int:
        async with services.transaction() as session:
            visit = Visit(patient_id=clinic.patient.id, prescriber_id=clinic.prescriber.id,
                          kind="follow_up", scheduled_at=services.clock.now(),
                          created_at=services.clock.now())
            session.add(visit)
            await session.flush()
            return visit.id

    second = run(next_visit)
    services.clock.advance(timedelta(minutes=5))
    response = client.post(f"/api/v1/visits/{second}/checkin",
                           json=checkin_body(phq9=[1, 1, 1, 1, 0, 0, 0, 0, 0]))
    assert response.status_code == 201
    sign_in(clinic.prescriber)
    measures = client.get(f"/api/v1/patients/{clinic.patient.id}/measures").json()
    phq9 = next(m for m in measures["measures"] if m["id"] == "phq9")
    assert phq9["baseline"] == 20
    assert [p["total"] for p in phq9["points"]] == [20, 4]
    assert phq9["points"][1]["response"] is True
    assert phq9["points"][1]["remission"] is True
    bundle = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    assert bundle["resourceType"] == "Bundle"
    codes = [e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]
             if e["resource"]["resourceType"] == "Observation"]
    assert codes.count("44261-6") == 2
    assert codes.count("70274-6") == 2
    sign_in(clinic.other_prescriber)
    assert client.get(f"/api/v1/patients/{clinic.patient.id}/measures").status_code == 403


def test_auditc_never_completes_with_questions_two_and_three_not_asked(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    draft = client.put(f"{url(clinic)}/draft", json={"responses": {
        "auditc": {"answers": [0, None, None]}}})
    assert draft.status_code == 200, draft.text
    done = client.post(url(clinic), json=checkin_body(auditc=[0, None, None]))
    assert done.status_code == 201, done.text
    assert done.json()["scores"]["auditc"] == {"total": 0, "positive": False}
    # Kept as the patient sent it: not asked, not answered "1 or 2 drinks".
    stored = client.get(url(clinic)).json()["checkin"]
    assert stored["data"]["responses"]["auditc"] == {"answers": [0, None, None]}
    # The export leaves the unasked questions out rather than answering them.
    sign_in(clinic.prescriber)
    bundle = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    auditc_items = [item["linkId"] for entry in bundle["entry"]
                    if entry["resource"]["resourceType"] == "QuestionnaireResponse"
                    for item in entry["resource"].get("item", [])
                    if item["linkId"].startswith("auditc.")]
    assert auditc_items == ["auditc.1"]


def test_auditc_needs_questions_two_and_three_after_any_drinking(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    refused = client.post(url(clinic), json=checkin_body(auditc=[2, None, None]))
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "responses.auditc.answers.1"
