"""The note's "for the patient" section and the summary it feeds, the summary's preview
before signing, and the read-only sign check that the in-page confirmation asks first
(real app, real database)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, VisitNote
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

PLAN = "Titrate sertraline; consider augmentation with aripiprazole if no response."
FOR_PATIENT = "<script>alert('x')</script> Take the new dose with breakfast & call us."
SAFETY = {"safety_assessed": "Ideation, intent, plan and means asked about",
          "safety_risk_judgement": "low",
          "safety_plan": "Safety plan reviewed, crisis numbers given"}


def note_url(clinic: Clinic) -> str:
    return f"/api/v1/visits/{clinic.visit_id}/note"


def save(client: TestClient, clinic: Clinic, version: int, **sections: str) -> Any:
    saved = client.put(note_url(clinic), json={"version": version, "sections": sections})
    assert saved.status_code == 200, saved.text
    return saved.json()


def check(client: TestClient, clinic: Clinic, version: int) -> Any:
    return client.post(f"{note_url(clinic)}/sign-check", json={"version": version})


def raise_manual(client: TestClient, clinic: Clinic) -> None:
    raised = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "emergency",
        "reason": "suicidal_ideation_plan_or_intent",
        "text": "Told me during the visit that they have a plan."})
    assert raised.status_code == 201, raised.text


def test_the_patient_section_round_trips(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    assert client.get(note_url(clinic)).json()["sections"]["for_patient"] == ""
    saved = save(client, clinic, 0, plan=PLAN, for_patient=FOR_PATIENT)
    assert saved["sections"]["for_patient"] == FOR_PATIENT
    again = client.get(note_url(clinic)).json()
    assert again["sections"]["for_patient"] == FOR_PATIENT
    assert again["sections"]["plan"] == PLAN
    too_long = client.put(note_url(clinic), json={
        "version": saved["version"], "sections": {"for_patient": "x" * 20_001}})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["field"] == "sections.for_patient"


def test_the_summary_shows_the_patient_section_and_never_the_plan(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    saved = save(client, clinic, 0, plan=PLAN, assessment="MDD, partial response.",
                 for_patient=FOR_PATIENT, **SAFETY)
    assert client.post(f"{note_url(clinic)}/sign",
                       json={"version": saved["version"]}).status_code == 200
    sign_in(clinic.patient)
    summary = client.get(f"/api/v1/visits/{clinic.visit_id}/summary")
    assert summary.status_code == 200
    assert summary.json()["for_patient"] == FOR_PATIENT
    assert "plan" not in summary.json()
    assert "aripiprazole" not in summary.text
    page = client.get(f"/visits/{clinic.visit_id}/summary").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Take the new dose with " \
           "breakfast &amp; call us." in page
    assert "<script>alert" not in page
    for clinical in ("aripiprazole", "partial response", "Ideation, intent",
                     "crisis numbers given"):
        assert clinical not in page


def test_a_note_signed_without_the_patient_section_says_the_clinician_follows_up(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    saved = save(client, clinic, 0, plan=PLAN, **SAFETY)
    assert client.post(f"{note_url(clinic)}/sign",
                       json={"version": saved["version"]}).status_code == 200
    sign_in(clinic.patient)
    page = client.get(f"/visits/{clinic.visit_id}/summary").text
    assert "Your clinician will follow up with you about the plan for your care." in page
    assert "aripiprazole" not in page


def test_the_preview_is_the_summary_from_the_draft(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    url = f"/visits/{clinic.visit_id}/summary/preview"
    sign_in(clinic.prescriber)
    empty = client.get(url)
    assert empty.status_code == 200
    assert "Your clinician will follow up" in empty.text
    save(client, clinic, 0, plan=PLAN, for_patient=FOR_PATIENT)
    preview = client.get(url)
    assert preview.status_code == 200
    assert "<html" not in preview.text  # a fragment for the editor, not a page
    assert "Take the new dose with breakfast &amp; call us." in preview.text
    assert "<script>alert" not in preview.text
    assert "aripiprazole" not in preview.text
    assert 'id="summary-plan-preview"' in preview.text
    # The draft stays a draft; the patient's own summary is still not ready.
    sign_in(clinic.patient)
    assert client.get(url).status_code == 403
    assert client.get(f"/api/v1/visits/{clinic.visit_id}/summary").status_code == 409

    async def reads() -> list[AuditEntry]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuditEntry).where(
                AuditEntry.resource_type == "after_visit_summary",
                AuditEntry.actor_id == clinic.prescriber.id))).all())

    assert len(run(reads)) >= 2


def test_the_sign_check_gives_the_gate_a_sign_would_refuse_with(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    sign_in(clinic.prescriber)
    raise_manual(client, clinic)
    saved = save(client, clinic, 0, plan=PLAN, safety_assessed="Asked.")
    checked = check(client, clinic, saved["version"])
    assert checked.status_code == 200, checked.text
    found = checked.json()
    assert found["ready"] is False
    assert found["safety_required"] is True
    assert found["missing"] == ["safety_assessed", "safety_risk_judgement", "safety_plan"]
    refused = client.post(f"{note_url(clinic)}/sign", json={"version": saved["version"]})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "safety_assessment_required"
    assert (found["reasons"], found["missing"]) == (error["reasons"], error["missing"])
    assert "escalation_open" in found["reasons"]

    async def stored() -> tuple[int, str]:
        async with services.transaction() as session:
            note = await session.scalar(select(VisitNote).where(
                VisitNote.visit_id == clinic.visit_id))
            assert note is not None
            return note.version, note.status.value

    # Read only: asking changed nothing.
    assert run(stored) == (saved["version"], "draft")
    # A stale version is a conflict, as for the sign.
    stale = check(client, clinic, saved["version"] - 1)
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    assert client.post(f"{note_url(clinic)}/sign-check", content=b"").status_code == 422
    done = save(client, clinic, saved["version"], plan=PLAN, **SAFETY)
    ready = check(client, clinic, done["version"]).json()
    assert (ready["ready"], ready["safety_required"], ready["missing"]) == (True, True, [])
    assert client.post(f"{note_url(clinic)}/sign",
                       json={"version": done["version"]}).status_code == 200
    signed = check(client, clinic, done["version"] + 1)
    assert signed.status_code == 409
    assert signed.json()["error"]["code"] == "note_signed"


def test_without_a_gate_the_sign_check_is_ready(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    # Never saved: the empty draft at version 0.
    found = check(client, clinic, 0).json()
    assert found == {"version": 0, "ready": True, "safety_required": False, "reasons": [],
                     "missing": []}
    sign_in(clinic.coordinator)
    assert check(client, clinic, 0).status_code == 403
