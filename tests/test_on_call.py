"""The on-call rota (CLINICAL.md safety invariant 5, "A backup who can act"), over real
requests: admins keep it; whoever is on call sees and acts on every care team's open
escalations until their shift ends, and an emergency reaches them (never an admin)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from escalation.deadlines import fire_due_timers
from server.models import AuditEntry, OnCallShift, OutboxEmail, Role
from server.outbox import deliver_due
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, Person
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer
from tests.signaling_support import connect, cookie_of

CLINIC_TZ = ZoneInfo("America/New_York")  # the settings' default clinic zone


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


def new_staff(client: TestClient, sign_in: SignIn, clinic: Clinic, role: Role,
              name: str) -> Person:
    """A person created by the admin over the API, on nobody's care team."""
    sign_in(clinic.admin)
    email = f"{name.lower().replace(' ', '.')}@clinic.test"
    response = client.post("/api/v1/users", json={"email": email, "name": name,
                                                  "role": role.value})
    assert response.status_code == 201, response.text
    return Person(response.json()["id"], email, name, role)


def shift_body(user_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    return {"user_id": user_id, "starts_at": start.isoformat(), "ends_at": end.isoformat()}


def add_shift(client: TestClient, user_id: int, start: datetime,
              end: datetime) -> dict[str, Any]:
    response = client.post("/api/v1/on-call", json=shift_body(user_id, start, end))
    assert response.status_code == 201, response.text
    shift: dict[str, Any] = response.json()
    return shift


def count(run: Runner, services: Services, model: Any, *where: Any) -> int:
    async def q() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)
                                             .where(*where)) or 0)
    return run(q)


def audit_actions(run: Runner, services: Services) -> list[tuple[str, int | None, str | None]]:
    async def q() -> list[tuple[str, int | None, str | None]]:
        async with services.transaction() as session:
            rows = await session.execute(
                select(AuditEntry.action, AuditEntry.actor_id, AuditEntry.resource_id)
                .where(AuditEntry.resource_type == "on_call_shift").order_by(AuditEntry.id))
            return [(a, b, c) for a, b, c in rows]
    return run(q)


def open_ids(client: TestClient) -> list[int]:
    response = client.get("/api/v1/escalations?status=open")
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["escalations"]]


# --- acting on every team's escalations, while on call and not after ----------------


