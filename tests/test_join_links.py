"""Joining a visit by the link in the invitation email, over the real app and real SMTP."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email.message import Message
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from starlette.testclient import TestClient

from server import outbox, visits
from server.accounts import add_to_care_team, create_user
from server.actors import Actor
from server.auth import COOKIE_NAME, JOIN_SALT
from server.models import (
    AuditEntry,
    AuthSession,
    OutboxEmail,
    Role,
    User,
    Visit,
    VisitKind,
    VisitStatus,
)
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import PASSWORD, Clinic, Person
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer
from tests.signaling_support import connect, cookie_of

LINK = re.compile(r"http://testserver/visits/(\d+)/join\?t=([A-Za-z0-9_.\-]+)")
NEW_PASSWORD = "my own new password"


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


# --- helpers -------------------------------------------------------------------------


def add_visit(run: Runner, services: Services, clinic: Clinic, patient_id: int,
              hours: int = 26) -> int:
    async def insert() -> int:
        async with services.transaction() as session:
            now = services.clock.now()
            visit = Visit(patient_id=patient_id, prescriber_id=clinic.prescriber.id,
                          kind=VisitKind.follow_up, scheduled_at=now + timedelta(hours=hours),
                          status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    return run(insert)


def patient_without_password(run: Runner, services: Services, clinic: Clinic) -> Person:
    """A patient whose only way in so far is the invitation."""

    async def create() -> Person:
        async with services.transaction() as session:
            now = services.clock.now()
            user = await create_user(session, None, email="new-patient@clinic.test",
                                     name="New Patient", role=Role.patient, password=None,
                                     now=now)
            admin = await session.get(User, clinic.admin.id)
            assert admin is not None
            await add_to_care_team(session, Actor.of(admin), patient_id=user.id,
                                   member_id=clinic.prescriber.id, now=now)
            return Person(user.id, user.email, user.name, user.role)

    return run(create)


def invite(client: TestClient, sign_in: SignIn, clinic: Clinic, visit_id: int) -> int:
    """The prescriber invites; returns the outbox id. Leaves the client signed out."""
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{visit_id}/invite")
    assert response.status_code == 201, response.text
    sign_in(None)
    outbox_id: int = response.json()["id"]
    return outbox_id


def queued_token(run: Runner, services: Services, outbox_id: int) -> str:
    async def body() -> str:
        async with services.transaction() as session:
            row = await session.get(OutboxEmail, outbox_id)
            assert row is not None
            return row.body

    match = LINK.search(run(body))
    assert match is not None
    return match.group(2)


def body_of(message: Message) -> str:
    # The text itself: an invitation also carries its calendar event as a second part.
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8").replace("\r\n", "\n")


def no_session_cookie(response: Any, client: TestClient) -> bool:
    return COOKIE_NAME not in response.headers.get("set-cookie", "") and \
        COOKIE_NAME not in client.cookies


def join(client: TestClient, visit_id: int, token: str) -> Any:
    """Press the button on the join page: sign in to the visit; sets the CSRF header."""
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    response = client.post(f"/visits/{visit_id}/join", data={"t": token},
                           follow_redirects=False)
    if response.status_code == 303:
        client.headers["X-CSRF-Token"] = client.get("/api/v1/session").json()["csrf_token"]
    return response


def confirm_where(client: TestClient, visit_id: int) -> Any:
    """Pass the location step as the patient's browser does (a form post)."""
    csrf = client.get("/api/v1/session").json()["csrf_token"]
    return client.post(f"/visits/{visit_id}/where", follow_redirects=False, data={
        "csrf_token": csrf, "address": "12 Elm Street, Springfield", "state": "MA",
        "callback_phone": "617 555 0100", "confirm": "yes"})


def old_token(services: Services, visit_id: int, patient_id: int, age: timedelta) -> str:
    """A join token exactly as the app would have signed it ``age`` ago."""

    class SignedBack(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age.total_seconds())

    serializer = URLSafeTimedSerializer(services.settings.secret_key.get_secret_value(),
                                        salt=JOIN_SALT, signer=SignedBack)
    return serializer.dumps({"v": visit_id, "p": patient_id, "n": "0badc0de"})


