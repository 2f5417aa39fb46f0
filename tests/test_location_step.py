"""The patient's emergency path on the server side (CLINICAL.md invariants 2, 8, 9, 10).

- "Where are you right now?" before the room (``web/pages/where.py``): the room sends a
  patient there until the location and callback are confirmed today; staff never; the
  form post validates as strictly as the API (422, the message next to the field) and
  confirms through the same domain function.
- 988 and 911 on every page a patient or a guest can see, and not on staff pages.
- The check-in page carries the triage rules that its script applies on the device.

Pages are read as HTML, as a browser without JavaScript gets them; the flows run in
Chromium in tests/test_browser_emergency_path.py.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.auth import make_join_token
from server.guests import token_hash
from server.models import AuditEntry, CheckIn, Visit, VisitGuest, VisitStatus
from server.services import Services
from server.triage import Reason
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_checkin_pages import Page, add_visit, read

ADDRESS = "14 Harbor Road, Springfield"


def room(client: TestClient, visit_id: int) -> Any:
    return client.get(f"/visits/{visit_id}", follow_redirects=False)


def post_where(client: TestClient, visit_id: int, csrf: str, **fields: str) -> Any:
    data = {"csrf_token": csrf, "address": ADDRESS, "state": "MA",
            "callback_phone": "(617) 555-0123", "confirm": "yes", **fields}
    return client.post(f"/visits/{visit_id}/where", data=data, follow_redirects=False)


def stored_checkin(run: Runner, services: Services, visit_id: int) -> CheckIn | None:
    async def find() -> CheckIn | None:
        async with services.transaction() as session:
            found: CheckIn | None = await session.scalar(
                select(CheckIn).where(CheckIn.visit_id == visit_id))
            return found

    return run(find)


def described_by(page: Page, element_id: str) -> list[str]:
    return str(page.by_id[element_id].get("aria-describedby") or "").split()


# --- the room waits for the location step ---------------------------------------------


def test_an_unconfirmed_patient_is_sent_to_the_location_step(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    response = room(client, clinic.visit_id)
    assert response.status_code == 303
    assert response.headers["location"] == f"/visits/{clinic.visit_id}/where"
    page = read(client.get(response.headers["location"]).text)
    for test_id in ("where-address", "where-callback", "where-confirm", "where-submit"):
        assert any(attrs.get("data-testid") == test_id for _, attrs in page.tags), test_id
    assert "Where are you right now?" in page.text
    # Labelled fields, a CSRF token, a plain form post that needs no JavaScript.
    labelled = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
    assert {"where-address", "where-callback"} <= labelled
    form = next(attrs for tag, attrs in page.tags if tag == "form" and
                attrs.get("action") == f"/visits/{clinic.visit_id}/where")
    assert form["method"] == "post"
    assert page.values("csrf_token") != {""}
    assert not [attrs for tag, attrs in page.tags if tag == "script" and
                "where" in str(attrs.get("src"))]


@pytest.mark.parametrize("who", ["prescriber", "coordinator"])
def test_staff_enter_the_room_without_the_location_step(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str
) -> None:
    sign_in(getattr(clinic, who))
    assert room(client, clinic.visit_id).status_code == 200


@pytest.mark.parametrize("who,status", [
    ("patient2", 403), ("prescriber", 403), ("coordinator", 403), ("admin", 403),
])
def test_the_location_step_is_the_patients_own(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str, status: int
) -> None:
    csrf = sign_in(getattr(clinic, who))
    assert client.get(f"/visits/{clinic.visit_id}/where").status_code == status
    assert post_where(client, clinic.visit_id, csrf).status_code == status


def test_an_ended_visit_shows_the_room_without_the_step(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    ended = add_visit(run, services, clinic, at=services.clock.now() - timedelta(days=1),
                      status=VisitStatus.completed)
    sign_in(clinic.patient)
    assert room(client, ended).status_code == 200
    assert client.get(f"/visits/{ended}/where", follow_redirects=False).headers[
        "location"] == f"/visits/{ended}"


# --- the form post ---------------------------------------------------------------------


def test_confirming_stores_the_location_with_its_time_and_opens_the_room(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    before = services.clock.now()
    response = post_where(client, clinic.visit_id, csrf)
    after = services.clock.now()
    assert response.status_code == 303
    assert response.headers["location"] == f"/visits/{clinic.visit_id}"
    assert room(client, clinic.visit_id).status_code == 200

    checkin = stored_checkin(run, services, clinic.visit_id)
    assert checkin is not None
    assert (checkin.location_address, checkin.callback_phone) == (ADDRESS, "+16175550123")
    assert checkin.location_state == "MA"  # the state the controlled-substance rules read
    assert checkin.location_confirmed_at is not None
    assert before <= checkin.location_confirmed_at <= after
    assert checkin.status.value == "draft"  # the rest of the check-in is still to do
    info = client.get(f"/api/v1/visits/{clinic.visit_id}/checkin").json()["emergency_info"]
    assert info["location"] == {"address": ADDRESS, "state": "MA"}
    assert info["callback_phone"] == "+16175550123"
    assert info["source"] == "checkin"
    assert datetime.fromisoformat(info["confirmed_at"]) == checkin.location_confirmed_at

    async def audited() -> list[AuditEntry]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "confirm_emergency_info"))).all())

    [entry] = run(audited)
    assert (entry.actor_id, entry.patient_id) == (clinic.patient.id, clinic.patient.id)

    # Shown again (the patient may come back to change it): confirmed, with the time.
    page = read(client.get(f"/visits/{clinic.visit_id}/where").text)
    assert "You confirmed this today at" in page.text
    assert page.values("callback_phone") == {"+1 617-555-0123"}


@pytest.mark.parametrize("fields,errors", [
    ({"address": "abc"}, {"address"}),
    ({"address": "12345678"}, {"address"}),   # no letters: not a place to send help
    ({"callback_phone": "call me"}, {"callback-phone"}),
    ({"callback_phone": "12"}, {"callback-phone"}),
    ({"confirm": ""}, {"confirm"}),
    # Every new confirmation on this step names the state (server.controlled reads it).
    ({"state": ""}, {"state"}),
    ({"state": "ZZ"}, {"state"}),
    ({"address": "", "callback_phone": "", "confirm": ""}, {"address", "callback-phone",
                                                             "confirm"}),
])
def test_a_wrong_answer_comes_back_with_the_message_next_to_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    fields: dict[str, str], errors: set[str],
) -> None:
    csrf = sign_in(clinic.patient)
    response = post_where(client, clinic.visit_id, csrf, **fields)
    assert response.status_code == 422
    page = read(response.text)
    shown = {key.removeprefix("where-").removesuffix("-error") for key in page.by_id
             if key.startswith("where-") and key.endswith("-error")}
    assert shown == errors
    for name in errors:
        field_id = {"address": "where-address", "callback-phone": "where-callback",
                    "state": "where-state", "confirm": None}[name]
        if field_id:
            assert f"where-{name}-error" in described_by(page, field_id)
            assert page.by_id[field_id]["aria-invalid"] == "true"
    if "address" in errors:
        assert "at least 8 characters" in page.text
    # What was typed is kept, and nothing is stored.
    assert page.values("address") == {fields.get("address", ADDRESS)}
    assert stored_checkin(run, services, clinic.visit_id) is None
    assert room(client, clinic.visit_id).status_code == 303


def test_the_form_needs_its_csrf_token(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    assert post_where(client, clinic.visit_id, "not-the-token").status_code == 403
    assert room(client, clinic.visit_id).status_code == 303


def test_the_step_is_prefilled_from_the_last_values_and_says_they_are_not_confirmed_today(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    assert room(client, clinic.visit_id).status_code == 200  # just confirmed
    services.clock.advance(timedelta(hours=services.settings.location_confirm_hours + 1))
    later = add_visit(run, services, clinic)
    sign_in(clinic.patient)
    assert room(client, later).headers["location"] == f"/visits/{later}/where"
    page = read(client.get(f"/visits/{later}/where").text)
    assert page.values("address") == {"12 Elm Street, Springfield"}
    assert page.values("callback_phone") == {"+1 617-555-0100"}
    assert "not confirmed today" in page.text
    assert page.checked("confirm") == set()


def test_a_join_link_session_passes_the_step_for_its_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    other = add_visit(run, services, clinic)
    csrf = sign_in(clinic.patient, visit_id=clinic.visit_id)
    assert post_where(client, other, csrf).status_code == 403
    assert post_where(client, clinic.visit_id, csrf).status_code == 303
    assert room(client, clinic.visit_id).status_code == 200


# --- 988 and 911 wherever a patient or a guest looks (invariant 9) -------------------


def crisis_bar(html: str) -> dict[str, str | None] | None:
    page = read(html)
    bars = [attrs for tag, attrs in page.tags if attrs.get("data-testid") == "crisis-bar"]
    assert len(bars) <= 1
    if not bars:
        return None
    start = html.index('data-testid="crisis-bar"')
    inside = html[start:html.index("</aside>", start)]
    for href in ('href="tel:988"', 'href="sms:988"', 'href="tel:911"'):
        assert href in inside, href
    return bars[0] | {"tag": next(tag for tag, attrs in page.tags if attrs is bars[0])}


def guest_link(run: Runner, services: Services, visit_id: int, *, prescriber_id: int) -> str:
    token = secrets.token_urlsafe(32)

    async def make() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            session.add(VisitGuest(visit_id=visit_id, name="Ana Interpreter",
                                   email="ana@interpreters.test", token_hash=token_hash(token),
                                   invited_by_id=prescriber_id, invited_at=now,
                                   expires_at=now + timedelta(hours=2)))

    run(make)
    return f"/visits/{visit_id}/guest?t={token}"


def join_link(run: Runner, services: Services, visit_id: int) -> str:
    async def make() -> str:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            return make_join_token(services, visit)

    return f"/visits/{visit_id}/join?t={run(make)}"


def test_the_crisis_bar_is_on_every_page_a_patient_or_a_guest_sees(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(None)
    anonymous = {
        "/login": 200,
        join_link(run, services, clinic.visit_id): 200,
        f"/visits/{clinic.visit_id}/join?t=spoiled": 400,
        guest_link(run, services, clinic.visit_id, prescriber_id=clinic.prescriber.id): 200,
        f"/visits/{clinic.visit_id}/guest?t=not-a-real-invitation-token": 400,
        "/nothing-here": 404,
    }
    for path, status in anonymous.items():
        response = client.get(path)
        assert response.status_code == status, path
        bar = crisis_bar(response.text)
        assert bar is not None, path
        assert (bar["tag"], bar["aria-label"]) == ("aside", "Crisis help")
    sign_in(clinic.patient)
    for path in ("/home", "/progress", "/account/password", "/account/time-zone",
                 f"/visits/{clinic.visit_id}/checkin", f"/visits/{clinic.visit_id}/where",
                 "/admin", "/nothing-here"):
        assert crisis_bar(client.get(path).text) is not None, path
    sign_in(clinic.patient, visit_id=clinic.visit_id)
    assert crisis_bar(client.get(f"/visits/{clinic.visit_id}/where").text) is not None


@pytest.mark.parametrize("who,paths", [
    ("prescriber", ["/day", "/visits/{visit_id}", "/account/password", "/nothing-here"]),
    ("coordinator", ["/coordinator", "/visits/{visit_id}"]),
    ("admin", ["/admin", "/admin/audit", "/home"]),
])
def test_staff_pages_leave_out_the_crisis_bar(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str, paths: list[str]
) -> None:
    sign_in(getattr(clinic, who))
    for path in paths:
        response = client.get(path.format(visit_id=clinic.visit_id))
        assert response.status_code < 500, path
        assert crisis_bar(response.text) is None, path


# --- the check-in carries the rules its script applies (invariant 9) ----------------


def test_the_checkin_page_carries_the_reviewed_triage_rules(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    import json

    sign_in(clinic.patient)
    page = read(client.get(f"/visits/{clinic.visit_id}/checkin").text)
    rules = json.loads(str(page.by_id["checkin-form"]["data-triage"]))
    assert rules["item9_threshold"] == services.rules.thresholds.phq9_item9
    assert rules["levels"] == [level.value for level in services.rules.levels]
    assert set(rules["crisis_levels"]) == {"urgent", "emergency"}
    for code in ("phq9_item9_unassessed", "phq9_item9_positive", "cssrs_high",
                 "cssrs_moderate", "cssrs_low"):
        assert rules["reason_levels"][code] == services.rules.level_of(Reason(code)).value
    # No location confirmed today: the form will ask it first when the answers are urgent.
    assert page.by_id["checkin-form"]["data-where-confirmed-at"] == ""


def test_the_checkin_shows_a_location_confirmed_today_as_confirmed(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    before = services.clock.now()
    assert post_where(client, clinic.visit_id, csrf).status_code == 303
    page = read(client.get(f"/visits/{clinic.visit_id}/checkin").text)
    confirmed_at = str(page.by_id["checkin-form"]["data-where-confirmed-at"])
    assert before <= datetime.fromisoformat(confirmed_at).astimezone(UTC) <= \
        services.clock.now()
    assert page.by_id["where-state"]["data-state"] == "confirmed"
    assert "You confirmed this today at" in page.text
    assert page.values("location.address") == {ADDRESS}
    assert page.checked("confirm.location") == {"yes"}  # still editable
    # The contact is asked with the rest of the emergency section, not confirmed yet.
    assert page.checked("confirm.contact") == set()
    # On the day of the visit, a way to skip straight to the location step.
    assert f'href="/visits/{clinic.visit_id}/where"' in client.get(
        f"/visits/{clinic.visit_id}/checkin").text