def test_an_on_call_coordinator_acts_on_another_teams_escalation_until_the_shift_ends(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    night = new_staff(client, sign_in, clinic, Role.coordinator, "Nico Night")
    sign_in(clinic.prescriber)
    raised = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient2.id, "level": "urgent", "reason": "relapse"})
    assert raised.status_code == 201, raised.text
    escalation_id = raised.json()["id"]

    # On nobody's care team and not on call: nothing to see.
    sign_in(night)
    assert open_ids(client) == []
    assert client.get(f"/api/v1/escalations/{escalation_id}").status_code == 403

    sign_in(clinic.admin)
    now = services.clock.now()
    shift = add_shift(client, night.id, now, now + timedelta(hours=8))
    assert shift["user"] == {"id": night.id, "name": "Nico Night", "role": "coordinator",
                             "is_active": True}
    assert (shift["status"], shift["on_call"]) == ("current", True)

    sign_in(night)
    assert escalation_id in open_ids(client)
    detail = client.get(f"/api/v1/escalations/{escalation_id}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["patient"]["id"] == clinic.patient2.id
    ack = client.post(f"/api/v1/escalations/{escalation_id}/acknowledge")
    assert ack.status_code == 200, ack.text
    assert ack.json()["acknowledged_by"]["id"] == night.id
    contact = client.post(f"/api/v1/escalations/{escalation_id}/events", json={
        "kind": "contact_attempt", "outcome": "reached",
        "text": "Called the patient back; safe at home with family."})
    assert contact.status_code == 201, contact.text

    # The shift is over: the backup's access ends with it (the care team carries on).
    services.clock.advance(timedelta(hours=8, minutes=1))
    sign_in(night)  # eight idle hours signed them out
    assert open_ids(client) == []
    assert client.get(f"/api/v1/escalations/{escalation_id}").status_code == 403
    late = client.post(f"/api/v1/escalations/{escalation_id}/events", json={
        "kind": "note", "text": "Trying to add a note after the shift."})
    assert late.status_code == 403
    sign_in(clinic.other_coordinator)  # patient2's own coordinator still has it
    assert escalation_id in open_ids(client)


def test_an_emergency_reaches_the_on_call_person_by_email_and_never_an_admin(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    night = new_staff(client, sign_in, clinic, Role.prescriber, "Dr Nadia Night")
    sign_in(clinic.admin)
    now = services.clock.now()
    add_shift(client, night.id, now, now + timedelta(hours=12))

    def emails_to(person: Person) -> int:
        return count(run, services, OutboxEmail, OutboxEmail.to_addr == person.email)

    with connect(client, "/ws/events", cookie_of(sign_in, night)) as night_events, \
            connect(client, "/ws/events", cookie_of(sign_in, clinic.admin)) as admin_events:
        night_events.expect("subscribed")
        admin_events.expect("subscribed")
        sign_in(clinic.patient)
        submitted = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                                json=checkin_body(cssrs=HIGH_RISK_CSSRS))
        assert submitted.status_code == 201, submitted.text
        escalation_id = submitted.json()["escalations"][0]
        alert = night_events.expect("escalation.alert")
        assert (alert["escalation_id"], alert["level"], alert["why"]) == (
            escalation_id, "emergency", "raised")
        assert not [m for m in admin_events.quiet(0.3)
                    if str(m.get("type", "")).startswith("escalation.")]

    assert emails_to(night) == 1
    assert emails_to(clinic.admin) == 0
    run(deliver_due, services)
    received = smtp_server.inbox.wait_for(3)
    assert night.email in {m["To"] for m in received}
    assert clinic.admin.email not in {m["To"] for m in received}
    message = next(m for m in received if m["To"] == night.email)
    assert f"/escalations/{escalation_id}" in message.get_payload()

    # Nobody acknowledges: two missed deadlines bring in the backup, never an admin.
    for _ in range(2):
        services.clock.advance(timedelta(minutes=5, seconds=1))
        run(fire_due_timers, services)
    assert emails_to(clinic.admin) == 0
    assert emails_to(night) >= 2
    # And the person alerted can open what they were alerted to.
    sign_in(night)
    assert client.get(f"/api/v1/escalations/{escalation_id}").status_code == 200


# --- who manages the rota, and who reads it --------------------------------------------


def test_only_admins_change_the_rota_and_staff_read_it(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    now = services.clock.now()
    sign_in(clinic.admin)
    shift = add_shift(client, clinic.other_prescriber.id, now + timedelta(hours=1),
                      now + timedelta(hours=9))
    body = shift_body(clinic.coordinator.id, now, now + timedelta(hours=4))
    for person in (clinic.prescriber, clinic.coordinator, clinic.other_prescriber):
        sign_in(person)
        refused = client.post("/api/v1/on-call", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert client.post(f"/api/v1/on-call/{shift['id']}/end").status_code == 403
    assert count(run, services, OnCallShift) == 1
    assert count(run, services, OnCallShift, OnCallShift.cancelled_at.is_not(None)) == 0

    # A coordinator needs to know who their backup is.
    sign_in(clinic.coordinator)
    listed = client.get("/api/v1/on-call")
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["shifts"]] == [shift["id"]]
    sign_in(clinic.patient)
    assert client.get("/api/v1/on-call").status_code == 403
    sign_in(None)
    assert client.get("/api/v1/on-call").status_code == 401


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(("case", "field"), [
    ("until before from", "ends_at"),
    ("until equal to from", "ends_at"),
    ("longer than 31 days", "ends_at"),
    ("starting in the past", "starts_at"),
    ("over already", "ends_at"),
    ("starting years ahead", "starts_at"),
    ("without an offset", "starts_at"),
    ("missing until", "ends_at"),
    ("an unknown field", "note"),
    ("an unknown user", "user_id"),
    ("a patient", "user_id"),
    ("an admin", "user_id"),
    ("a deactivated coordinator", "user_id"),
])
def test_invalid_shifts_are_422_naming_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    case: str, field: str,
) -> None:
    sign_in(clinic.admin)
    if case == "a deactivated coordinator":
        assert client.patch(f"/api/v1/users/{clinic.other_coordinator.id}",
                            json={"is_active": False}).status_code == 200
    now = services.clock.now()
    body = shift_body(clinic.coordinator.id, now + HOUR, now + 9 * HOUR)
    changes: dict[str, Callable[[], dict[str, Any]]] = {
        "until before from": lambda: {"ends_at": now.isoformat()},
        "until equal to from": lambda: {"ends_at": body["starts_at"]},
        "longer than 31 days": lambda: {"ends_at": (now + timedelta(days=32)).isoformat()},
        "starting in the past": lambda: {"starts_at": (now - HOUR).isoformat()},
        "over already": lambda: {"starts_at": (now - timedelta(minutes=9)).isoformat(),
                                 "ends_at": (now - timedelta(minutes=1)).isoformat()},
        "starting years ahead": lambda: {
            "starts_at": (now + timedelta(days=3650)).isoformat(),
            "ends_at": (now + timedelta(days=3651)).isoformat()},
        "without an offset": lambda: {"starts_at": "2026-12-24T08:00:00"},
        "missing until": lambda: {},
        "an unknown field": lambda: {"note": "night cover"},
        "an unknown user": lambda: {"user_id": 2**31 - 1},
        "a patient": lambda: {"user_id": clinic.patient.id},
        "an admin": lambda: {"user_id": clinic.admin.id},
        "a deactivated coordinator": lambda: {"user_id": clinic.other_coordinator.id},
    }
    body.update(changes[case]())
    if case == "missing until":
        del body["ends_at"]
    response = client.post("/api/v1/on-call", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert error["message"]
    assert count(run, services, OnCallShift) == 0


def test_overlapping_shifts_of_one_person_are_refused_touching_ones_are_not(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.admin)
    now = services.clock.now()
    first = add_shift(client, clinic.coordinator.id, now + HOUR, now + 9 * HOUR)
    clash = client.post("/api/v1/on-call", json=shift_body(
        clinic.coordinator.id, now + 8 * HOUR, now + 12 * HOUR))
    assert clash.status_code == 409, clash.text
    error = clash.json()["error"]
    assert (error["code"], error["field"], error["shift_id"]) == (
        "shift_overlap", "starts_at", first["id"])
    # Shifts are [from, until): the next one may start where the first ends, and someone
    # else may be on call at the same time.
    add_shift(client, clinic.coordinator.id, now + 9 * HOUR, now + 17 * HOUR)
    add_shift(client, clinic.prescriber.id, now + HOUR, now + 9 * HOUR)
    assert count(run, services, OnCallShift) == 3


def test_ending_a_shift_keeps_its_history_and_tells_the_admins_and_the_person(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    start = services.clock.now()
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator)) as person, \
            connect(client, "/ws/events", cookie_of(sign_in, clinic.admin)) as admin, \
            connect(client, "/ws/events",
                    cookie_of(sign_in, clinic.other_coordinator)) as bystander:
        for ws in (person, admin, bystander):
            ws.expect("subscribed")
        sign_in(clinic.admin)
        running = add_shift(client, clinic.coordinator.id, start, start + 8 * HOUR)
        later = add_shift(client, clinic.coordinator.id, start + 24 * HOUR,
                          start + 32 * HOUR)
        for ws in (person, admin):
            added = ws.expect("on_call.shift_added")
            assert (added["shift_id"], added["user_id"]) == (running["id"],
                                                              clinic.coordinator.id)
            assert ws.expect("on_call.shift_added")["shift_id"] == later["id"]

        services.clock.advance(2 * HOUR)
        sign_in(clinic.admin)
        ended = client.post(f"/api/v1/on-call/{running['id']}/end")
        assert ended.status_code == 200, ended.text
        assert ended.json()["status"] == "ended"
        ended_at = datetime.fromisoformat(ended.json()["ends_at"])
        assert abs(ended_at - services.clock.now()) < timedelta(seconds=5)
        cancelled = client.post(f"/api/v1/on-call/{later['id']}/end")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["cancelled_by_id"] == clinic.admin.id
        for ws in (person, admin):
            assert ws.expect("on_call.shift_ended")["shift_id"] == running["id"]
            assert ws.expect("on_call.shift_cancelled")["shift_id"] == later["id"]
        assert not [m for m in bystander.quiet(0.2)
                    if str(m.get("type", "")).startswith("on_call.")]

    assert client.get("/api/v1/on-call").json()["shifts"] == []
    # Who was on call an hour into the first shift: still answerable.
    then = (start + HOUR).isoformat()
    history = client.get("/api/v1/on-call", params={"at": then}).json()["shifts"]
    assert [(s["id"], s["status"]) for s in history] == [(running["id"], "ended")]
    window = client.get("/api/v1/on-call", params={
        "from": start.isoformat(), "to": (start + 48 * HOUR).isoformat()}).json()["shifts"]
    assert [(s["id"], s["status"]) for s in window] == [(running["id"], "ended"),
                                                        (later["id"], "cancelled")]

    again = client.post(f"/api/v1/on-call/{running['id']}/end")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "shift_over"
    missing = client.post(f"/api/v1/on-call/{2**31 - 1}/end")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "shift_id"
    assert client.get("/api/v1/on-call", params={"at": "tomorrow"}).status_code == 422
    assert client.get("/api/v1/on-call", params={
        "from": then, "to": start.isoformat()}).json()["error"]["field"] == "to"
    admin_id = clinic.admin.id
    assert audit_actions(run, services) == [
        ("add_shift", admin_id, str(running["id"])), ("add_shift", admin_id, str(later["id"])),
        ("end_shift", admin_id, str(running["id"])),
        ("cancel_shift", admin_id, str(later["id"]))]


# --- the admin page ---------------------------------------------------------------


def local_input(at: datetime) -> str:
    """What an admin types in a datetime-local field: clinic wall-clock time."""
    return at.astimezone(CLINIC_TZ).strftime("%Y-%m-%dT%H:%M")


def test_the_rota_page_warns_when_nobody_is_on_call_and_adds_and_ends_shifts(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    page = client.get("/admin/on-call")
    assert page.status_code == 200
    assert 'data-testid="nobody-on-call"' in page.text
    assert 'href="/admin/on-call"' in page.text  # in the admin navigation
    # Only active prescribers and coordinators can be chosen.
    options = set(re.findall(r'<option value="(\d+)"', page.text))
    assert options == {str(p.id) for p in (clinic.prescriber, clinic.other_prescriber,
                                           clinic.coordinator, clinic.other_coordinator)}

    now = services.clock.now()
    form = {"user_id": str(clinic.coordinator.id), "starts_at": local_input(now),
            "ends_at": local_input(now + 12 * HOUR)}
    forged = client.post("/admin/on-call", data=form, follow_redirects=False)
    assert forged.status_code == 403
    assert count(run, services, OnCallShift) == 0

    added = client.post("/admin/on-call", data=form | {"csrf_token": csrf},
                        follow_redirects=False)
    assert added.status_code == 303, added.text
    assert added.headers["location"] == "/admin/on-call"
    [shift] = client.get("/api/v1/on-call").json()["shifts"]
    # The form's times are the clinic's wall clock.
    assert datetime.fromisoformat(shift["starts_at"]) == \
        datetime.fromisoformat(form["starts_at"]).replace(tzinfo=CLINIC_TZ)
    assert shift["on_call"] is True

    page = client.get("/admin/on-call")
    assert 'data-testid="nobody-on-call"' not in page.text
    now_section = page.text.split('data-testid="on-call-now"')[1].split("</section>")[0]
    assert clinic.coordinator.name in now_section
    assert f'data-shift-id="{shift["id"]}"' in page.text

    # A mistake comes back at its field, with what was typed still there.
    wrong = client.post("/admin/on-call", data={
        "csrf_token": csrf, "user_id": str(clinic.prescriber.id),
        "starts_at": local_input(now + 2 * HOUR), "ends_at": local_input(now + HOUR)})
    assert wrong.status_code == 422
    assert re.search(r'id="shift-ends_at"[^>]*aria-invalid="true"', wrong.text)
    assert re.search(r'id="shift-ends_at"[^>]*aria-describedby="[^"]*shift-ends_at-error',
                     wrong.text)
    assert 'id="shift-ends_at-error"' in wrong.text
    assert f'value="{local_input(now + 2 * HOUR)}"' in wrong.text
    assert re.search(rf'<option value="{clinic.prescriber.id}" selected>', wrong.text)
    nobody = client.post("/admin/on-call", data=form | {"csrf_token": csrf, "user_id": ""})
    assert nobody.status_code == 422
    assert 'id="shift-user_id-error"' in nobody.text

    ended = client.post(f"/admin/on-call/{shift['id']}/end", data={"csrf_token": csrf},
                        follow_redirects=False)
    assert ended.status_code == 303
    assert client.get("/api/v1/on-call").json()["shifts"] == []
    again = client.post(f"/admin/on-call/{shift['id']}/end", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "already over" in again.text

    sign_in(clinic.coordinator)
    assert client.get("/admin/on-call").status_code == 403


def test_a_time_the_clocks_skip_is_refused_on_the_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    # The next spring-forward in the clinic's zone: 02:30 that day does not exist.
    day = services.clock.now().astimezone(CLINIC_TZ).date()
    while (datetime(day.year, day.month, day.day, 4, tzinfo=CLINIC_TZ).utcoffset() ==
           datetime(day.year, day.month, day.day, tzinfo=CLINIC_TZ).utcoffset()):
        day += timedelta(days=1)
    csrf = sign_in(clinic.admin)
    skipped = client.post("/admin/on-call", data={
        "csrf_token": csrf, "user_id": str(clinic.coordinator.id),
        "starts_at": f"{day.isoformat()}T02:30", "ends_at": f"{day.isoformat()}T09:00"})
    assert skipped.status_code == 422
    assert "does not exist" in skipped.text
    assert re.search(r'id="shift-starts_at"[^>]*aria-invalid="true"', skipped.text)
