"""Two flows that go through the patient's inbox, in Chromium, with the emails delivered
to a real SMTP server (aiosmtpd):

- a reminder is sent once, 24 hours before the visit, however often the server starts
  again around its moment, and its link opens the visit on the patient's phone;
- a forgotten password: asked for from the sign-in page, the emailed link sets a new one
  once, and only the new one signs in.

The server runs ahead of the wall clock under libfaketime (the stand-in for time passing,
as aiosmtpd is for the mail system): the app itself has no way to be told the time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from tests.mail import SmtpServer
from tests.test_browser_checkin import axe_script, serious_violations
from tests.test_browser_scheduling import Device, calendar_of, emails_to, fill_when

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

CLINIC = "America/New_York"
PATIENT = "patient@demo.test"


def faketime() -> str:
    from tests.browser_support import unavailable

    found = shutil.which("faketime")
    if found is None:
        unavailable("faketime is not installed (apt-get install faketime)")
    assert found is not None
    return found


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def ahead_server(tmp_path: Path, smtp: SmtpServer) -> AppServer:
    """The demo clinic sending its outbox to ``smtp``, whose clock can be set ahead."""
    from tests.browser_support import AppServer

    class AheadServer(AppServer):
        ahead = timedelta(0)

        def command(self, *args: str) -> list[str]:
            command = super().command(*args)
            if not self.ahead:
                return command
            minutes = int(self.ahead.total_seconds() // 60)
            return [faketime(), "-f", f"+{minutes}m", *command]

    return AheadServer(tmp_path, settings={
        "smtp_url": smtp.url, "outbox_poll_seconds": "0.2", "clinic_timezone": CLINIC,
        "reminder_poll_seconds": "0.3"})


def text_of(message: Any) -> str:
    """The plain-text part of an email, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/plain part")


def reminders(smtp: SmtpServer) -> list[Any]:
    return [m for m in smtp.inbox.messages
            if m["To"] == PATIENT and "reminder" in str(m["Subject"]).lower()]


def test_a_reminder_is_sent_once_and_opens_the_visit_on_a_phone(
        browser: Any, tmp_path: Path, smtp: SmtpServer) -> None:
    from playwright.sync_api import expect

    faketime()
    server: Any = ahead_server(tmp_path, smtp)
    server.start(demo=True)
    try:
        desk = Device(browser, server, "desktop")
        try:
            desk.sign_in("prescriber@demo.test")
            page = desk.page
            page.goto("/visits/new")
            page.get_by_test_id("schedule-patient").select_option(label="Jordan Rivera")
            # 24 hours and 20 minutes ahead: the 24-hour reminder is due in 20 minutes.
            start = (datetime.now(ZoneInfo(CLINIC)) + timedelta(hours=24, minutes=20)) \
                .replace(second=0, microsecond=0)
            fill_when(page, start.date(), start.strftime("%H:%M"), 15)
            page.get_by_test_id("schedule-submit").click()
            page.wait_for_url("**/change?done=scheduled")
            visit_id = int(page.url.split("/visits/")[1].split("/")[0])
        finally:
            desk.close()
        [invitation] = emails_to(smtp, PATIENT, 1)
        assert calendar_of(invitation)[0] == "REQUEST"
        assert reminders(smtp) == []

        # Half an hour on: the reminder falls due while the server is down, and is sent
        # by the server that starts next, once.
        server.stop()
        server.ahead = timedelta(minutes=30)
        server.start()
        deadline = monotonic() + 20
        while not reminders(smtp) and monotonic() < deadline:
            sleep(0.2)
        [reminder] = reminders(smtp)
        body = text_of(reminder)
        assert f"{start.strftime('%H:%M')} EST" in body or \
            f"{start.strftime('%H:%M')} EDT" in body, body
        # Started again, and again a minute later: nothing more to send.
        server.stop()
        server.ahead = timedelta(minutes=31)
        server.start()
        sleep(2)  # more than six turns of the reminder job
        server.stop()
        server.ahead = timedelta(minutes=32)
        server.start()
        sleep(2)
        assert len(reminders(smtp)) == 1

        link = re.search(r"http\S+/visits/\d+/join\?t=\S+", body)
        assert link is not None, body
        phone = Device(browser, server, "phone")
        try:
            phone.page.goto(link.group(0))
            expect(phone.page.get_by_test_id("join")).to_be_visible()
            assert f"/visits/{visit_id}/join" in phone.page.url
        finally:
            phone.close()
    finally:
        server.stop()


def test_a_forgotten_password_is_reset_by_the_emailed_link_once(
        browser: Any, tmp_path: Path, smtp: SmtpServer, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import DEMO_PASSWORD

    server: Any = ahead_server(tmp_path, smtp)
    server.start(demo=True)
    checked: dict[str, list[dict[str, Any]]] = {}
    phone = Device(browser, server, "phone")
    try:
        page = phone.page
        page.goto("/login")
        page.get_by_test_id("forgot-password").click()
        page.wait_for_url("**/password-reset")
        checked["/password-reset"] = serious_violations(page, axe_script)
        page.get_by_test_id("reset-email").fill(PATIENT)
        page.get_by_test_id("reset-ask").click()
        expect(page.get_by_test_id("reset-sent")).to_be_visible()
        # The same answer for an address nobody uses: nothing says which exist.
        shown = page.get_by_test_id("reset-sent").inner_text()
        page.get_by_test_id("reset-email").fill("nobody@demo.test")
        page.get_by_test_id("reset-ask").click()
        expect(page.get_by_test_id("reset-sent")).to_have_text(shown)

        [email] = emails_to(smtp, PATIENT, 1)
        body = text_of(email)
        link = re.search(r"http\S+/password-reset/new\?t=\S+", body)
        assert link is not None, body
        assert DEMO_PASSWORD not in body
        assert [m for m in smtp.inbox.messages if m["To"] == "nobody@demo.test"] == []

        page.goto(link.group(0))
        checked["/password-reset/new"] = serious_violations(page, axe_script)
        new_password = "a brand new passphrase 7"
        page.get_by_test_id("reset-password").fill(new_password)
        page.get_by_test_id("reset-confirm").fill(new_password)
        page.get_by_test_id("reset-save").click()
        page.wait_for_url("**/login?reason=reset")

        # The link was for once: opened again, it says so and offers no form.
        page.goto(link.group(0))
        expect(page.get_by_test_id("reset-error")).to_be_visible()
        expect(page.get_by_test_id("reset-password")).to_have_count(0)

        # The old password no longer signs in; the new one does.
        for password, ok in ((DEMO_PASSWORD, False), (new_password, True)):
            page.goto("/login")
            page.get_by_test_id("email").fill(PATIENT)
            page.get_by_test_id("password").fill(password)
            page.get_by_test_id("login").click()
            if ok:
                page.wait_for_url(lambda url: "/login" not in url)
            else:
                expect(page.locator("[role=alert]").first).to_be_visible()
                assert "/login" in page.url
    finally:
        phone.close()
        server.stop()
    assert checked == {name: [] for name in checked}, checked
