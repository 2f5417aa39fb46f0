"""The email outbox: retry after an SMTP outage, exactly once, and the development view."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from server import outbox
from server.models import OutboxEmail
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer

RETRY_SECONDS = 30.0


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, smtp_server: SmtpServer) -> dict[str, Any]:
    """Deliver to the test's SMTP server; a test adds more with indirect parametrisation.

    The first retry waits RETRY_SECONDS on the app's clock, long enough that "not due
    yet" does not depend on how fast the machine is.
    """
    extra: dict[str, Any] = getattr(request, "param", {})
    return {"smtp_url": smtp_server.url, "outbox_retry_base_seconds": RETRY_SECONDS} | extra


def invite(client: TestClient, sign_in: SignIn, clinic: Clinic, visit_id: int) -> int:
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{visit_id}/invite")
    assert response.status_code == 201, response.text
    outbox_id: int = response.json()["id"]
    return outbox_id


def row(run: Runner, services: Services, outbox_id: int) -> OutboxEmail:
    async def load() -> OutboxEmail:
        async with services.transaction() as session:
            found = await session.get(OutboxEmail, outbox_id)
            assert found is not None
            return found

    return run(load)


def settle(smtp_server: SmtpServer, count: int) -> int:
    """How many messages arrived, after giving a stray duplicate time to show up."""
    smtp_server.inbox.wait_for(count + 1, timeout=0.5)
    return len(smtp_server.inbox.messages)


def test_an_email_survives_an_smtp_outage_and_arrives_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    smtp_server.stop()
    outbox_id = invite(client, sign_in, clinic, clinic.visit_id)

    assert run(outbox.deliver_due, services) == 0  # no crash: the failure is recorded
    failed = row(run, services, outbox_id)
    assert failed.attempts == 1
    assert failed.sent_at is None
    assert failed.failed_at is None
    assert failed.claimed_until is None
    assert failed.last_error  # the kind of error, for the admin page
    first_retry = failed.next_attempt_at - services.clock.now()
    assert timedelta(seconds=RETRY_SECONDS - 5) < first_retry <= timedelta(
        seconds=RETRY_SECONDS)

    # Not due yet: nothing is tried.
    assert run(outbox.deliver_due, services) == 0
    assert row(run, services, outbox_id).attempts == 1

    # Due, but the server is still down: the wait doubles.
    services.clock.advance(timedelta(seconds=RETRY_SECONDS + 1))
    assert run(outbox.deliver_due, services) == 0
    again = row(run, services, outbox_id)
    assert again.attempts == 2
    second_retry = again.next_attempt_at - services.clock.now()
    assert timedelta(seconds=2 * RETRY_SECONDS - 5) < second_retry <= timedelta(
        seconds=2 * RETRY_SECONDS)

    smtp_server.start()
    services.clock.advance(timedelta(seconds=2 * RETRY_SECONDS + 1))
    assert run(outbox.deliver_due, services) == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["X-Mendwell-Outbox-Id"] == str(outbox_id)
    assert message["To"] == clinic.patient.email
    sent = row(run, services, outbox_id)
    assert sent.sent_at is not None
    assert sent.attempts == 3
    assert sent.last_error is None

    # However often the sender runs from now on, and however much time passes.
    for _ in range(3):
        services.clock.advance(timedelta(hours=1))
        assert run(outbox.deliver_due, services) == 0
    assert settle(smtp_server, 1) == 1
    assert row(run, services, outbox_id).sent_at == sent.sent_at


@pytest.mark.parametrize("settings_overrides", [{"outbox_max_attempts": 2}], indirect=True)
def test_the_sender_gives_up_after_the_last_attempt(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    smtp_server.stop()
    outbox_id = invite(client, sign_in, clinic, clinic.visit_id)
    run(outbox.deliver_due, services)
    services.clock.advance(timedelta(seconds=RETRY_SECONDS + 1))
    run(outbox.deliver_due, services)
    given_up = row(run, services, outbox_id)
    assert (given_up.attempts, given_up.sent_at) == (2, None)
    assert given_up.failed_at is not None

    smtp_server.start()
    services.clock.advance(timedelta(days=1))
    assert run(outbox.deliver_due, services) == 0
    assert settle(smtp_server, 0) == 0


def test_concurrent_senders_send_each_email_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    ids = [invite(client, sign_in, clinic, visit_id)
           for visit_id in (clinic.visit_id, clinic.visit2_id, clinic.visit_id)]

    async def two_senders() -> list[int]:
        return list(await asyncio.gather(outbox.deliver_due(services),
                                         outbox.deliver_due(services)))

    assert sum(run(two_senders)) == len(ids)
    assert settle(smtp_server, len(ids)) == len(ids)
    assert sorted(m["X-Mendwell-Outbox-Id"] for m in smtp_server.inbox.messages) == \
        sorted(str(i) for i in ids)
    for outbox_id in ids:
        sent = row(run, services, outbox_id)
        assert (sent.attempts, sent.sent_at is not None) == (1, True)

    assert sum(run(two_senders)) == 0
    assert settle(smtp_server, len(ids)) == len(ids)


@pytest.mark.parametrize("settings_overrides", [
    {"smtp_url": "", "env": "development"},
], indirect=True)
def test_without_smtp_emails_stay_in_the_outbox_for_admins_to_see(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    outbox_id = invite(client, sign_in, clinic, clinic.visit_id)
    assert run(outbox.deliver_due, services) == 0
    kept = row(run, services, outbox_id)
    assert (kept.sent_at, kept.attempts, kept.last_error) == (None, 0, None)
    assert settle(smtp_server, 0) == 0  # a server was there; nobody was told about it

    sign_in(clinic.admin)
    page = client.get("/admin/outbox")
    assert page.status_code == 200
    assert f'data-outbox-id="{outbox_id}"' in page.text
    assert "No SMTP server is configured" in page.text
    assert clinic.patient.email in page.text
    # In development the link is there to click, since no email will carry it.
    found = re.search(r"http://testserver/\S+", kept.body)
    assert found is not None
    link = found.group(0)
    assert link.startswith(f"http://testserver/visits/{clinic.visit_id}/join?t=")
    assert f'href="{link}"' in page.text
    api = client.get("/api/v1/outbox").json()["emails"]
    assert [(e["id"], e["body"]) for e in api] == [(outbox_id, kept.body)]


@pytest.mark.parametrize("settings_overrides", [
    {"smtp_url": "", "env": "test"},
    {"smtp_url": "", "env": "production"},
], indirect=True)
def test_outside_development_the_outbox_page_hides_the_links(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    outbox_id = invite(client, sign_in, clinic, clinic.visit_id)
    assert run(outbox.deliver_due, services) == 0
    sign_in(clinic.admin)
    page = client.get("/admin/outbox")
    assert page.status_code == 200
    assert f'data-outbox-id="{outbox_id}"' in page.text
    assert "Your Mendwell video visit" in page.text
    assert "/join?t=" not in page.text
    assert "Hello" not in page.text
    assert [e["body"] for e in client.get("/api/v1/outbox").json()["emails"]] == [None]


@pytest.mark.parametrize("who", ["prescriber", "coordinator", "patient"])
def test_only_admins_see_the_outbox(client: TestClient, clinic: Clinic, sign_in: SignIn,
                                    who: str) -> None:
    invite(client, sign_in, clinic, clinic.visit_id)
    sign_in(getattr(clinic, who))
    assert client.get("/admin/outbox").status_code == 403
    assert client.get("/api/v1/outbox").status_code == 403


@pytest.mark.parametrize("settings_overrides", [{"run_background_tasks": True}], indirect=True)
def test_the_background_sender_delivers_without_being_asked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    assert services.settings.outbox_poll_seconds <= 0.1
    outbox_id = invite(client, sign_in, clinic, clinic.visit_id)
    [message] = smtp_server.inbox.wait_for(1, timeout=10)
    assert message["X-Mendwell-Outbox-Id"] == str(outbox_id)

    deadline = time.monotonic() + 10
    while row(run, services, outbox_id).sent_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert row(run, services, outbox_id).sent_at is not None
    assert settle(smtp_server, 1) == 1


@pytest.mark.faults
@pytest.mark.parametrize("settings_overrides", [
    {"run_background_tasks": True, "outbox_retry_base_seconds": 0.2,
     "outbox_retry_max_seconds": 0.5},
], indirect=True)
def test_emails_queued_while_smtp_is_down_arrive_once_each_when_it_returns(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    """The background sender, not a test calling it: emails written during an SMTP
    outage are retried until the server is back, then each arrives exactly once, counted
    both in the database and in what the server received."""
    smtp_server.stop()
    ids = [invite(client, sign_in, clinic, visit_id)
           for visit_id in (clinic.visit_id, clinic.visit2_id) * 3]

    def attempted() -> bool:
        return all(row(run, services, outbox_id).attempts >= 2 for outbox_id in ids)

    deadline = time.monotonic() + 10
    while not attempted():
        assert time.monotonic() < deadline, "the sender did not retry during the outage"
        time.sleep(0.05)
    for outbox_id in ids:
        failed = row(run, services, outbox_id)
        assert (failed.sent_at, failed.failed_at) == (None, None)
        assert failed.last_error
    assert smtp_server.inbox.messages == []

    smtp_server.start()
    back = time.monotonic()
    deadline = back + 10
    while not all(row(run, services, outbox_id).sent_at for outbox_id in ids):
        assert time.monotonic() < deadline, "not every email was sent after SMTP returned"
        time.sleep(0.05)
    delivered_in = time.monotonic() - back
    assert settle(smtp_server, len(ids)) == len(ids)
    assert sorted(m["X-Mendwell-Outbox-Id"] for m in smtp_server.inbox.messages) == \
        sorted(str(i) for i in ids)
    for outbox_id in ids:
        sent = row(run, services, outbox_id)
        assert sent.sent_at is not None
        assert sent.last_error is None
    print(f"\n[smtp outage] {len(ids)} emails delivered {delivered_in:.3f} s after SMTP "
          "returned")