# --- the invitation ------------------------------------------------------------------


def test_invite_queues_an_email_that_reaches_the_patient(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/invite")
    assert response.status_code == 201
    body = response.json()
    assert body["visit_id"] == clinic.visit_id
    assert body["to"] == clinic.patient.email

    async def queued() -> list[OutboxEmail]:
        async with services.transaction() as session:
            return list((await session.scalars(select(OutboxEmail))).all())

    [row] = run(queued)
    assert row.id == body["id"]
    assert (row.to_addr, row.kind, row.sent_at, row.attempts) == (
        clinic.patient.email, "visit_invite", None, 0)
    [entry] = [e for e in run(_audit, services) if e.action == "invite"]
    assert (entry.actor_id, entry.resource_id, entry.patient_id, entry.detail["outbox_id"]) == (
        clinic.prescriber.id, str(clinic.visit_id), clinic.patient.id, row.id)

    assert smtp_server.inbox.messages == []  # queued, not yet sent
    assert run(outbox.deliver_due, services) == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == clinic.patient.email
    assert message["Subject"] == "Your Mendwell video visit"
    assert message["X-Mendwell-Outbox-Id"] == str(row.id)
    text = body_of(message)
    match = LINK.search(text)
    assert match is not None
    assert int(match.group(1)) == clinic.visit_id
    assert match.group(2) == queued_token(run, services, row.id)


async def _audit(services: Services) -> list[AuditEntry]:
    async with services.transaction() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


def test_the_email_carries_no_clinical_content(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    invite(client, sign_in, clinic, clinic.visit_id)
    run(outbox.deliver_due, services)
    [message] = smtp_server.inbox.wait_for(1)
    text = body_of(message)
    paragraphs = [p.strip() for p in text.strip().split("\n\n")]
    # A greeting; who and when (issue 17: the patient must know which visit); what to do
    # and the link; how to prepare; how long the link works. Nothing else.
    assert paragraphs[0] == f"Hello {clinic.patient.name},"
    assert paragraphs[1].startswith(f"Your video visit with {clinic.prescriber.name} is on ")
    assert LINK.fullmatch(paragraphs[3])
    assert paragraphs[4].startswith("Before your visit:")
    assert len(paragraphs) == 6
    calendar = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(calendar) == 1
    payload = calendar[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    lowered = (text + message["Subject"] + payload.decode()).lower()
    for clinical in ("follow", "intake", "psychiatr", "medication", "dose", "diagnos",
                     "substance", "phq", "mood", "depress", "anxiety", "suicid"):
        assert clinical not in lowered, clinical
    # The join link is in the email, not in the calendar event (calendars sync elsewhere).
    assert "join?t=" not in payload.decode()


@pytest.mark.parametrize("who", ["patient", "other_prescriber", "admin", "patient2"])
def test_only_the_care_team_invites(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    who: str,
) -> None:
    sign_in(getattr(clinic, who))
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/invite")
    assert response.status_code == 403

    async def queued() -> int:
        async with services.transaction() as session:
            return len((await session.scalars(select(OutboxEmail.id))).all())

    assert run(queued) == 0


def test_coordinator_on_the_team_invites(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.coordinator)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/invite").status_code == 201


# --- following the link --------------------------------------------------------------


def test_opening_the_link_shows_a_button_and_no_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    response = client.get(f"/visits/{clinic.visit_id}/join", params={"t": token})
    assert response.status_code == 200
    assert 'data-testid="join"' in response.text
    assert clinic.patient.name in response.text
    assert f'value="{token}"' in response.text
    # A mail scanner that opens links must not get a session.
    assert no_session_cookie(response, client)

    async def sessions() -> int:
        async with services.transaction() as session:
            return len((await session.scalars(select(AuthSession.id))).all())

    assert run(sessions) == 1  # the prescriber's, from invite()


def test_joining_signs_the_patient_into_that_visit_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    other_visit = add_visit(run, services, clinic, clinic.patient.id)
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))

    response = join(client, clinic.visit_id, token)
    assert response.status_code == 303
    # The check-in first (it is open and not done), never straight to the room.
    assert response.headers["location"] == f"/visits/{clinic.visit_id}/checkin"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie

    me = client.get("/api/v1/session").json()
    assert me["user"]["id"] == clinic.patient.id
    assert me["visit_id"] == clinic.visit_id

    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 200
    assert client.get(f"/visits/{clinic.visit_id}/checkin").status_code == 200
    # The room asks where they are first (invariant 10), then lets them in.
    room = client.get(f"/visits/{clinic.visit_id}", follow_redirects=False)
    assert (room.status_code, room.headers["location"]) == (
        303, f"/visits/{clinic.visit_id}/where")
    assert client.get(f"/visits/{clinic.visit_id}/where").status_code == 200
    assert confirm_where(client, clinic.visit_id).status_code == 303
    assert client.get(f"/visits/{clinic.visit_id}").status_code == 200
    assert client.get(f"/api/v1/visits/{other_visit}").status_code == 403
    assert client.get(f"/visits/{other_visit}").status_code == 403
    assert client.get(f"/api/v1/visits/{clinic.visit2_id}").status_code == 403
    listed = client.get("/api/v1/visits").json()["visits"]
    assert [v["id"] for v in listed] == [clinic.visit_id]
    home = client.get("/home")
    assert home.status_code == 200
    assert re.findall(r'data-visit-id="(\d+)"', home.text) == [str(clinic.visit_id)]

    async def stored() -> tuple[list[AuthSession], list[AuditEntry]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuthSession).where(
                AuthSession.user_id == clinic.patient.id))).all()
            joins = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "join_link"))).all()
            return list(rows), list(joins)

    [row], [entry] = run(stored)
    assert row.visit_id == clinic.visit_id
    assert (entry.actor_id, entry.resource_id, entry.patient_id, entry.outcome) == (
        clinic.patient.id, str(clinic.visit_id), clinic.patient.id, "success")


