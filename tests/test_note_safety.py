"""The signing gate has no side door, and the follow-up matches the risk (CLINICAL.md,
safety workflow invariants 6 and 7, "Follow-up cadence matched to risk").

Over the real API on SQLite and PostgreSQL: the gate through drafts and through a manual
escalation, assessments that are not words, the risk judgement's list, the version a
sign names, a sign racing an autosave that blanks the safety text, a check-in after
signing (the task, the prescriber's day, the addendum that closes it), the day view's
emergency badge, and every row of the follow-up table.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from escalation.vocabulary import DISPOSITIONS
from server.auth import COOKIE_NAME
from server.followup import HIGHER_CARE
from server.freetext import letters
from server.models import (
    AuditEntry,
    SafetyAddendumTask,
    Visit,
    VisitNote,
    VisitStatus,
)
from server.notes import RISK_JUDGEMENTS
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn
from tests.signaling_support import connect, cookie_of

ASSESSED = "Asked about ideation, intent, plan, means and protective factors."
PLAN = "Safety plan reviewed with the patient; 988 and 911 given; firearms locked away."
ASSESSMENT = {"safety_assessed": ASSESSED, "safety_risk_judgement": "moderate",
              "safety_plan": PLAN}
SEVERE_ANXIETY = [3, 3, 3, 3, 3, 0, 0]  # GAD-7 15: gad7_severe, level review


def note_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/note"


def save(client: TestClient, visit_id: int, version: int, sections: dict[str, str],
         **more: Any) -> Any:
    return client.put(note_url(visit_id), json={"version": version, "sections": sections,
                                                **more})


def sign(client: TestClient, visit_id: int, version: int) -> Any:
    return client.post(f"{note_url(visit_id)}/sign", json={"version": version})


def note(client: TestClient, visit_id: int) -> dict[str, Any]:
    response = client.get(note_url(visit_id))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def raise_manual(client: TestClient, clinic: Clinic, level: str, *,
                 reason: str = "suicidal_ideation_plan_or_intent",
                 visit_id: int | None = None) -> int:
    raised = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "visit_id": visit_id, "level": level,
        "reason": reason, "text": "Told me during the visit that they have a plan."})
    assert raised.status_code == 201, raised.text
    escalation_id: int = raised.json()["id"]
    return escalation_id


def resolve(client: TestClient, escalation_id: int, disposition: str) -> None:
    """Acknowledge, reach the patient and resolve (as whoever is signed in)."""
    url = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{url}/acknowledge").status_code == 200
    reached = client.post(f"{url}/events", json={
        "kind": "contact_attempt", "outcome": "reached",
        "text": "Reached the patient on the callback number."})
    assert reached.status_code == 201, reached.text
    resolved = client.post(f"{url}/resolve", json={
        "disposition": disposition,
        "note": "Patient safe; arranged the level of care with the family."})
    assert resolved.status_code == 200, resolved.text


def new_visit(run: Runner, services: Services, clinic: Clinic, *,
              at: timedelta = timedelta(hours=1),
              status: VisitStatus = VisitStatus.scheduled) -> int:
    return run(add_visit, services, clinic.patient.id, clinic.prescriber.id, at, status)


def move_visit(run: Runner, services: Services, visit_id: int, at: timedelta) -> None:
    async def move() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            visit.scheduled_at = services.clock.now() + at

    run(move)


# --- the gate --------------------------------------------------------------------------


def test_an_emergency_draft_gates_a_calm_completion(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    checkin = f"/api/v1/visits/{clinic.visit_id}/checkin"
    draft = client.put(f"{checkin}/draft", json={"responses": {
        "phq9": {"answers": [1, 1, 1, 1, 1, 1, 1, 1, 2]},
        "cssrs": {"answers": HIGH_RISK_CSSRS}}})
    assert draft.status_code == 200, draft.text
    assert draft.json()["level"] == "emergency"
    calm = client.post(checkin, json=checkin_body())
    assert calm.status_code == 201, calm.text
    escalation_id = calm.json()["escalations"][0] if calm.json()["escalations"] else None

    sign_in(clinic.prescriber)
    if escalation_id is None:
        escalation_id = client.get("/api/v1/escalations?status=open").json()[
            "escalations"][0]["id"]
    # Even once the escalation is closed, the draft's reason stays with the visit.
    resolve(client, escalation_id, "emergency_services")
    found = note(client, clinic.visit_id)
    assert found["safety_required"] is True
    assert "cssrs_high" in found["safety_reasons"]
    assert "escalation_open" not in found["safety_reasons"]
    assert found["safety_missing"] == ["safety_assessed", "safety_risk_judgement",
                                       "safety_plan"]
    saved = save(client, clinic.visit_id, 0, {"interval_history": "Calm today."})
    refused = sign(client, clinic.visit_id, saved.json()["version"])
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "safety_assessment_required"
    assert error["field"] == "sections.safety_assessed"
    assert "cssrs_high" in error["reasons"]
    saved = save(client, clinic.visit_id, 1, ASSESSMENT)
    assert sign(client, clinic.visit_id, 2).status_code == 200


def test_a_review_reason_seen_only_in_a_draft_still_gates(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    checkin = f"/api/v1/visits/{clinic.visit_id}/checkin"
    assert client.put(f"{checkin}/draft", json={"responses": {
        "gad7": {"answers": SEVERE_ANXIETY}}}).status_code == 200
    assert client.post(checkin, json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    found = note(client, clinic.visit_id)
    assert (found["safety_required"], found["safety_reasons"]) == (True, ["gad7_severe"])
    assert sign(client, clinic.visit_id, 0).json()["error"]["code"] == \
        "safety_assessment_required"


def test_a_manual_emergency_escalation_gates_without_a_checkin(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert note(client, clinic.visit_id)["safety_required"] is False
    escalation_id = raise_manual(client, clinic, "emergency", visit_id=clinic.visit_id)
    found = note(client, clinic.visit_id)
    assert found["safety_required"] is True
    assert found["safety_reasons"] == ["escalation_open", "suicidal_ideation_plan_or_intent"]
    assert found["safety_escalation"]["id"] == escalation_id
    assert (found["safety_escalation"]["level"], found["safety_escalation"]["source"]) == (
        "emergency", "manual")
    # Every visit of the patient is gated: the escalation is the patient's, not a visit's.
    assert note(client, new_visit(run, services, clinic))["safety_required"] is True
    assert note(client, clinic.visit2_id)["safety_required"] is False  # patient2's
    refused = sign(client, clinic.visit_id, 0)
    assert refused.status_code == 409
    assert refused.json()["error"]["field"] == "sections.safety_assessed"
    assert "escalation_open" in refused.json()["error"]["reasons"]

    page = client.get(f"/visits/{clinic.visit_id}").text
    assert 'data-testid="safety-why"' in page
    assert "An open escalation (raised by hand): Suicidal" in page
    assert '<select id="note-safety_risk_judgement"' in page
    for judgement in RISK_JUDGEMENTS:
        assert f'<option value="{judgement}">' in page

    saved = save(client, clinic.visit_id, 0, ASSESSMENT)
    signed = sign(client, clinic.visit_id, saved.json()["version"])
    assert signed.status_code == 200, signed.text
    assert signed.json()["sections"]["safety_risk_judgement"] == "moderate"


@pytest.mark.parametrize("text", [".", "\u200b" * 20, "ok ok", "1234567890 !!!", " " * 40,
                                  "a.b.c.d.e.f.g.h.i", "\u200bno\u200bway\u200b"])
@pytest.mark.parametrize("section", ["safety_assessed", "safety_plan"])
def test_an_assessment_must_be_words(
    client: TestClient, clinic: Clinic, sign_in: SignIn, section: str, text: str
) -> None:
    sign_in(clinic.prescriber)
    raise_manual(client, clinic, "urgent", reason="relapse")
    # While drafting, any text is kept.
    saved = save(client, clinic.visit_id, 0, {**ASSESSMENT, section: text})
    assert saved.status_code == 200
    assert saved.json()["sections"][section] == text
    assert saved.json()["safety_missing"] == [section]
    refused = sign(client, clinic.visit_id, 1)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["field"], error["missing"]) == (
        "safety_assessment_required", f"sections.{section}", [section])
    assert note(client, clinic.visit_id)["status"] == "draft"


@pytest.mark.parametrize("judgement", ["Low risk.", "LOW", "none", "severe", "low ", "high!"])
def test_an_unknown_risk_judgement_is_refused_on_save(
    client: TestClient, clinic: Clinic, sign_in: SignIn, judgement: str
) -> None:
    sign_in(clinic.prescriber)
    refused = save(client, clinic.visit_id, 0, {"safety_risk_judgement": judgement})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "sections.safety_risk_judgement"
    version = 0
    for allowed in ("", *RISK_JUDGEMENTS):
        saved = save(client, clinic.visit_id, version, {"safety_risk_judgement": allowed})
        assert saved.status_code == 200, saved.text
        version = saved.json()["version"]


def test_the_risk_judgement_is_required_to_sign(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    raise_manual(client, clinic, "step_up", reason="relapse")
    save(client, clinic.visit_id, 0, {**ASSESSMENT, "safety_risk_judgement": ""})
    refused = sign(client, clinic.visit_id, 1).json()["error"]
    assert (refused["field"], refused["missing"]) == ("sections.safety_risk_judgement",
                                                      ["safety_risk_judgement"])


# --- the version a sign names -----------------------------------------------------------


def test_a_sign_names_the_version_it_saw(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    url = f"{note_url(clinic.visit_id)}/sign"
    no_body = client.post(url)
    assert no_body.status_code == 422
    assert no_body.json()["error"]["field"] == "version"
    for body in ({}, {"version": None}, {"version": "1"}, {"version": -1},
                 {"version": 1, "extra": True}):
        response = client.post(url, json=body)
        assert response.status_code == 422, body
    saved = save(client, clinic.visit_id, 0, {"plan": "Continue sertraline."})
    assert saved.json()["version"] == 1
    # Another tab saved since this one looked: the sign of version 1 is refused.
    save(client, clinic.visit_id, 1, {"plan": "Stop sertraline."})
    stale = sign(client, clinic.visit_id, 1)
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert (error["code"], error["field"]) == ("version_conflict", "version")
    assert error["current"]["version"] == 2
    assert error["current"]["sections"]["plan"] == "Stop sertraline."
    assert sign(client, clinic.visit_id, 3).status_code == 409  # a version not yet made
    assert note(client, clinic.visit_id)["status"] == "draft"
    signed = sign(client, clinic.visit_id, 2)
    assert signed.status_code == 200
    assert (signed.json()["status"], signed.json()["version"]) == ("signed", 3)
    assert signed.json()["sections"]["plan"] == "Stop sertraline."


async def _race(app: Starlette, cookie: str, csrf: str, visit_ids: list[int],
                ) -> list[tuple[int, int, int]]:
    """Per visit: a sign of version 1 (complete assessment) and an autosave of version 1
    that blanks the safety text, sent at once; the sign first in even rounds."""
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    outcomes = []
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver",
                                  cookies={COOKIE_NAME: cookie},
                                  headers={"X-CSRF-Token": csrf}) as http:
        for index, visit_id in enumerate(visit_ids):
            url = note_url(visit_id)
            blank = {"version": 1, "sections": {**ASSESSMENT, "safety_assessed": "",
                                                 "safety_plan": " . \u200b"}}
            signing = http.post(f"{url}/sign", json={"version": 1})
            blanking = http.put(url, json=blank)
            if index % 2:
                saved, signed = await asyncio.gather(blanking, signing)
            else:
                signed, saved = await asyncio.gather(signing, blanking)
            outcomes.append((visit_id, signed.status_code, saved.status_code))
    return outcomes


ROUNDS = 24


def test_a_sign_racing_an_autosave_never_signs_blank_safety_text(
    app: Starlette, client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services,
) -> None:
    sign_in(clinic.prescriber)
    raise_manual(client, clinic, "emergency")  # gates every visit of the patient
    visit_ids = [new_visit(run, services, clinic) for _ in range(ROUNDS)]
    for visit_id in visit_ids:
        assert save(client, visit_id, 0, ASSESSMENT).json()["version"] == 1
    cookie = client.cookies.get(COOKIE_NAME)
    csrf = client.headers["X-CSRF-Token"]
    assert cookie

    outcomes = run(_race, app, cookie, csrf, visit_ids)

    async def notes() -> dict[int, VisitNote]:
        async with services.transaction() as session:
            rows = await session.scalars(select(VisitNote).where(
                VisitNote.visit_id.in_(visit_ids)))
            return {n.visit_id: n for n in rows.all()}

    stored = run(notes)
    signed_first = blanked_first = 0
    for visit_id, signed, saved in outcomes:
        assert {signed, saved} <= {200, 409}, (signed, saved)
        assert sorted([signed, saved]) == [200, 409], (signed, saved)  # exactly one wins
        row = stored[visit_id]
        if signed == 200:
            signed_first += 1
            assert row.status.value == "signed"
            assert letters(row.sections["safety_assessed"]) >= 10
            assert letters(row.sections["safety_plan"]) >= 10
            assert row.sections["safety_risk_judgement"] in RISK_JUDGEMENTS
        else:
            blanked_first += 1
            assert row.status.value == "draft"
            assert row.sections["safety_assessed"] == ""
    # Both orders happened: the test exercised each side of the race.
    assert signed_first and blanked_first, (signed_first, blanked_first)


# --- a check-in after signing -------------------------------------------------------------


def test_a_checkin_after_signing_needs_an_addendum_with_an_assessment(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    save(client, clinic.visit_id, 0, {"plan": "Continue sertraline 50 mg."})
    assert sign(client, clinic.visit_id, 1).status_code == 200
    assert note(client, clinic.visit_id)["safety_addendum_task"] is None

    prescriber = cookie_of(sign_in, clinic.prescriber)
    with connect(client, "/ws/events", prescriber) as events:
        events.expect("subscribed")
        sign_in(clinic.patient)
        late = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                           json=checkin_body(gad7=SEVERE_ANXIETY))
        assert late.status_code == 201, late.text
        needed = events.expect("note.addendum_needed")
        assert needed["visit_id"] == clinic.visit_id

    sign_in(clinic.prescriber)
    found = note(client, clinic.visit_id)
    task = found["safety_addendum_task"]
    assert task["reasons"] == ["gad7_severe"]
    assert task["since"]
    assert found["status"] == "signed"

    # At the top of the prescriber's day, in words, with a link to the note.
    day = client.get("/day")
    assert day.status_code == 200
    html = day.text
    assert "Addendum needed" in html
    assert 'data-testid="addendum-due"' in html
    assert f'data-task-id="{task["id"]}"' in html
    assert clinic.patient.name in html.split("Addendum needed")[1]
    assert "Severe anxiety (GAD-7 15 or more)" in html
    assert f'href="/visits/{clinic.visit_id}#addenda"' in html
    assert html.index("Addendum needed") < html.index('data-day-list')
    sign_in(clinic.other_prescriber)
    assert "Addendum needed" not in client.get("/day").text

    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}").text
    assert 'data-testid="addendum-task"' in room
    fieldset = re.search(r'<fieldset id="addendum-safety"[^>]*>', room)
    assert fieldset and "hidden" not in fieldset.group(0)  # offered while the task is open
    addenda = f"{note_url(clinic.visit_id)}/addenda"
    # A plain addendum is still an addendum; the task stays open.
    plain = client.post(addenda, json={"text": "Called the pharmacy about the refill."})
    assert plain.status_code == 201
    assert plain.json()["closed_task_id"] is None
    assert plain.json()["safety"] is None
    # The addendum's words and its assessment are checked like the gate.
    for body, field in [
        ({"text": "."}, "text"),
        ({"text": "Reassessed.", "safety_assessment": {"assessed": ".", "risk_judgement":
                                                      "low", "plan": PLAN}},
         "safety_assessment.assessed"),
        ({"text": "Reassessed.", "safety_assessment": {"assessed": ASSESSED,
                                                      "risk_judgement": "severe",
                                                      "plan": PLAN}},
         "safety_assessment.risk_judgement"),
        ({"text": "Reassessed.", "safety_assessment": {"assessed": ASSESSED,
                                                      "risk_judgement": "low",
                                                      "plan": "\u200b" * 30}},
         "safety_assessment.plan"),
        ({"text": "Reassessed.", "safety_assessment": {"assessed": ASSESSED}},
         "safety_assessment.risk_judgement"),
    ]:
        refused = client.post(addenda, json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["field"] == field
    assert note(client, clinic.visit_id)["safety_addendum_task"]["id"] == task["id"]

    with connect(client, "/ws/events", prescriber) as events:
        events.expect("subscribed")
        sign_in(clinic.prescriber)
        done = client.post(addenda, json={
            "text": "Reassessed after the late check-in by phone.",
            "safety_assessment": {"assessed": ASSESSED, "risk_judgement": "low",
                                  "plan": PLAN}})
        assert done.status_code == 201, done.text
        assert done.json()["closed_task_id"] == task["id"]
        closed = events.expect("note.addendum_task_done")
        assert closed["task_id"] == task["id"]

    found = note(client, clinic.visit_id)
    assert found["safety_addendum_task"] is None
    assert found["addenda"][-1]["safety"] == {"assessed": ASSESSED, "risk_judgement": "low",
                                              "plan": PLAN}
    assert found["addenda"][0]["safety"] is None
    assert "Addendum needed" not in client.get("/day").text

    async def stored() -> tuple[SafetyAddendumTask, list[str]]:
        async with services.transaction() as session:
            row = await session.get(SafetyAddendumTask, task["id"])
            assert row is not None
            actions = await session.scalars(select(AuditEntry.action).where(
                AuditEntry.resource_type == "safety_addendum_task",
                AuditEntry.action != "read").order_by(AuditEntry.id))
            return row, list(actions.all())

    row, actions = run(stored)
    assert row.done_at is not None
    assert (row.done_by_id, row.addendum_id) == (clinic.prescriber.id, done.json()["id"])
    assert actions == ["create", "complete"]


# --- the day view's emergency badge -------------------------------------------------------


def test_the_days_emergency_badge_links_to_the_escalation_and_goes_when_resolved(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    raised = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                         json=checkin_body(cssrs=HIGH_RISK_CSSRS))
    escalation_id = raised.json()["escalations"][0]
    sign_in(clinic.prescriber)
    html = client.get("/day").text
    assert (f'<a class="safety-flag level-emergency" href="/escalations/{escalation_id}"'
            in html)
    assert f'data-escalation-id="{escalation_id}"' in html

    prescriber = cookie_of(sign_in, clinic.prescriber)
    with connect(client, "/ws/events", prescriber) as events:
        events.expect("subscribed")
        sign_in(clinic.prescriber)
        resolve(client, escalation_id, "emergency_services")
        # What day-live.js takes the badge away on.
        events.expect("escalation.updated", where=lambda m: m.get("status") == "resolved"
                      and m.get("escalation_id") == escalation_id)
    assert 'data-testid="safety-flag"' not in client.get("/day").text


# --- follow-up cadence ----------------------------------------------------------------------


def default_days(client: TestClient, visit_id: int) -> tuple[int, str]:
    cadence = note(client, visit_id)["follow_up_default"]
    return cadence["days"], cadence["reason"]


def test_higher_care_dispositions_are_dispositions() -> None:
    assert set(HIGHER_CARE) <= set(DISPOSITIONS)


@pytest.mark.parametrize("level", ["emergency", "urgent"])
def test_an_open_urgent_or_emergency_escalation_means_7_days(
    client: TestClient, clinic: Clinic, sign_in: SignIn, level: str
) -> None:
    sign_in(clinic.prescriber)
    raise_manual(client, clinic, level)
    assert default_days(client, clinic.visit_id) == (
        7, "An urgent or emergency escalation is open.")


def test_inpatient_resolved_since_the_last_visit_means_7_days_from_the_resolution(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    for _ in range(3):  # calm and mild for 3 visits: "stable", were it not for the stay
        visit_id = new_visit(run, services, clinic)
        assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                           json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, clinic.visit_id)[0] == 90
    resolve(client, raise_manual(client, clinic, "emergency"), "inpatient")
    # Resolved now; this visit is in an hour: 7 days from the resolution is 6 whole days
    # from the visit.
    days, reason = default_days(client, clinic.visit_id)
    assert days == 6
    assert "inpatient" in reason
    # Signing takes the default: never "stable, 90 days" after an inpatient stay.
    save(client, clinic.visit_id, 0, ASSESSMENT)
    assert sign(client, clinic.visit_id, 1).json()["follow_up_days"] == 6
    # A visit 10 days after the resolution: the next one at once (at least 1 day).
    later = new_visit(run, services, clinic, at=timedelta(days=10))
    assert default_days(client, later)[0] == 1
    # A visit 3 days after: what is left of the 7 days, in whole days (3 days, 23 hours
    # and some minutes: 3).
    move_visit(run, services, later, timedelta(days=3))
    assert default_days(client, later)[0] == 3


@pytest.mark.parametrize("disposition", list(HIGHER_CARE))
def test_every_higher_level_of_care_shortens_the_follow_up(
    client: TestClient, clinic: Clinic, sign_in: SignIn, disposition: str
) -> None:
    sign_in(clinic.prescriber)
    resolve(client, raise_manual(client, clinic, "urgent"), disposition)
    assert default_days(client, clinic.visit_id)[0] == 6


def test_a_resolution_before_the_previous_visit_is_not_since_the_last_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    resolve(client, raise_manual(client, clinic, "emergency"), "inpatient")
    # The patient was seen after the discharge (the 7-day follow-up happened).
    new_visit(run, services, clinic, at=timedelta(minutes=30), status=VisitStatus.completed)
    days, reason = default_days(client, clinic.visit_id)
    assert (days, reason) == (28, "Standard follow-up (not yet stable for 3 visits).")


def test_never_stable_while_an_escalation_is_open_or_just_resolved(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    for _ in range(3):
        visit_id = new_visit(run, services, clinic)
        assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                           json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, clinic.visit_id) == (
        90, "Stable: no change and scores mild or better at the last 3 visits.")
    escalation_id = raise_manual(client, clinic, "step_up", reason="relapse")
    days, reason = default_days(client, clinic.visit_id)
    assert days == 28 and reason.startswith("Not stable")
    resolve(client, escalation_id, "outpatient_follow_up")
    days, reason = default_days(client, clinic.visit_id)
    assert days == 28 and reason.startswith("Not stable")


def test_a_medication_change_means_28_days(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    start = {"action": "start", "drug": "Sertraline", "dose": "50", "unit": "mg",
             "reason": "Depression"}
    saved = save(client, clinic.visit_id, 0, {}, medication_changes=[start])
    assert saved.json()["follow_up_default"] == {
        "days": 28, "reason": "A medication was started, switched or its dose changed."}


@pytest.mark.parametrize(("body", "why"), [
    (checkin_body(phq9=[2, 2, 1, 1, 1, 1, 1, 1, 0]), "moderate"),      # PHQ-9 10
    (checkin_body(gad7=[2, 2, 2, 2, 2, 0, 0]), "moderate"),            # GAD-7 10
    (checkin_body(phq9=[3, 3, 3, 3, 3, 3, 2, 0, 0]), "step_up"),       # PHQ-9 20
])
def test_step_up_or_moderate_scores_mean_28_days(
    client: TestClient, clinic: Clinic, sign_in: SignIn, body: dict[str, Any], why: str
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=body
                       ).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, clinic.visit_id) == (
        28, "A step-up reason, or PHQ-9/GAD-7 moderate or worse.")


def test_stable_for_3_visits_means_90_days_but_not_with_a_safety_reason(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    visits = [new_visit(run, services, clinic) for _ in range(2)]
    for visit_id in visits:
        assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                           json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, clinic.visit_id)[0] == 28  # 2 visits: not yet stable
    sign_in(clinic.patient)
    # Mild scores, but risky drinking (a review reason) at the third.
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body(auditc=[2, 1, 1])).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, clinic.visit_id)[0] == 28
    sign_in(clinic.patient)
    fourth = new_visit(run, services, clinic)
    fifth = new_visit(run, services, clinic)
    for visit_id in (fourth, fifth):
        assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                           json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, fifth)[0] == 28  # the drinking is within the last 3
    sign_in(clinic.patient)
    sixth = new_visit(run, services, clinic)
    assert client.post(f"/api/v1/visits/{sixth}/checkin",
                       json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert default_days(client, sixth)[0] == 90
