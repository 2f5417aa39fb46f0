"""The US state travels with the address wherever emergency information goes.

A coordinator sending help to "12 Elm Street, Springfield" needs to know which
Springfield: the state the patient named with the address is kept with it
(``emergency_info_for``, from the same confirmation, never an older one), copied onto
the open escalation when it is raised and at every later confirmation, given in the
JSON, and shown by its full name on the coordinator's pages and the note panel. Over the
real API on SQLite and PostgreSQL.
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server import checkins
from server.emergency_info import EmergencyInfo, KnownLocation
from server.models import Escalation, PatientProfile
from server.services import Services
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

SPRINGFIELD = {"location": {"address": "12 Elm Street, Springfield", "state": "MA"},
               "callback_phone": "(617) 555-0100"}
CONCORD = {"location": {"address": "4 Main Street, Concord", "state": "NH"},
           "callback_phone": "(603) 555-0101"}
# The C-SSRS screener half answered, with intent: the crisis path, where a place is
# kept without its state (server.checkins.require_state).
INTENT = {"q1": True, "q2": True, "q3": False, "q4": True}


def where_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/checkin/emergency-info"


def confirm(client: TestClient, visit_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(where_url(visit_id), json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def info_for(run: Runner, services: Services, patient_id: int) -> EmergencyInfo:
    async def go() -> EmergencyInfo:
        async with services.transaction() as session:
            return await checkins.emergency_info_for(session, services, patient_id)
    return run(go)


def stored_state(run: Runner, services: Services, escalation_id: int) -> str | None:
    async def go() -> str | None:
        async with services.transaction() as session:
            return await session.scalar(select(Escalation.location_state).where(
                Escalation.id == escalation_id))
    return run(go)


def shown(html: str, testid: str) -> list[str]:
    """The text of each element with this test id (its tags taken out)."""
    found = re.findall(rf'<dd data-testid="{testid}">(.*?)</dd>', html, re.S)
    return [" ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", text)).split())
            for text in found]


def raise_by_hand(client: TestClient, clinic: Clinic) -> dict[str, Any]:
    response = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "emergency",
        "reason": "suicidal_ideation_plan_or_intent"})
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def test_the_state_comes_from_the_latest_confirmation_with_its_address(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    confirm(client, clinic.visit_id, SPRINGFIELD)
    first = info_for(run, services, clinic.patient.id)
    assert first.location == KnownLocation(address="12 Elm Street, Springfield", state="MA")
    assert first.source == "checkin"

    services.clock.advance(timedelta(days=2))
    later = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                timedelta(hours=1))
    sign_in(clinic.patient)  # the first session has expired
    confirm(client, later, CONCORD)
    assert info_for(run, services, clinic.patient.id).location == KnownLocation(
        address="4 Main Street, Concord", state="NH")

    # A place confirmed on the crisis path without its state has no state: NH was given
    # with another address, and may not be this one's.
    services.clock.advance(timedelta(days=2))
    crisis = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                 timedelta(hours=1))
    sign_in(clinic.patient)
    draft = client.put(f"/api/v1/visits/{crisis}/checkin/draft",
                       json={"responses": {"cssrs": {"answers": INTENT}}})
    assert draft.status_code == 200, draft.text
    bus_station = {"location": {"address": "Bus station, 100 Pleasant Street, Concord"},
                   "callback_phone": "(603) 555-0101"}
    assert confirm(client, crisis, bus_station)["location"] == {
        "address": "Bus station, 100 Pleasant Street, Concord", "state": None}
    assert info_for(run, services, clinic.patient.id).location.state is None
    # ...and the form does not prefill the old state for the patient to confirm.
    state = client.get(f"/api/v1/visits/{crisis}/checkin").json()
    assert state["prefill"]["location"] == bus_station["location"] | {"state": None}


def test_only_the_profile_on_file_gives_no_place_and_no_state(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    async def give_phone() -> None:
        async with services.transaction() as session:
            profile = await session.get(PatientProfile, clinic.patient.id)
            assert profile is not None
            profile.phone = "+16175550199"

    run(give_phone)
    info = info_for(run, services, clinic.patient.id)
    assert info.source == "profile" and info.callback_phone == "+16175550199"
    assert info.location == KnownLocation(address=None, state=None)


def test_the_emergency_info_endpoints_carry_the_state(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    confirmed = confirm(client, clinic.visit_id, SPRINGFIELD)
    assert confirmed["location"] == SPRINGFIELD["location"]
    state = client.get(f"/api/v1/visits/{clinic.visit_id}/checkin").json()
    assert state["emergency_info"]["location"] == SPRINGFIELD["location"]
    assert state["prefill"]["location"] == SPRINGFIELD["location"]
    assert state["checkin"]["location"] == SPRINGFIELD["location"]


def test_an_escalation_holds_the_state_and_follows_a_new_one(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    confirm(client, clinic.visit_id, SPRINGFIELD)
    sign_in(clinic.prescriber)
    raised = raise_by_hand(client, clinic)
    assert raised["location"] == SPRINGFIELD["location"]
    assert stored_state(run, services, raised["id"]) == "MA"
    sign_in(clinic.coordinator)
    detail = client.get(f"/api/v1/escalations/{raised['id']}").json()
    assert detail["location"] == SPRINGFIELD["location"]
    [row] = client.get("/api/v1/escalations?status=open").json()["escalations"]
    assert row["location"] == SPRINGFIELD["location"]

    # The patient moves: the open escalation takes the new place with its state.
    services.clock.advance(timedelta(minutes=5))
    sign_in(clinic.patient)
    confirm(client, clinic.visit_id, CONCORD)
    sign_in(clinic.coordinator)
    moved = client.get(f"/api/v1/escalations/{raised['id']}").json()
    assert moved["location"] == CONCORD["location"]
    assert moved["timeline"][-1]["kind"] == "emergency_info_confirmed"
    assert stored_state(run, services, raised["id"]) == "NH"


def test_the_coordinator_and_the_note_panel_show_the_state_by_name(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    confirm(client, clinic.visit_id, SPRINGFIELD)
    sign_in(clinic.prescriber)
    raised = raise_by_hand(client, clinic)
    where = "12 Elm Street, Springfield — Massachusetts"

    sign_in(clinic.coordinator)
    assert shown(client.get(f"/escalations/{raised['id']}").text,
                 "escalation-location") == [where]
    assert where in shown(client.get("/coordinator").text, "escalation-location")

    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}").text
    # The emergency-mode box and the panel's emergency information block.
    assert shown(room, "emergency-location") == [where]
    assert shown(room, "escalation-location") == [where]
    assert 'data-testid="emergency-location-state" data-state="MA"' in room


def test_a_place_without_its_state_says_to_ask(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    draft = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft",
                       json={"responses": {"cssrs": {"answers": INTENT}}})
    [escalation_id] = draft.json()["escalations"]
    confirm(client, clinic.visit_id, {"location": {"address": "12 Elm Street, Springfield"},
                                      "callback_phone": "(617) 555-0100"})
    sign_in(clinic.coordinator)
    page = client.get(f"/escalations/{escalation_id}").text
    assert shown(page, "escalation-location") == [
        "12 Elm Street, Springfield (state not given: ask)"]