def test_a_full_session_of_the_same_patient_sees_every_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    # The contrast to the test above: the restriction comes from the join link.
    other_visit = add_visit(run, services, clinic, clinic.patient.id)
    sign_in(clinic.patient)
    listed = client.get("/api/v1/visits").json()["visits"]
    assert [v["id"] for v in listed] == [clinic.visit_id, other_visit]


def _tampered(token: str) -> str:
    payload, timestamp, signature = token.rsplit(".", 2)
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{payload}.{timestamp}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


@pytest.mark.parametrize(("spoil", "message"), [
    (_tampered, "not valid"),
    (lambda token: token[:-6], "not valid"),
    (lambda token: "", "not valid"),
    (lambda token: "a.b.c", "not valid"),
    # Someone else's signature on a payload: signed with a key that is not ours.
    (lambda token: URLSafeTimedSerializer("another-key-entirely-not-ours", salt=JOIN_SALT)
     .dumps({"v": 1, "p": 1, "n": "00"}), "not valid"),
])
def test_a_spoiled_link_gets_a_clear_page_and_no_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    spoil: Any, message: str,
) -> None:
    token = spoil(queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id)))
    for method in ("GET", "POST"):
        response = _use(client, method, clinic.visit_id, token)
        assert response.status_code == 400
        assert "This link cannot be used" in response.text
        assert message in response.text
        assert 'data-testid="join"' not in response.text
        assert no_session_cookie(response, client)


def _use(client: TestClient, method: str, visit_id: int, token: str) -> Any:
    client.cookies.clear()
    if method == "GET":
        return client.get(f"/visits/{visit_id}/join", params={"t": token})
    return client.post(f"/visits/{visit_id}/join", data={"t": token}, follow_redirects=False)


