"""The US state in the check-in form's location question (issue 19).

The prescribing rules of the state the patient is in apply to a controlled substance
(server.controlled), so every confirmation of where the patient is names the state
(``server.checkins.require_state``: 422 naming ``location.state``, in the words of the
``/visits/{id}/where`` step), except on the crisis path: once the visit's risk is urgent
or higher the address and callback are kept without it and the flow goes on. The state
chosen so far is kept with the draft like any answer, and the form offers the last one
given. The flow in Chromium is in tests/test_browser_checkin.py.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server.emergency_info import STATE_MISSING
from server.models import CheckIn
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_checkin_pages import add_visit, read

ADDRESS = "40 Pearl Street, Albany"
WHERE: dict[str, Any] = {"location": {"address": ADDRESS}, "callback_phone": "518 555 0100"}


def api(visit_id: int, tail: str = "") -> str:
    return f"/api/v1/visits/{visit_id}/checkin{tail}"


def stored(run: Runner, services: Services, visit_id: int) -> CheckIn | None:
    async def find() -> CheckIn | None:
        async with services.transaction() as session:
            found: CheckIn | None = await session.scalar(
                select(CheckIn).where(CheckIn.visit_id == visit_id))
            return found

    return run(find)


def refused_for_state(response: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "location.state"
    assert response.json()["error"]["message"] == STATE_MISSING


def chosen_state(html: str) -> str | None:
    """The option the form's state list has selected (None: the list is not there)."""
    select_tag = re.search(r'<select id="location-state".*?</select>', html, re.S)
    if select_tag is None:
        return None
    found = re.search(r'<option value="(\w*)" selected>', select_tag.group(0))
    return found.group(1) if found else ""


def test_a_confirmation_without_the_state_is_refused_and_nothing_is_confirmed(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    # The form's own step, the completion, and a draft that carries the place.
    refused_for_state(client.put(api(clinic.visit_id, "/emergency-info"), json=WHERE))
    body = checkin_body()
    body["location"] = {"address": ADDRESS}
    refused_for_state(client.post(api(clinic.visit_id), json=body))
    refused_for_state(client.put(api(clinic.visit_id, "/draft"),
                                 json={"responses": {}, **WHERE}))
    checkin = stored(run, services, clinic.visit_id)
    assert checkin is None or checkin.location_confirmed_at is None
    # Not a code that is no state at all.
    wrong = client.put(api(clinic.visit_id, "/emergency-info"),
                       json={**WHERE, "location": {"address": ADDRESS, "state": "XX"}})
    assert (wrong.status_code, wrong.json()["error"]["field"]) == (422, "location.state")

    confirmed = client.put(api(clinic.visit_id, "/emergency-info"),
                           json={**WHERE, "location": {"address": ADDRESS, "state": "ny"}})
    assert confirmed.status_code == 200, confirmed.text
    checkin = stored(run, services, clinic.visit_id)
    assert checkin is not None and checkin.location_confirmed_at is not None
    assert checkin.location_state == "NY"


def test_the_completion_stores_the_state_the_signing_gate_reads(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    body = checkin_body()
    body["location"] = {"address": ADDRESS, "state": "NY"}
    done = client.post(api(clinic.visit_id), json=body)
    assert done.status_code == 201, done.text
    assert done.json()["missing"] == []
    checkin = stored(run, services, clinic.visit_id)
    assert checkin is not None and checkin.location_state == "NY"
    assert checkin.location_confirmed_at is not None


def test_a_draft_keeps_the_state_chosen_without_confirming_anything(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    saved = client.put(api(clinic.visit_id, "/draft"),
                       json={"responses": {}, "location": {"state": "VT"}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["location_confirmed_at"] is None
    checkin = stored(run, services, clinic.visit_id)
    assert checkin is not None
    assert checkin.data["location"] == {"state": "VT"}
    assert (checkin.location_state, checkin.location_confirmed_at) == (None, None)
    # The form shows the state chosen, and no address made up from the draft.
    html = client.get(f"/visits/{clinic.visit_id}/checkin").text
    assert chosen_state(html) == "VT"
    assert read(html).by_id["location-address"]["tag"] == "textarea"
    # A state that is none is refused, as any answer of the wrong kind would be.
    bad = client.put(api(clinic.visit_id, "/draft"),
                     json={"responses": {}, "location": {"state": "Narnia"}})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "location.state")


def test_the_state_is_prefilled_from_last_time(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    first = client.get(api(clinic.visit_id)).json()
    assert first["prefill"]["location"] == {"address": None, "state": None}
    assert chosen_state(client.get(f"/visits/{clinic.visit_id}/checkin").text) == ""
    body = checkin_body()
    body["location"] = {"address": ADDRESS, "state": "NY"}
    assert client.post(api(clinic.visit_id), json=body).status_code == 201

    later = add_visit(run, services, clinic)
    state = client.get(api(later)).json()
    assert state["prefill"]["location"] == {"address": ADDRESS, "state": "NY"}
    page = client.get(f"/visits/{later}/checkin").text
    assert chosen_state(page) == "NY"
    # Labelled, with its hint and an error line for the script to tie to it.
    form = read(page)
    assert form.by_id["location-state"]["aria-describedby"] == "location-state-hint"
    assert 'for="location-state"' in page
    assert "location-state-error" in form.by_id
    assert form.by_id["checkin-form"]["data-state-missing"] == STATE_MISSING


def test_on_the_crisis_path_the_place_is_kept_without_the_state(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    emergency = client.put(api(clinic.visit_id, "/draft"), json={
        "responses": {"cssrs": {"answers": {"q1": True, "q2": True, "q4": True}}}})
    assert emergency.status_code == 200 and emergency.json()["crisis"] is True
    confirmed = client.put(api(clinic.visit_id, "/emergency-info"), json=WHERE)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["confirmed_at"] is not None
    checkin = stored(run, services, clinic.visit_id)
    assert checkin is not None
    assert (checkin.location_address, checkin.callback_phone) == (ADDRESS, "+15185550100")
    assert checkin.location_state is None  # the controlled-substance gate refuses
    # The completion goes through too, and names what is still missing.
    body = checkin_body(cssrs=HIGH_RISK_CSSRS)
    del body["location"]
    done = client.post(api(clinic.visit_id), json=body)
    assert done.status_code == 201, done.text
    assert done.json()["missing"] == ["location.state"]


def test_a_draft_that_reaches_urgent_may_carry_the_place_without_the_state(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    saved = client.put(api(clinic.visit_id, "/draft"), json={
        "responses": {"phq9": {"answers": [0, 0, 0, 0, 0, 0, 0, 0, 2]}}, **WHERE})
    assert saved.status_code == 200, saved.text
    assert saved.json()["crisis"] is True
    assert saved.json()["location_confirmed_at"] is not None


def test_the_where_step_needs_no_state_on_the_crisis_path(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    data = {"csrf_token": csrf, "address": ADDRESS, "state": "",
            "callback_phone": "518 555 0100", "confirm": "yes"}
    where = f"/visits/{clinic.visit_id}/where"
    asked = client.post(where, data=data, follow_redirects=False)
    assert asked.status_code == 422
    assert STATE_MISSING in read(asked.text).text
    assert client.put(api(clinic.visit_id, "/draft"), json={
        "responses": {"cssrs": {"answers": {"q1": True, "q2": True, "q4": True}}}},
    ).json()["crisis"] is True
    went = client.post(where, data=data, follow_redirects=False)
    assert (went.status_code, went.headers["location"]) == (303, f"/visits/{clinic.visit_id}")
