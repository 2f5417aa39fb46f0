"""Self-service password reset: an emailed link that works once and expires, throttled,
and never a hint of whether an address has an account."""

from __future__ import annotations

import re
import time
from email.message import Message
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from starlette.testclient import TestClient

from server import outbox, password_reset
from server.auth import COOKIE_NAME
from server.models import AuditEntry, AuthSession, OutboxEmail, User
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer

LINK = re.compile(r"http://testserver/password-reset/new\?t=([A-Za-z0-9_.\-]+)")
NEW = "a brand new passphrase"


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


def ask(client: TestClient, email: str) -> Any:
    return client.post("/password-reset", data={"email": email})


def body_of(message: Message) -> str:
    # The text itself: an invitation also carries its calendar event as a second part.
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8").replace("\r\n", "\n")


def outbox_rows(run: Runner, services: Services) -> list[OutboxEmail]:
    async def rows() -> list[OutboxEmail]:
        async with services.transaction() as session:
            return list((await session.scalars(select(OutboxEmail).where(
                OutboxEmail.kind == password_reset.KIND).order_by(OutboxEmail.id))).all())

    return run(rows)


def token_sent(run: Runner, services: Services) -> str:
    match = LINK.search(outbox_rows(run, services)[-1].body)
    assert match is not None
    return match.group(1)


def set_new(client: TestClient, token: str, password: str = NEW,
            confirm: str | None = None) -> Any:
    return client.post("/password-reset/new", data={
        "t": token, "new_password": password,
        "confirm_password": password if confirm is None else confirm}, follow_redirects=False)


def signs_in(client: TestClient, email: str, password: str) -> bool:
    client.cookies.clear()
    response = client.post("/login", data={"email": email, "password": password},
                           follow_redirects=False)
    return response.status_code == 303 and COOKIE_NAME in response.cookies


def test_the_emailed_link_sets_a_new_password_once_and_ends_every_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    assert 'href="/password-reset"' in client.get("/login").text
    sign_in(clinic.prescriber)
    elsewhere = client.cookies[COOKIE_NAME]  # a session left open on another device
    client.cookies.clear()

    asked = ask(client, "Prescriber@Clinic.test ")
    assert asked.status_code == 200
    assert "If an account uses that address" in asked.text
    assert run(outbox.deliver_due, services) == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "prescriber@clinic.test"
    text = body_of(message)
    assert "works once, for 60 minutes" in text
    token = LINK.search(text).group(1)  # type: ignore[union-attr]

    page = client.get("/password-reset/new", params={"t": token})
    assert page.status_code == 200 and 'name="new_password"' in page.text
    # Two different passwords: nothing is set, the link still works.
    assert set_new(client, token, confirm="something else entirely").status_code == 422
    weak = set_new(client, token, password="short")
    assert weak.status_code == 422 and "new password" in weak.text
    done = set_new(client, token)
    assert (done.status_code, done.headers["location"]) == (303, "/login?reason=reset")
    assert "Your new password is set" in client.get("/login?reason=reset").text
    assert signs_in(client, "prescriber@clinic.test", NEW)

    # Once: the same link now sets nothing, and says so.
    client.cookies.clear()
    again = set_new(client, token, password="yet another passphrase")
    assert again.status_code == 400 and "used already" in again.text
    assert client.get("/password-reset/new", params={"t": token}).status_code == 400
    assert signs_in(client, "prescriber@clinic.test", NEW)
    # The session open elsewhere ended with the reset.
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, elsewhere)
    assert client.get("/api/v1/session").status_code == 401

    async def ended() -> list[str | None]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuthSession.end_reason).where(
                AuthSession.user_id == clinic.prescriber.id))).all())

    assert "password_reset" in run(ended)


def test_an_unknown_address_gets_the_same_answer_and_no_email(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    known, unknown = ask(client, "patient@clinic.test"), ask(client, "nobody@clinic.test")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert [row.to_addr for row in outbox_rows(run, services)] == ["patient@clinic.test"]

    async def requests() -> list[tuple[int | None, str | None]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "request_password_reset"))).all()
            return [(row.actor_id, row.resource_id) for row in rows]

    # Audited, but the address asked for is not kept: the log is not a list of accounts.
    assert run(requests) == [(clinic.patient.id, str(clinic.patient.id)), (None, None)]
    assert all("nobody" not in str(row) for row in run(requests))


def test_a_deactivated_account_gets_no_link(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    async def deactivate() -> None:
        async with services.transaction() as session:
            user = await session.get(User, clinic.coordinator.id)
            assert user is not None
            user.is_active = False

    run(deactivate)
    assert ask(client, "coordinator@clinic.test").status_code == 200
    assert outbox_rows(run, services) == []


def test_requests_are_throttled_per_address_asked_for_alike_known_or_not(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    for _ in range(password_reset.PER_EMAIL):
        assert ask(client, "patient@clinic.test").status_code == 200
    limited = ask(client, "patient@clinic.test")
    assert limited.status_code == 429 and "Too many" in limited.text
    assert len(outbox_rows(run, services)) == password_reset.PER_EMAIL
    # One network address trying many addresses is stopped too.
    for n in range(password_reset.PER_ADDRESS - password_reset.PER_EMAIL):
        assert ask(client, f"someone{n}@clinic.test").status_code == 200
    assert ask(client, "someone-else@clinic.test").status_code == 429


def test_an_address_with_no_account_is_limited_alike_so_the_limit_tells_nothing(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    answers = {}
    for email in ("patient@clinic.test", "nobody@clinic.test"):
        answers[email] = [ask(client, email).status_code
                          for _ in range(password_reset.PER_EMAIL + 1)]
    assert answers["patient@clinic.test"] == answers["nobody@clinic.test"] == \
        [200] * password_reset.PER_EMAIL + [429]


def test_a_link_expires_and_a_spoiled_one_is_refused(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    assert ask(client, "patient@clinic.test").status_code == 200
    token = token_sent(run, services)
    spoiled = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for bad in (spoiled, "", "not-a-token"):
        page = client.get("/password-reset/new", params={"t": bad})
        assert page.status_code == 400 and "not valid" in page.text
        assert set_new(client, bad).status_code == 400

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 61 * 60

    # The same content, signed 61 minutes ago: out of date.
    data = services.signer(password_reset.SALT).loads(token)
    old = URLSafeTimedSerializer(services.settings.secret_key.get_secret_value(),
                                 salt=password_reset.SALT, signer=Earlier).dumps(data)
    page = client.get("/password-reset/new", params={"t": old})
    assert page.status_code == 400 and "out of date" in page.text
    assert set_new(client, old).status_code == 400
    assert set_new(client, token).status_code == 303  # the fresh one still works