def test_an_expired_link_says_so_and_gives_no_session(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    """A link works until MENDWELL_JOIN_LINK_HOURS after its visit starts."""
    hours = services.settings.join_link_hours
    started = add_visit(run, services, clinic, clinic.patient.id, hours=-hours + 1)
    sent_before = timedelta(hours=hours + 24)
    fresh_enough = old_token(services, started, clinic.patient.id, sent_before)
    assert _use(client, "GET", started, fresh_enough).status_code == 200

    over = add_visit(run, services, clinic, clinic.patient.id, hours=-hours - 1)
    expired = old_token(services, over, clinic.patient.id, sent_before)
    for method in ("GET", "POST"):
        response = _use(client, method, over, expired)
        assert response.status_code == 400
        assert "This link has expired" in response.text
        assert no_session_cookie(response, client)


def test_a_link_for_a_visit_weeks_ahead_works_on_the_day_but_not_after_90_days(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    # Booked a month ahead, the invitation sent the same day: on the day it still works.
    month_ahead = old_token(services, clinic.visit_id, clinic.patient.id, timedelta(days=30))
    response = _use(client, "POST", clinic.visit_id, month_ahead)
    assert response.status_code == 303
    assert response.headers["location"] == f"/visits/{clinic.visit_id}/checkin"
    # However far ahead the visit, a link older than 90 days is refused.
    ancient = old_token(services, clinic.visit_id, clinic.patient.id, timedelta(days=91))
    refused = _use(client, "GET", clinic.visit_id, ancient)
    assert refused.status_code == 400
    assert "This link has expired" in refused.text


@pytest.mark.parametrize("whose", ["same patient", "another patient"])
def test_a_link_for_another_visit_gets_no_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    whose: str,
) -> None:
    other_visit = add_visit(run, services, clinic, clinic.patient.id) \
        if whose == "same patient" else clinic.visit2_id
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    for method in ("GET", "POST"):
        response = _use(client, method, other_visit, token)
        assert response.status_code == 400
        assert "This link is for a different visit" in response.text
        assert no_session_cookie(response, client)


def test_a_link_to_an_ended_visit_gives_no_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))

    async def cancel() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            visit.status = VisitStatus.cancelled

    run(cancel)
    response = _use(client, "POST", clinic.visit_id, token)
    assert response.status_code == 400
    assert "This visit has ended" in response.text
    assert no_session_cookie(response, client)


