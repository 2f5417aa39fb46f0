"""The safety workflow holds in every path (CLINICAL.md, "Safety workflow invariants").

Over the real API on SQLite and PostgreSQL, through drafts as the real form sends them,
two tabs at once and repeated saves: the visit's risk never drops and the triggering
answers stay on record (1); emergency information typed after the escalation reaches it
with its time (2); every new trigger on a taken escalation re-arms it (3); deadlines do
not move and re-alerts repeat on their own interval (4); an emergency is closed by
action (6); emergency information is real (8); concurrent drafts and completions give
one check-in, one completion and one set of scores, never a 500.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from escalation.deadlines import fire_due_timers
from server.auth import COOKIE_NAME
from server.models import (
    CheckIn,
    CheckInVersion,
    Escalation,
    EscalationTrigger,
    MeasureResult,
    OutboxEmail,
)
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

CALM_CSSRS = {"q1": False, "q2": False, "q3": None, "q4": None, "q5": None, "q6": False,
              "q6_recent": None}
INTENT = {"q1": True, "q2": True, "q3": False, "q4": True}  # the screener, half answered
# Without the state: taken on the crisis path only (server.checkins.require_state).
WHERE = {"location": {"address": "48 Harbor Road, Apt 3, Portland ME"},
         "callback_phone": "(207) 555-0142"}
PLACE = {**WHERE, "location": {**WHERE["location"], "state": "ME"}}


def draft_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/checkin/draft"


def checkin_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/checkin"


def where_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/checkin/emergency-info"


def draft(client: TestClient, visit_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(draft_url(visit_id), json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def complete(client: TestClient, visit_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(checkin_url(visit_id), json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def escalation(client: TestClient, escalation_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/escalations/{escalation_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def the_form_up_to_intent() -> list[dict[str, Any]]:
    """Drafts as the check-in form sends them, one per answer: PHQ-9 item by item
    (item 9 "nearly every day"), then the C-SSRS up to a "yes" to intent."""
    bodies = []
    answers: list[int | None] = [None] * 9
    for index, value in enumerate([2, 2, 1, 2, 1, 2, 1, 1, 3]):
        answers[index] = value
        bodies.append({"responses": {"phq9": {"answers": list(answers)}}, "sex": "female"})
    phq9 = {"answers": list(answers)}
    cssrs: dict[str, Any] = {}
    for key, value in INTENT.items():
        cssrs[key] = value
        bodies.append({"responses": {"phq9": phq9, "cssrs": {"answers": dict(cssrs)}},
                       "sex": "female"})
    return bodies


def count(run: Runner, services: Services, model: Any, *where: Any) -> int:
    async def go() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)
                                             .where(*where)) or 0)
    return run(go)


# --- 1. Risk only rises -----------------------------------------------------------------

def test_an_emergency_draft_then_a_calm_completion_keeps_the_risk_and_the_answers(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    for body in the_form_up_to_intent():
        saved = draft(client, clinic.visit_id, body)
    assert saved["level"] == "emergency" and saved["crisis"] is True
    [escalation_id] = saved["escalations"]
    # The patient goes back and changes every worrying answer, then sends it.
    calm = complete(client, clinic.visit_id, checkin_body(cssrs=CALM_CSSRS,
                                                          phq9=[0] * 9))
    assert calm["answers"]["level"] == "none"
    assert calm["level"] == "emergency"  # the visit's risk does not drop
    assert "cssrs_high" in calm["reasons"]
    assert calm["escalations"] == [escalation_id]
    sign_in(clinic.prescriber)
    stored = client.get(checkin_url(clinic.visit_id)).json()["checkin"]
    assert stored["level"] == "emergency"
    seen = {r["code"]: r for r in stored["reasons_seen"]}
    assert seen["cssrs_high"]["first_seen_kind"] == "draft"
    assert seen["cssrs_high"]["in_latest"] is False
    # Every saved version is kept: each answer's draft and the completion.
    assert count(run, services, CheckInVersion) == len(the_form_up_to_intent()) + 1
    # The escalation shows the answers that triggered it, as they were then.
    detail = escalation(client, escalation_id)
    assert detail["level"] == "emergency"
    assert detail["triggering"]["kind"] == "draft"
    assert detail["triggering"]["responses"]["cssrs"]["answers"]["q4"] is True
    assert detail["triggering"]["scores"]["cssrs"]["risk"] == "high"
    assert datetime.fromisoformat(detail["triggering"]["at"]) <= \
        datetime.fromisoformat(calm["completed_at"])


def test_a_lower_draft_never_lowers_the_stored_risk(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    high = draft(client, clinic.visit_id, {"responses": {"cssrs": {"answers": INTENT}}})
    assert high["level"] == "emergency"
    low = draft(client, clinic.visit_id, {"responses": {"cssrs": {"answers": CALM_CSSRS}}})
    assert low["draft_level"] == "none"
    assert low["level"] == "emergency" and low["crisis"] is True
    # The same draft again (a page hidden twice) is not a new version.
    again = draft(client, clinic.visit_id, {"responses": {"cssrs": {"answers": CALM_CSSRS}}})
    assert again["version"] == low["version"]


# --- 2. Where are you right now, first ----------------------------------------------------

def test_location_typed_after_the_emergency_reaches_the_escalation_with_its_time(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    for body in the_form_up_to_intent():
        saved = draft(client, clinic.visit_id, body)
    [escalation_id] = saved["escalations"]
    sign_in(clinic.coordinator)
    before = escalation(client, escalation_id)
    assert before["location"] == {"address": None, "state": None}
    assert before["emergency_confirmed_at"] is None
    sign_in(clinic.patient)
    confirmed = client.put(where_url(clinic.visit_id), json=WHERE)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["callback_phone"] == "+12075550142"
    assert confirmed.json()["source"] == "checkin"
    sign_in(clinic.coordinator)
    after = escalation(client, escalation_id)
    # On the crisis path the place is kept without its state (the screens say to ask).
    assert after["location"] == {**WHERE["location"], "state": None}
    assert after["callback_phone"] == "+12075550142"
    assert after["emergency_source"] == "checkin"
    assert after["emergency_confirmed_at"] == confirmed.json()["confirmed_at"]
    assert after["timeline"][-1]["kind"] == "emergency_info_confirmed"
    # The queue card and the prescriber's box show it with its time.
    queue = client.get("/coordinator").text
    assert "48 Harbor Road, Apt 3, Portland ME" in queue
    assert "Confirmed by the patient" in queue
    assert "+1 207-555-0142" in queue and 'href="tel:+12075550142"' in queue
    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}").text
    assert "48 Harbor Road, Apt 3, Portland ME" in room
    assert "location-not-confirmed" not in room
    # A later confirmation (the patient moved) updates it again.
    sign_in(clinic.patient)
    services.clock.advance(timedelta(minutes=3))
    moved = {**WHERE, "location": {"address": "Greyhound station, 950 Congress St",
                                   "state": "ME"}}
    assert client.put(where_url(clinic.visit_id), json=moved).status_code == 200
    sign_in(clinic.coordinator)
    latest = escalation(client, escalation_id)
    assert latest["location"] == moved["location"]
    assert [e["kind"] for e in latest["timeline"]].count("emergency_info_confirmed") == 2


def test_values_only_on_file_are_labelled_not_confirmed(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    # An earlier visit's confirmation, two days ago, is on file but not confirmed today.
    sign_in(clinic.patient)
    assert client.put(where_url(clinic.visit_id), json=PLACE).status_code == 200
    services.clock.advance(timedelta(days=2))

    visit_id = _second_visit(run, services, clinic)
    sign_in(clinic.patient)
    emergency_id = draft(client, visit_id, {"responses": {"cssrs": {"answers": INTENT}}})[
        "escalations"][0]
    sign_in(clinic.coordinator)
    found = escalation(client, emergency_id)
    assert found["location"] == PLACE["location"]
    assert found["emergency_source"] == "last_checkin"
    page = client.get(f"/escalations/{emergency_id}").text
    assert "Not confirmed today" in page
    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{visit_id}").text
    assert 'data-testid="location-not-confirmed"' in room


@pytest.mark.parametrize(("field", "body"), [
    ("location.address", {**WHERE, "location": {"address": "   "}}),
    ("location.address", {**WHERE, "location": {"address": "abc"}}),
    ("location.address", {**WHERE, "location": {"address": "--------"}}),
    ("location.address", {**WHERE, "location": {"address": "12345678"}}),
    ("callback_phone", {**WHERE, "callback_phone": "   "}),
    ("callback_phone", {**WHERE, "callback_phone": "abc"}),
    ("callback_phone", {**WHERE, "callback_phone": "---"}),
    ("callback_phone", {**WHERE, "callback_phone": "911"}),
    ("emergency_contact.name", {**WHERE, "emergency_contact": {"name": "J.",
                                                               "phone": "2075550143"}}),
    ("emergency_contact.phone", {**WHERE, "emergency_contact": {"name": "Jo Rivera",
                                                                "phone": "x"}}),
])
def test_emergency_information_is_real(
    client: TestClient, clinic: Clinic, sign_in: SignIn, field: str, body: dict[str, Any]
) -> None:
    sign_in(clinic.patient)
    for method, url, sent in [
        ("PUT", where_url(clinic.visit_id), body),
        ("PUT", draft_url(clinic.visit_id), {"responses": {}, **body}),
        ("POST", checkin_url(clinic.visit_id), {**checkin_body(), **body}),
    ]:
        response = client.request(method, url, json=sent)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["field"] == field
    assert client.get(checkin_url(clinic.visit_id)).json()["emergency_info"]["source"] is None


def test_emergency_phone_numbers_are_stored_in_e164(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    body = {**PLACE, "callback_phone": "207.555.0142 ",
            "emergency_contact": {"name": "  Jo Rivera ", "phone": "+44 20 7946 0958"}}
    found = client.put(where_url(clinic.visit_id), json=body).json()
    assert found["callback_phone"] == "+12075550142"
    assert found["emergency_contact"] == {"name": "Jo Rivera", "phone": "+442079460958"}


# --- 3. Every new trigger alerts ----------------------------------------------------------

def _second_visit(run: Runner, services: Services, clinic: Clinic) -> int:
    return run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
               timedelta(hours=3))


def emails(run: Runner, services: Services, address: str) -> int:
    return count(run, services, OutboxEmail, OutboxEmail.to_addr == address)


def test_a_new_check_in_re_arms_an_acknowledged_escalation(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    first = complete(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    [escalation_id] = first["escalations"]
    sign_in(clinic.coordinator)
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    assert client.post(f"{base}/events", json={"kind": "contact_attempt", "outcome": "reached",
                                               "text": "Talked, safe at home"}).status_code == 201
    alerted = emails(run, services, clinic.coordinator.email)
    services.clock.advance(timedelta(minutes=30))
    later = _second_visit(run, services, clinic)
    sign_in(clinic.patient)
    second = complete(client, later, checkin_body(cssrs=HIGH_RISK_CSSRS))
    assert second["escalations"] == [escalation_id]
    sign_in(clinic.coordinator)
    found = escalation(client, escalation_id)
    assert found["status"] == "open"
    assert found["visit_id"] == later
    armed = datetime.fromisoformat(found["armed_at"])
    assert datetime.fromisoformat(found["ack_due_at"]) == armed + timedelta(minutes=5)
    assert found["timeline"][-1]["kind"] == "rearmed"
    assert found["timeline"][-1]["checkin_id"] == second["id"]
    assert [t["effect"] for t in found["triggers"]] == ["raised", "rearmed"]
    assert found["triggers"][1]["checkin_id"] == second["id"]
    assert emails(run, services, clinic.coordinator.email) == alerted + 1
    # A reach before the re-arm does not close the new emergency.
    assert client.post(f"{base}/acknowledge").status_code == 200
    early = client.post(f"{base}/resolve", json={"disposition": "outpatient_follow_up",
                                                 "note": "Plan agreed with the patient"})
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "contact_required"


def test_saving_the_same_answers_again_alerts_nobody_twice(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    body = {"responses": {"cssrs": {"answers": INTENT}}}
    [escalation_id] = draft(client, clinic.visit_id, body)["escalations"]
    sign_in(clinic.coordinator)
    assert client.post(f"/api/v1/escalations/{escalation_id}/acknowledge").status_code == 200
    alerted = emails(run, services, clinic.coordinator.email)
    sign_in(clinic.patient)
    # More answers in the same check-in, nothing newly worrying; then the completion.
    draft(client, clinic.visit_id, {**body, "sleep": {"hours": 4}})
    complete(client, clinic.visit_id, checkin_body(cssrs={**INTENT, "q3": False,
                                                           "q5": False, "q6": False}))
    sign_in(clinic.coordinator)
    assert escalation(client, escalation_id)["status"] == "acknowledged"
    assert emails(run, services, clinic.coordinator.email) == alerted


def test_a_manual_raise_re_arms_and_its_text_is_never_dropped(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    raise_body = {"patient_id": clinic.patient.id, "visit_id": clinic.visit_id,
                  "level": "urgent", "reason": "psychosis",
                  "text": "Hearing voices telling him to leave home"}
    first = client.post("/api/v1/escalations", json=raise_body).json()
    sign_in(clinic.coordinator)
    client.post(f"/api/v1/escalations/{first['id']}/acknowledge")
    sign_in(clinic.prescriber)
    plan = "Now says he has a plan to jump from the bridge"
    again = client.post("/api/v1/escalations", json={
        **raise_body, "level": "emergency", "reason": "other", "text": plan})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first["id"]
    found = again.json()
    assert found["status"] == "open" and found["level"] == "emergency"
    assert "Hearing voices" in found["reason_text"]
    assert "plan to jump" in found["reason_text"]
    assert [t["text"] for t in found["triggers"]] == [raise_body["text"], plan]
    short = client.post("/api/v1/escalations", json={**raise_body, "reason": "other",
                                                     "text": "..."})
    assert short.status_code == 422 and short.json()["error"]["field"] == "text"


# --- 4. Deadlines do not move ----------------------------------------------------------

def test_the_deadline_stays_and_re_alerts_repeat_on_their_own_interval(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    [escalation_id] = complete(client, clinic.visit_id,
                               checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"]
    sign_in(clinic.coordinator)
    due = escalation(client, escalation_id)["ack_due_at"]
    for _ in range(14):
        services.clock.advance(timedelta(minutes=1))
        run(fire_due_timers, services)
    sign_in(clinic.coordinator)
    found = escalation(client, escalation_id)
    assert found["ack_due_at"] == due
    assert found["realerts"] == 2  # at 5 and 10 minutes
    assert [e["kind"] for e in found["timeline"]].count("realert") == 2
    card = client.get("/coordinator?part=queue").text
    assert "Overdue by 9 min" in card
    assert "Acknowledge within" not in card


@pytest.mark.parametrize("settings_overrides", [{"realert_urgent_minutes": 15}])
def test_urgent_re_alerts_every_fifteen_minutes_before_its_hour(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    created = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "level": "urgent", "reason": "mania"}).json()
    fired = []
    for minute in range(1, 61):
        services.clock.advance(timedelta(minutes=1))
        if run(fire_due_timers, services):
            fired.append(minute)
    assert fired == [15, 30, 45, 60]
    sign_in(clinic.coordinator)
    found = escalation(client, created["id"])
    assert found["ack_due_at"] == created["ack_due_at"]


# --- 6. An emergency is closed by action ----------------------------------------------

def _taken_emergency(client: TestClient, clinic: Clinic, sign_in: SignIn) -> str:
    sign_in(clinic.patient)
    [escalation_id] = complete(client, clinic.visit_id,
                               checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"]
    sign_in(clinic.coordinator)
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    return base


@pytest.mark.parametrize("reason", [".", "\u200b" * 30, "ok!!!!!!!!!!!", "1234567890"])
def test_an_emergency_is_never_closed_with_no_action(
    client: TestClient, clinic: Clinic, sign_in: SignIn, reason: str
) -> None:
    base = _taken_emergency(client, clinic, sign_in)
    for body in ({"disposition": "no_action_needed", "note": reason, "reason": reason},
                 {"disposition": "no_action_needed", "note": "Spoke with her at length",
                  "reason": "She is safe now, no plan"}):
        response = client.post(f"{base}/resolve", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "disposition"
    short = client.post(f"{base}/resolve", json={"disposition": "mobile_crisis",
                                                 "note": reason})
    assert short.status_code == 422 and short.json()["error"]["field"] == "note"
    assert client.get(base).json()["status"] == "acknowledged"


def test_an_emergency_needs_a_reached_contact_or_help_sent(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    base = _taken_emergency(client, clinic, sign_in)
    inpatient = {"disposition": "inpatient", "note": "Admitted to the county hospital"}
    refused = client.post(f"{base}/resolve", json=inpatient)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_required"
    client.post(f"{base}/events", json={"kind": "contact_attempt", "outcome": "no_answer"})
    assert client.post(f"{base}/resolve", json=inpatient).status_code == 409
    client.post(f"{base}/events", json={"kind": "contact_attempt", "outcome": "reached"})
    assert client.post(f"{base}/resolve", json=inpatient).status_code == 200


def test_help_sent_closes_an_emergency_without_a_call(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    base = _taken_emergency(client, clinic, sign_in)
    done = client.post(f"{base}/resolve", json={
        "disposition": "emergency_services", "note": "911 dispatched to the address given"})
    assert done.status_code == 200, done.text


def test_step_up_may_close_with_no_action_and_a_real_reason(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    created = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "level": "step_up", "reason": "relapse"}).json()
    sign_in(clinic.coordinator)
    base = f"/api/v1/escalations/{created['id']}"
    client.post(f"{base}/acknowledge")
    body = {"disposition": "no_action_needed", "note": "Reviewed with the team"}
    assert client.post(f"{base}/resolve", json={**body, "reason": "n/a"}).status_code == 422
    done = client.post(f"{base}/resolve", json={
        **body, "reason": "Already in an intensive outpatient program"})
    assert done.status_code == 200, done.text


# --- Races: two tabs, double clicks ---------------------------------------------------

async def _at_once(app: Starlette, cookie: str, csrf: str,
                   requests: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver",
                                  cookies={COOKIE_NAME: cookie},
                                  headers={"X-CSRF-Token": csrf}) as http:
        responses = await asyncio.gather(*(http.request(method, url, json=body)
                                           for method, url, body in requests))
    return [r.status_code for r in responses]


def test_five_tabs_send_the_first_draft_at_once(
    client: TestClient, app: Starlette, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    body = {"responses": {"cssrs": {"answers": INTENT}}}
    statuses = run(_at_once, app, cookie, csrf, [("PUT", draft_url(clinic.visit_id), body)] * 5)
    assert statuses == [200] * 5
    assert count(run, services, CheckIn) == 1
    assert count(run, services, CheckInVersion) == 1  # the same draft five times
    assert count(run, services, Escalation) == 1
    assert count(run, services, EscalationTrigger) == 1


def test_five_tabs_complete_one_check_in_at_once(
    client: TestClient, app: Starlette, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    draft(client, clinic.visit_id, {"responses": {"phq9": {"answers": [1] * 9}}})
    body = checkin_body(cssrs=HIGH_RISK_CSSRS)
    statuses = run(_at_once, app, cookie, csrf,
                   [("POST", checkin_url(clinic.visit_id), body)] * 5)
    assert sorted(statuses) == [201, 409, 409, 409, 409]
    assert count(run, services, CheckIn) == 1
    assert count(run, services, MeasureResult) == len(body["responses"])
    assert count(run, services, CheckInVersion, CheckInVersion.kind == "completion") == 1
    assert count(run, services, Escalation) == 1


def test_two_patients_tabs_racing_a_manual_raise_keep_one_open_escalation(
    client: TestClient, app: Starlette, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    csrf = sign_in(clinic.prescriber)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    raise_body = {"patient_id": clinic.patient.id, "level": "emergency",
                  "reason": "overdose_risk", "text": "Says she took the whole bottle"}
    statuses = run(_at_once, app, cookie, csrf,
                   [("POST", "/api/v1/escalations", raise_body)] * 4)
    assert statuses == [201] * 4
    assert count(run, services, Escalation) == 1
    assert count(run, services, EscalationTrigger) == 4
