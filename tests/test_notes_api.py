"""The visit note over the real API: saves, conflicts, the safety gate, signing,
addenda, the medication list, the summary, scheduling the next visit, audit."""

from __future__ import annotations

from typing import Any

import jsonschema
from sqlalchemy import select
from starlette.testclient import TestClient

from server import medications, notes
from server.api.openapi import build
from server.app import api_operations
from server.models import AuditEntry, OutboxEmail, Visit
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn


def note_url(clinic: Clinic) -> str:
    return f"/api/v1/visits/{clinic.visit_id}/note"


def save(client: TestClient, clinic: Clinic, version: int, **changes: Any) -> Any:
    body: dict[str, Any] = {"version": version, "sections": {"interval_history": "Better."}}
    body.update(changes)
    return client.put(note_url(clinic), json=body)


def sign(client: TestClient, url: str, version: int | None = None) -> Any:
    """Sign the note at ``url`` at ``version`` (by default the version it is at now)."""
    if version is None:
        version = client.get(url).json()["version"]
    return client.post(f"{url}/sign", json={"version": version})


def test_save_and_stale_version_conflict(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    note = client.get(note_url(clinic)).json()
    assert note["version"] == 0
    assert note["status"] == "draft"
    first = save(client, clinic, 0)
    assert first.status_code == 200
    assert first.json()["version"] == 1
    assert first.json()["sections"]["interval_history"] == "Better."
    # Another tab, still at version 0, does not overwrite: it gets the current note.
    stale = save(client, clinic, 0, sections={"interval_history": "Other tab"})
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert error["code"] == "version_conflict"
    assert error["current"]["version"] == 1
    assert error["current"]["sections"]["interval_history"] == "Better."
    merged = save(client, clinic, 1, sections={"interval_history": "Better. Other tab"})
    assert merged.json()["version"] == 2
    unknown = save(client, clinic, 2, sections={"gossip": "x"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "sections.gossip"


def test_only_the_care_teams_prescriber_writes(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.coordinator)
    assert client.get(note_url(clinic)).status_code == 200
    assert save(client, clinic, 0).status_code == 403
    sign_in(clinic.other_prescriber)
    assert client.get(note_url(clinic)).status_code == 403
    sign_in(clinic.patient)
    assert client.get(note_url(clinic)).status_code == 403


def test_sign_without_review_reason_then_locked_and_addendum(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body())
    sign_in(clinic.prescriber)
    assert client.get(note_url(clinic)).json()["safety_required"] is False
    save(client, clinic, 0)
    signed = sign(client, note_url(clinic), 1)
    assert signed.status_code == 200
    assert signed.json()["status"] == "signed"
    assert signed.json()["signed_by"]["id"] == clinic.prescriber.id
    version = signed.json()["version"]
    assert save(client, clinic, version).status_code == 409
    assert sign(client, note_url(clinic), version).status_code == 409
    addendum = client.post(f"{note_url(clinic)}/addenda", json={"text": "Labs ordered."})
    assert addendum.status_code == 201
    note = client.get(note_url(clinic)).json()
    assert note["sections"]["interval_history"] == "Better."
    assert [a["text"] for a in note["addenda"]] == ["Labs ordered."]

    async def actions() -> list[str]:
        async with services.transaction() as session:
            rows = await session.scalars(select(AuditEntry.action).where(
                AuditEntry.resource_type == "note", AuditEntry.action != "read")
                .order_by(AuditEntry.id))
            return list(rows.all())

    assert run(actions) == ["save", "sign", "addendum"]


def test_addendum_before_signing_is_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    response = client.post(f"{note_url(clinic)}/addenda", json={"text": "x"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "note_not_signed"


def test_safety_gate_with_a_review_reason(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                json=checkin_body(gad7=[3, 3, 3, 3, 3, 0, 0]))
    sign_in(clinic.prescriber)
    note = client.get(note_url(clinic)).json()
    assert note["safety_required"] is True
    assert note["safety_reasons"] == ["gad7_severe"]
    save(client, clinic, 0, sections={"safety_assessed": "Asked about SI; denies."})
    refused = sign(client, note_url(clinic), 1)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "safety_assessment_required"
    assert error["field"] == "sections.safety_risk_judgement"
    assert error["missing"] == ["safety_risk_judgement", "safety_plan"]
    save(client, clinic, 1, sections={
        "safety_assessed": "Asked about SI; denies.", "safety_risk_judgement": "low",
        "safety_plan": "Safety plan reviewed; 988 given."})
    assert sign(client, note_url(clinic), 2).status_code == 200


def test_signing_updates_the_medication_list_and_summary(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    start = {"action": "start", "drug": "Sertraline", "dose": "50", "unit": "mg",
             "route": "oral", "frequency": "daily", "reason": "Depression"}
    lithium = {"action": "start", "drug": "Lithium", "dose": "300", "unit": "mg",
               "route": "oral", "frequency": "twice daily", "reason": "Mood stabilisation"}
    saved = save(client, clinic, 0, medication_changes=[start, lithium],
                 sections={"plan": "Start sertraline.", "side_effect_actions":
                           "Call if nausea lasts more than a week."})
    assert saved.status_code == 200
    assert saved.json()["follow_up_default"]["days"] == 28
    assert sign(client, note_url(clinic), 1).status_code == 200
    meds = client.get(f"/api/v1/patients/{clinic.patient.id}/medications").json()
    by_drug = {m["drug"]: m for m in meds["medications"]}
    assert by_drug["Sertraline"]["dose"] == "50"
    assert by_drug["Sertraline"]["monitoring"] is None
    # Lithium's monitoring is the lab rules' (server/labs.py): the level 5-7 days after
    # the start, TSH, renal and calcium from 6 months; none due on the day it starts.
    monitoring = by_drug["Lithium"]["monitoring"]
    assert monitoring["what"] == "Lithium level, TSH, Creatinine/eGFR, Calcium"
    assert (monitoring["status"], monitoring["due"]) == ("upcoming", False)
    labs_due = client.get(f"/api/v1/patients/{clinic.patient.id}/labs").json()["monitoring"]
    assert monitoring["labs"] == labs_due["items"]  # the labs block's items, the same
    assert monitoring["due_on"] == min(item["due_on"] for item in labs_due["items"])
    assert by_drug["Sertraline"]["history"][0]["action"] == "start"

    # Next visit: a dose increase on a signed note of the patient's second visit.
    async def second_visit() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit2_id)
            assert visit is not None
            visit.patient_id = clinic.patient.id

    run(second_visit)
    increase = {"action": "increase", "drug": "sertraline", "dose": "100", "unit": "mg",
                "reason": "Partial response"}
    url2 = f"/api/v1/visits/{clinic.visit2_id}/note"
    assert client.put(url2, json={"version": 0, "medication_changes": [increase]}
                      ).status_code == 200
    assert sign(client, url2, 1).status_code == 200
    meds = client.get(f"/api/v1/patients/{clinic.patient.id}/medications").json()
    sertraline = next(m for m in meds["medications"] if m["drug"] == "Sertraline")
    assert sertraline["dose"] == "100"
    assert [h["action"] for h in sertraline["history"]] == ["start", "increase"]

    sign_in(clinic.patient)
    summary = client.get(f"/api/v1/visits/{clinic.visit_id}/summary").json()
    assert summary["medication_changes"][0]["drug"] == "Sertraline"
    assert summary["side_effect_actions"] == "Call if nausea lasts more than a week."
    assert "988" in summary["crisis_resources"]["lifeline"]


def test_bad_medication_rows_are_refused_at_signing(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    save(client, clinic, 0, medication_changes=[{"action": "stop", "drug": "Nothing"}])
    refused = sign(client, note_url(clinic), 1)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "medication_changes.0.drug"
    bad_action = save(client, clinic, 1, medication_changes=[{"action": "double",
                                                              "drug": "X"}])
    assert bad_action.status_code == 422
    assert bad_action.json()["error"]["field"] == "medication_changes.0.action"


def test_schedule_next_visit_from_the_panel(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/next-visit", json={"days": 14})
    assert response.status_code == 201
    body = response.json()
    assert body["days"] == 14

    async def invites() -> list[str]:
        async with services.transaction() as session:
            return list((await session.scalars(select(OutboxEmail.to_addr))).all())

    assert run(invites) == [clinic.patient.email]
    visits = client.get("/api/v1/visits").json()["visits"]
    assert body["id"] in [v["id"] for v in visits]


def test_summary_waits_for_the_signature(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    response = client.get(f"/api/v1/visits/{clinic.visit_id}/summary")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "summary_not_ready"


def test_reading_a_note_never_stores_one(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """A break-glass grant is read-only; so is every read: the empty draft a first read
    shows is stored by the first save, not by the read (issue 14)."""
    from server.models import VisitNote

    async def notes() -> list[VisitNote]:
        async with services.transaction() as session:
            return list((await session.scalars(select(VisitNote))).all())

    sign_in(clinic.admin)
    assert client.post("/api/v1/break-glass", json={
        "patient_id": clinic.patient.id,
        "reason": "Patient unreachable after a crisis call; care team away."}).status_code == 201
    for person in (clinic.admin, clinic.coordinator, clinic.prescriber):
        sign_in(person)
        read = client.get(note_url(clinic))
        assert read.status_code == 200, read.text
        note = read.json()
        assert (note["id"], note["version"], note["status"]) == (None, 0, "draft")
        assert note["addenda"] == [] and note["safety_addendum_task"] is None
    assert run(notes) == []
    saved = save(client, clinic, 0)
    assert saved.status_code == 200
    [row] = run(notes)
    assert (saved.json()["id"], saved.json()["version"]) == (row.id, 1)
    sign_in(clinic.admin)
    assert client.get(note_url(clinic)).json()["id"] == row.id


def test_the_note_bodies_are_described_with_their_vocabularies() -> None:
    # The sections, the risk judgements and the medication actions, from their one
    # definition: the models that check a save and an addendum are the document's.
    document = build(api_operations(), "test")
    schemas = document["components"]["schemas"]
    sections = schemas["NoteSections"]
    assert list(sections["properties"]) == list(notes.SECTIONS)
    assert sections["additionalProperties"] is False
    assert sections["properties"]["safety_risk_judgement"]["enum"] == [
        *notes.RISK_JUDGEMENTS, ""]
    assessment = schemas["SafetyAssessment"]
    assert assessment["properties"]["risk_judgement"]["enum"] == list(notes.RISK_JUDGEMENTS)
    assert assessment["required"] == ["risk_judgement"]
    assert schemas["MedicationChangeRow"]["properties"]["action"]["enum"] == list(
        medications.ACTIONS)
    body = document["paths"]["/api/v1/visits/{visit_id}/note"]["put"]["requestBody"]
    save = jsonschema.Draft202012Validator(
        {"components": document["components"], **body["content"]["application/json"]["schema"]})
    assert save.is_valid({"version": 0, "sections": {"plan": "Go on.",
                                                     "safety_risk_judgement": ""}})
    assert not save.is_valid({"version": 0, "sections": {"gossip": "x"}})
    assert not save.is_valid({"version": 0, "sections": {"safety_risk_judgement": "severe"}})