def test_a_deactivated_patient_cannot_join(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    sign_in(clinic.admin)
    assert client.patch(f"/api/v1/users/{clinic.patient.id}",
                        json={"is_active": False}).status_code == 200
    response = _use(client, "POST", clinic.visit_id, token)
    assert response.status_code == 400
    assert no_session_cookie(response, client)


# --- where the link leads: nobody joins unconfirmed (CLINICAL.md invariant 10) --------


def test_after_a_completed_checkin_the_link_leads_to_the_room(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    token = old_token(services, clinic.visit_id, clinic.patient.id, timedelta(0))
    response = join(client, clinic.visit_id, token)
    # The completion confirmed where they are a moment ago: straight to the room.
    assert response.headers["location"] == f"/visits/{clinic.visit_id}"
    assert client.get(f"/visits/{clinic.visit_id}").status_code == 200


def test_a_checkin_done_yesterday_still_asks_where_they_are_today(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    visit_id = add_visit(run, services, clinic, clinic.patient.id, hours=26)
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    services.clock.advance(timedelta(hours=services.settings.location_confirm_hours + 1))
    token = old_token(services, visit_id, clinic.patient.id, timedelta(0))
    response = join(client, visit_id, token)
    assert response.headers["location"] == f"/visits/{visit_id}/where"
    page = client.get(f"/visits/{visit_id}/where")
    assert 'data-testid="where-address"' in page.text
    assert "12 Elm Street, Springfield" in page.text  # last time's, to confirm
    assert "not confirmed today" in page.text
    room = client.get(f"/visits/{visit_id}", follow_redirects=False)
    assert room.headers["location"] == f"/visits/{visit_id}/where"
    assert confirm_where(client, visit_id).headers["location"] == f"/visits/{visit_id}"
    assert client.get(f"/visits/{visit_id}").status_code == 200


def test_a_link_opened_days_ahead_says_when_the_location_step_opens(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    visit_id = add_visit(run, services, clinic, clinic.patient.id, hours=24 * 5)
    token = old_token(services, visit_id, clinic.patient.id, timedelta(0))
    response = join(client, visit_id, token)
    assert response.headers["location"] == f"/visits/{visit_id}/where"
    page = client.get(f"/visits/{visit_id}/where")
    assert page.status_code == 200
    assert "before you join, we will ask where you are" in " ".join(page.text.split())
    assert 'data-testid="where-address"' not in page.text
    room = client.get(f"/visits/{visit_id}", follow_redirects=False)
    assert room.headers["location"] == f"/visits/{visit_id}/where"


# --- what a join session may do ------------------------------------------------------


def test_a_join_session_cannot_invite_or_break_glass(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, token).status_code == 303
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/invite").status_code == 403
    glass = client.post("/api/v1/break-glass", json={
        "patient_id": clinic.patient.id, "reason": "I would like to see my own record"})
    assert glass.status_code == 403
    assert client.get("/api/v1/audit").status_code == 403

    async def counts() -> tuple[int, int]:
        async with services.transaction() as session:
            emails = len((await session.scalars(select(OutboxEmail.id))).all())
            from server.models import BreakGlassGrant

            grants = len((await session.scalars(select(BreakGlassGrant.id))).all())
            return emails, grants

    assert run(counts) == (1, 0)


def test_a_join_session_sets_a_first_password_then_signs_in_normally(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    patient = patient_without_password(run, services, clinic)
    visit_id = add_visit(run, services, clinic, patient.id, hours=2)
    token = queued_token(run, services, invite(client, sign_in, clinic, visit_id))
    assert client.post("/api/v1/session", json={"email": patient.email,
                                                "password": NEW_PASSWORD}).status_code == 401

    assert join(client, visit_id, token).status_code == 303
    weak = client.put("/api/v1/account/password", json={"new_password": "short"})
    assert weak.status_code == 422
    assert weak.json()["error"]["field"] == "new_password"
    first = client.put("/api/v1/account/password", json={"new_password": NEW_PASSWORD})
    assert first.status_code == 204
    # Once there is a password, the one-visit session cannot change it.
    again = client.put("/api/v1/account/password", json={
        "current_password": NEW_PASSWORD, "new_password": "yet another password"})
    assert again.status_code == 403

    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    signed_in = client.post("/api/v1/session", json={"email": patient.email,
                                                     "password": NEW_PASSWORD})
    assert signed_in.status_code == 200
    assert signed_in.json()["visit_id"] is None
    assert [v["id"] for v in client.get("/api/v1/visits").json()["visits"]] == [visit_id]
    assert client.get("/home").status_code == 200


def test_a_join_session_cannot_change_an_existing_password(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, token).status_code == 303
    for body in ({"new_password": NEW_PASSWORD},
                 {"current_password": PASSWORD, "new_password": NEW_PASSWORD}):
        response = client.put("/api/v1/account/password", json=body)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    # The form route says the same.
    csrf = client.headers["X-CSRF-Token"]
    form = client.post("/account/password", data={
        "csrf_token": csrf, "current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert form.status_code == 403

    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    assert client.post("/api/v1/session", json={"email": clinic.patient.email,
                                                "password": PASSWORD}).status_code == 200


# --- revoking ------------------------------------------------------------------------


def _sessions_of(run: Runner, services: Services, visit_id: int) -> list[AuthSession]:
    async def rows() -> list[AuthSession]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuthSession).where(
                AuthSession.visit_id == visit_id).order_by(AuthSession.id))).all())

    return run(rows)


@pytest.mark.parametrize("who", ["prescriber", "coordinator"])
def test_staff_revoke_the_links_and_the_sessions_they_started(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    who: str,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, token).status_code == 303
    joined_cookie = client.cookies[COOKIE_NAME]
    staff: Person = getattr(clinic, who)
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator)) as events:
        events.expect("subscribed")
        sign_in(staff)
        revoked = client.post(f"/api/v1/visits/{clinic.visit_id}/join-links/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["sessions_ended"] == 1
        event = events.expect("visit.join_links_revoked")
        assert (event["visit_id"], event["sessions_ended"]) == (clinic.visit_id, 1)

    # The session the link started is over, at once.
    sign_in(None)
    client.cookies.set(COOKIE_NAME, joined_cookie)
    assert client.get("/api/v1/session").status_code == 401
    [ended] = _sessions_of(run, services, clinic.visit_id)
    assert ended.end_reason == "link_revoked"
    # The link no longer opens anything.
    for method in ("GET", "POST"):
        response = _use(client, method, clinic.visit_id, token)
        assert response.status_code == 400
        assert "This link has been withdrawn" in response.text
        assert no_session_cookie(response, client)
    [entry] = [e for e in run(_audit, services) if e.action == "revoke_join_links"]
    assert (entry.actor_id, entry.resource_id, entry.patient_id, entry.detail["sessions_ended"]) \
        == (staff.id, str(clinic.visit_id), clinic.patient.id, 1)
    # A new invitation sends a link that works.
    fresh = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, fresh).status_code == 303


def test_links_sent_before_links_could_be_revoked_work_until_a_revocation(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    # old_token signs what the app signed before: no link version in it.
    token = old_token(services, clinic.visit_id, clinic.patient.id, timedelta(hours=1))
    assert _use(client, "GET", clinic.visit_id, token).status_code == 200
    sign_in(clinic.prescriber)
    revoked = client.post(f"/api/v1/visits/{clinic.visit_id}/join-links/revoke")
    assert (revoked.status_code, revoked.json()["sessions_ended"]) == (200, 0)
    assert _use(client, "POST", clinic.visit_id, token).status_code == 400


def test_ending_the_visit_revokes_its_links_and_ends_their_sessions(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, token).status_code == 303
    assert client.get("/api/v1/session").status_code == 200
    # A full session of the same patient is not a join link's: it stays.
    sign_in(clinic.patient)
    full_cookie = client.cookies[COOKIE_NAME]

    async def end() -> None:
        async with services.transaction() as session:
            await visits.end_visit(session, Actor.of(await _user(session, clinic.prescriber)),
                                   clinic.visit_id, now=services.clock.now())

    run(end)
    linked = _sessions_of(run, services, clinic.visit_id)
    assert [(s.end_reason, s.ended_at is not None) for s in linked] == [("visit_ended", True)]
    [entry] = [e for e in run(_audit, services) if e.action == "end"]
    assert entry.detail["join_sessions_ended"] == 1
    client.cookies.set(COOKIE_NAME, full_cookie)
    assert client.get("/api/v1/session").status_code == 200
    response = _use(client, "POST", clinic.visit_id, token)
    assert response.status_code == 400
    assert no_session_cookie(response, client)


async def _user(session: Any, person: Person) -> User:
    user = await session.get(User, person.id)
    assert user is not None
    return user


def test_cancelling_the_visit_ends_it_its_links_and_their_sessions(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    token = queued_token(run, services, invite(client, sign_in, clinic, clinic.visit_id))
    assert join(client, clinic.visit_id, token).status_code == 303
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.patient)) as events:
        events.expect("subscribed")
        sign_in(clinic.coordinator)
        cancelled = client.post(f"/api/v1/visits/{clinic.visit_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["ended_at"] is not None
        # The patient's screens hear that the visit is over.
        event = events.expect("visit.ended")
        assert (event["visit_id"], event["status"]) == (clinic.visit_id, "cancelled")
    # A double click: the visit is over already.
    again = client.post(f"/api/v1/visits/{clinic.visit_id}/cancel")
    assert (again.status_code, again.json()["error"]["field"]) == (409, "status")
    moved = client.patch(f"/api/v1/visits/{clinic.visit_id}", json={"duration_minutes": 30})
    assert moved.status_code == 409
    [linked] = _sessions_of(run, services, clinic.visit_id)
    assert (linked.end_reason, linked.ended_at is not None) == ("visit_cancelled", True)
    [entry] = [e for e in run(_audit, services) if e.action == "cancel"]
    assert (entry.actor_id, entry.resource_id, entry.patient_id,
            entry.detail["sessions_ended"]) == (clinic.coordinator.id, str(clinic.visit_id),
                                                clinic.patient.id, 1)
    sign_in(None)
    response = _use(client, "POST", clinic.visit_id, token)
    assert response.status_code == 400
    assert no_session_cookie(response, client)
