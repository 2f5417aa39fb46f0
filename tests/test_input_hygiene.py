"""Hostile text is refused at the door, and what is already stored stays readable.

A lone surrogate ("\\ud800") or NUL that reached a JSON column made every later read of
that check-in, note or escalation a 500: one bad character locked the care team out of
an emergency. Such text is now refused with 422 naming the field, before anything is
written; NaN, Infinity and JSON nested too deep are refused alike; ids are ASCII digits.
What an old version stored anyway is shown with U+FFFD in its place.

httpx refuses to encode a Python lone surrogate, so bodies go as bytes: ``json.dumps``
(ASCII by default) writes it as the JSON escape ``\\ud800``, which is what a browser's
``JSON.stringify`` sends too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement
from starlette.testclient import TestClient

from server.models import (
    CheckIn,
    CheckInVersion,
    Escalation,
    EscalationEvent,
    User,
    Visit,
    VisitNote,
)
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

JSON = {"content-type": "application/json"}
# A lone high surrogate, a lone low one, and NUL (which PostgreSQL text refuses).
UNSTORABLE = ["\ud800", "\udfff", "\x00"]
REPLACED = "\ufffd"


def send(client: TestClient, method: str, url: str, body: Any) -> Any:
    """``body`` as JSON bytes, lone surrogates and NUL written as JSON escapes."""
    return client.request(method, url, content=json.dumps(body).encode("ascii"),
                          headers=JSON)


def send_raw(client: TestClient, method: str, url: str, text: str | bytes) -> Any:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return client.request(method, url, content=raw, headers=JSON)


def refused(response: Any, field: str, code: str = "invalid_text", status: int = 422) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error


def count(run: Runner, services: Services, model: Any,
          *where: ColumnElement[bool]) -> int:
    async def query() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(
                select(func.count()).select_from(model).where(*where)) or 0)
    return run(query)


def on_sqlite(services: Services) -> bool:
    return services.settings.database_url.get_secret_value().startswith("sqlite")


def checkin_url(clinic: Clinic) -> str:
    return f"/api/v1/visits/{clinic.visit_id}/checkin"


def note_url(clinic: Clinic) -> str:
    return f"/api/v1/visits/{clinic.visit_id}/note"


def raise_by_hand(client: TestClient, clinic: Clinic) -> int:
    response = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "urgent",
        "reason": "psychosis"})
    assert response.status_code == 201, response.text
    escalation_id: int = response.json()["id"]
    return escalation_id


# --- refused at the door ------------------------------------------------------------


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_text_in_a_draft_is_refused_and_nothing_is_stored(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    bad: str,
) -> None:
    sign_in(clinic.patient)
    url = f"{checkin_url(clinic)}/draft"
    # In a value, deep in a list, and in a key.
    refused(send(client, "PUT", url, {"responses": {}, "location": {
        "address": f"12 Elm{bad} Street, Springfield"}}), "location.address")
    refused(send(client, "PUT", url, {"responses": {"phq9": {
        "answers": [1, 1, 1, bad, 0, 0, 0, 0, 0]}}}), "responses.phq9.answers.3")
    # The field names the bad key, its lone surrogate shown as U+FFFD (NUL as it is).
    shown = bad if bad == "\x00" else REPLACED
    refused(send(client, "PUT", url, {"responses": {f"ph{bad}q9": {"answers": []}}}),
            f"responses.ph{shown}q9")
    assert count(run, services, CheckIn) == 0
    assert client.get(checkin_url(clinic)).json()["checkin"] is None
    # The same draft without the bad character is stored.
    fine = send(client, "PUT", url, {"responses": {}, "location": {
        "address": "12 Elm Street, Springfield", "state": "MA"}})
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_text_in_a_completion_is_refused_and_nothing_is_stored(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    bad: str,
) -> None:
    sign_in(clinic.patient)
    body = checkin_body(cssrs=HIGH_RISK_CSSRS)  # an emergency: refused all the same
    body["emergency_contact"]["name"] = f"Taylor{bad}"
    refused(send(client, "POST", checkin_url(clinic), body), "emergency_contact.name")
    assert count(run, services, CheckIn) == 0
    assert count(run, services, Escalation) == 0

    async def status() -> str:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            return visit.status.value

    assert run(status) == "scheduled"


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_text_in_a_note_is_refused_and_the_note_is_unchanged(
    client: TestClient, clinic: Clinic, sign_in: SignIn, bad: str
) -> None:
    sign_in(clinic.prescriber)
    saved = client.put(note_url(clinic), json={"version": 0, "sections": {
        "plan": "Continue sertraline 50 mg."}})
    assert saved.status_code == 200, saved.text
    version = saved.json()["version"]
    refused(send(client, "PUT", note_url(clinic), {"version": version, "sections": {
        "plan": f"Increase{bad} sertraline."}}), "sections.plan")
    note = client.get(note_url(clinic)).json()
    assert note["version"] == version
    assert note["sections"]["plan"] == "Continue sertraline 50 mg."


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_text_in_an_escalation_is_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    bad: str,
) -> None:
    sign_in(clinic.prescriber)
    refused(send(client, "POST", "/api/v1/escalations", {
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "urgent",
        "reason": "other", "text": f"Called by the pharmacy{bad}, patient threatening"}),
        "text")
    assert count(run, services, Escalation) == 0

    escalation_id = raise_by_hand(client, clinic)
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    events = count(run, services, EscalationEvent)
    refused(send(client, "POST", f"{base}/events", {
        "kind": "contact_attempt", "text": f"Called{bad} the callback number",
        "outcome": "reached"}), "text")
    refused(send(client, "POST", f"{base}/resolve", {
        "disposition": "mobile_crisis", "note": f"Mobile crisis{bad} team dispatched"}),
        "note")
    assert count(run, services, EscalationEvent) == events
    detail = client.get(base).json()
    assert detail["status"] == "acknowledged"


def test_an_utf8_encoded_surrogate_is_refused_too(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    # json.loads reads bytes with "surrogatepass": ED A0 80 (a surrogate "encoded" as
    # UTF-8, which is not UTF-8) arrives as a lone surrogate, not as a decoding error.
    sign_in(clinic.patient)
    refused(send_raw(client, "PUT", f"{checkin_url(clinic)}/draft",
                     b'{"responses": {}, "location": {"address": "12 Elm \xed\xa0\x80"}}'),
            "location.address")
    assert count(run, services, CheckIn) == 0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_cannot_carry_are_refused_in_a_draft(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    token: str,
) -> None:
    sign_in(clinic.patient)
    text = ('{"responses": {"phq9": {"answers": [1, 1, 1, 1, 1, 1, 1, 1, 1]}},'
            f' "sleep": {{"hours": {token}}}}}')
    refused(send_raw(client, "PUT", f"{checkin_url(clinic)}/draft", text), "sleep.hours",
            code="invalid_number")
    assert count(run, services, CheckIn) == 0


@pytest.mark.parametrize("url", ["/api/v1/triage", "/api/v1/session"])
@pytest.mark.parametrize("depth", [65, 990, 40_000])
def test_json_nested_too_deep_is_refused(client: TestClient, url: str, depth: int) -> None:
    # 990 levels used to pass the parser and exhaust the stack further on: a 500.
    # 40,000 (under the body size limit) is past what the parser itself can recurse.
    refused(send_raw(client, "POST", url, "[" * depth + "]" * depth), "body",
            code="too_deep", status=400)
    refused(send_raw(client, "POST", url, '{"a":' * depth + "1" + "}" * depth), "body",
            code="too_deep", status=400)


def test_json_nested_to_the_limit_is_read(client: TestClient) -> None:
    # 64 containers deep: the body, responses, and 62 lists.
    nested: Any = 0
    for _ in range(62):
        nested = [nested]
    response = send(client, "POST", "/api/v1/triage", {"responses": {"phq9": nested}})
    # Read, then refused for what it says rather than for its depth.
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "responses.phq9"
    refused(send(client, "POST", "/api/v1/triage", {"responses": {"phq9": [nested]}}),
            "body", code="too_deep", status=400)


def test_an_integer_past_pythons_digit_limit_is_invalid_json(client: TestClient) -> None:
    refused(send_raw(client, "POST", "/api/v1/triage", "9" * 5000), "body",
            code="invalid_json", status=400)


@pytest.mark.parametrize("spelling", ["١", "١٢", "²", "+1", " 1", "1_0", "0x1", "-1",
                                      "99999999999999999999999"])
def test_ids_are_ascii_digits_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, spelling: str
) -> None:
    sign_in(clinic.prescriber)
    response = client.get(f"/api/v1/visits/{spelling}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "visit_id"
    assert client.get(f"/visits/{spelling}").status_code == 422  # the page, too
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 200


@pytest.mark.parametrize("days", ["²", "١"])
def test_a_period_in_unicode_digits_is_not_a_server_error(
    client: TestClient, clinic: Clinic, sign_in: SignIn, days: str
) -> None:
    sign_in(clinic.coordinator)
    api = client.get("/api/v1/escalations/measures", params={"days": days})
    assert api.status_code == 422, api.text
    assert api.json()["error"]["field"] == "days"
    page = client.get("/coordinator", params={"days": days})
    assert page.status_code == 200
    assert 'value="30" selected' in page.text


def test_unstorable_text_in_a_query_filter_is_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    # Starlette decodes an invalid percent-escape (%ED%A0%80) to U+FFFD, so a query
    # string cannot carry a lone surrogate; it can carry NUL, which PostgreSQL refuses.
    sign_in(clinic.admin)
    response = client.get("/api/v1/audit?action=read%00")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "action"
    replaced = client.get("/api/v1/audit?action=read%ED%A0%80")
    assert replaced.status_code == 200
    assert replaced.json()["entries"] == []


def test_unstorable_text_in_a_form_post_is_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    client.headers.pop("X-CSRF-Token")
    url = f"/visits/{clinic.visit_id}/where"
    response = client.post(url, data={
        "csrf_token": csrf, "address": "12 Elm\x00 Street", "callback_phone": "+1 555 0100",
        "confirm": "yes"}, follow_redirects=False)
    assert response.status_code == 422, response.text
    assert count(run, services, CheckIn) == 0
    # A multipart form declaring a charset that turns \ud800 into a lone surrogate.
    parts = {"csrf_token": csrf, "address": "12 Elm \\ud800 Street",
             "callback_phone": "+1 555 0100", "confirm": "yes"}
    body = "".join(f'--b0undary\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n" for name, value in parts.items()) + "--b0undary--\r\n"
    multipart = client.post(url, content=body.encode("ascii"), headers={
        "content-type": "multipart/form-data; boundary=b0undary; charset=raw_unicode_escape"},
        follow_redirects=False)
    assert multipart.status_code == 422, multipart.text
    assert count(run, services, CheckIn) == 0
    # And a forged post is refused for its token before its text is read.
    forged = client.post(url, data={"csrf_token": "\u00e9t\u00e9", "address": "12 Elm"},
                         follow_redirects=False)
    assert forged.status_code == 403
    fine = client.post(url, data={"csrf_token": csrf, "address": "12 Elm Street",
                                  "state": "MA", "callback_phone": "+1 555 0100",
                                  "confirm": "yes"},
                       follow_redirects=False)
    assert fine.status_code == 303, fine.text


def test_a_sign_in_with_unstorable_text_is_refused(client: TestClient, clinic: Clinic) -> None:
    for url in ("/login", f"/visits/{clinic.visit_id}/join"):
        response = client.post(url, data={"email": "patient@clinic.test\x00", "password": "x",
                                          "t": "x\x00"}, follow_redirects=False)
        assert response.status_code == 422, (url, response.text)


# --- stored before the door was shut, still readable ---------------------------------


def test_a_stored_lone_surrogate_in_a_checkin_stays_readable(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    draft = {"responses": {"phq9": {"answers": [1, 1, 1, 1, 1, 1, 1, 1, 2]}}}
    assert client.put(f"{checkin_url(clinic)}/draft", json=draft).status_code == 200

    async def spoil() -> None:
        # What an old version let in: JSON columns keep it (PostgreSQL's json type
        # checks only that \ud800 is four hex digits); text columns never could.
        async with services.transaction() as session:
            checkin = await session.scalar(select(CheckIn))
            assert checkin is not None
            checkin.data = {**checkin.data, "location": {"address": "12 Elm\ud800"},
                            "note\udc00": "x"}
            for version in await session.scalars(select(CheckInVersion)):
                version.data = {**version.data, "location": {"address": "12 Elm\ud800"}}

    run(spoil)
    data = client.get(checkin_url(clinic)).json()["checkin"]["data"]
    assert data["location"] == {"address": f"12 Elm{REPLACED}"}
    assert data[f"note{REPLACED}"] == "x"
    # The patient's check-in page resumes from that draft; so do the care team's views.
    assert client.get(f"/visits/{clinic.visit_id}/checkin").status_code == 200
    sign_in(clinic.coordinator)
    escalations = client.get("/api/v1/escalations").json()["escalations"]
    assert escalations, "the item 9 draft raised an escalation"
    escalation_id = escalations[0]["id"]
    detail = client.get(f"/api/v1/escalations/{escalation_id}")
    assert detail.status_code == 200, detail.text
    page = client.get(f"/escalations/{escalation_id}")
    assert page.status_code == 200
    assert client.get("/coordinator").status_code == 200
    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}")
    assert room.status_code == 200
    assert "\ud800" not in room.text


def test_a_stored_lone_surrogate_in_a_note_stays_readable_and_heals_on_save(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    saved = client.put(note_url(clinic), json={"version": 0, "sections": {
        "plan": "Continue sertraline."}})
    assert saved.status_code == 200, saved.text

    async def spoil() -> None:
        async with services.transaction() as session:
            note = await session.scalar(select(VisitNote))
            assert note is not None
            note.sections = {**note.sections, "plan": "Continue\ud800 sertraline."}

    run(spoil)
    note = client.get(note_url(clinic))
    assert note.status_code == 200
    assert note.json()["sections"]["plan"] == f"Continue{REPLACED} sertraline."
    room = client.get(f"/visits/{clinic.visit_id}")
    assert room.status_code == 200
    assert 'data-testid="note-panel"' in room.text
    # The panel's data (tojson) carries U+FFFD, escaped for the attribute.
    assert "Continue\\ufffd sertraline." in room.text
    # What the panel sends back on its next autosave is accepted: the record heals.
    body = note.json()
    again = client.put(note_url(clinic), json={
        "version": body["version"], "sections": body["sections"]})
    assert again.status_code == 200, again.text


def test_a_stored_lone_surrogate_in_an_escalation_stays_readable(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.coordinator)
    escalation_id = raise_by_hand(client, clinic)
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    assert client.post(f"{base}/events", json={
        "kind": "contact_attempt", "text": "Called the callback number",
        "outcome": "reached"}).status_code == 201

    async def spoil() -> None:
        async with services.transaction() as session:
            event = await session.scalar(select(EscalationEvent).where(
                EscalationEvent.kind == "contact_attempt"))
            assert event is not None
            event.detail = {**event.detail, "text": "Called\ud800 the callback number"}

    run(spoil)
    detail = client.get(base)
    assert detail.status_code == 200, detail.text
    texts = [e.get("text") for e in detail.json()["timeline"]]
    assert f"Called{REPLACED} the callback number" in texts
    page = client.get(f"/escalations/{escalation_id}")
    assert page.status_code == 200
    assert f"Called{REPLACED} the callback number" in page.text
    assert client.get(f"/escalations/{escalation_id}?part=live").status_code == 200
    assert client.get("/coordinator").status_code == 200
    assert client.get("/api/v1/escalations").status_code == 200


def test_text_columns_never_held_a_lone_surrogate(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    # Why the tests above spoil JSON columns only: both drivers refuse to encode a lone
    # surrogate for a text column (sqlite3 and asyncpg encode UTF-8 strictly), so a
    # name, reason or resolution note was never stored with one, only a 500 on write.
    async def spoil() -> None:
        async with services.transaction() as session:
            user = await session.get(User, clinic.patient.id)
            assert user is not None
            user.name = "Pat\ud800"

    # The drivers' errors differ: UnicodeEncodeError itself, or wrapped by SQLAlchemy.
    with pytest.raises(Exception, match="surrogate"):
        run(spoil)

    async def name() -> str:
        async with services.transaction() as session:
            user = await session.get(User, clinic.patient.id)
            assert user is not None
            return user.name

    assert run(name) == clinic.patient.name


# SQLite only: PostgreSQL's json type never accepted NaN, so no such row exists there.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stored_nan_stays_readable_on_sqlite(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.put(f"{checkin_url(clinic)}/draft", json={"responses": {}}).status_code == 200

    async def spoil() -> None:
        async with services.transaction() as session:
            checkin = await session.scalar(select(CheckIn))
            assert checkin is not None
            checkin.data = {"responses": {}, "sleep": {"hours": float("nan")}}

    run(spoil)
    response = client.get(checkin_url(clinic))
    assert response.status_code == 200, response.text
    assert response.json()["checkin"]["data"]["sleep"] == {"hours": None}


def test_a_non_ascii_csrf_header_is_refused_not_a_server_error(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    response = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft",
                          json={"responses": {}},
                          headers={"X-CSRF-Token": "\u00e9t\u00e9".encode("latin-1")})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
