"""A prescriber books, moves and cancels a visit through the scheduling pages, on a
phone and on a desktop, and the patient's emails arrive at a real SMTP server (aiosmtpd)
each with its calendar event: METHOD:REQUEST at the patient's time, then the same UID
with a higher SEQUENCE, then METHOD:CANCEL. The pages pass axe (nothing serious or
critical) and log no error, so no Content-Security-Policy refusal either."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from email.message import Message
from pathlib import Path
from time import monotonic as time_now
from time import sleep
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from tests.mail import SmtpServer
from tests.test_browser_checkin import axe_script, serious_violations

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

CLINIC = "America/New_York"
PATIENT_ZONE = "America/Chicago"
PATIENT = "patient@demo.test"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 860}}
SCREENSHOTS = os.environ.get("MENDWELL_SCREENSHOTS")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(tmp_path: Path, smtp: SmtpServer) -> Iterator[AppServer]:
    """The demo clinic, sending its outbox to ``smtp`` as soon as it can."""
    from tests.browser_support import AppServer

    server = AppServer(tmp_path, settings={"smtp_url": smtp.url, "outbox_poll_seconds": "0.2",
                                           "clinic_timezone": CLINIC})
    server.start(demo=True)
    yield server
    server.stop()


class Device:
    """One person's browser at one size, axe allowed in (CSP bypassed for this context
    only), every console error kept."""

    def __init__(self, browser: Any, server: AppServer, size: str) -> None:
        phone = size == "phone"
        self.size = size
        self.errors: list[str] = []
        self.context = browser.new_context(
            base_url=server.base_url, viewport=SIZES[size], is_mobile=phone, has_touch=phone,
            bypass_csp=True)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def sign_in(self, email: str) -> None:
        from tests.browser_support import DEMO_PASSWORD

        page = self.page
        page.goto("/login")
        page.get_by_test_id("email").fill(email)
        page.get_by_test_id("password").fill(DEMO_PASSWORD)
        page.get_by_test_id("login").click()
        page.wait_for_url(lambda url: "/login" not in url)

    def shot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}-{self.size}.png"),
                                 full_page=True)

    def close(self) -> None:
        self.context.close()


def emails_to(smtp: SmtpServer, address: str, count: int,
              timeout: float = 20.0) -> list[Message]:
    deadline = time_now() + timeout
    found: list[Message] = []
    while time_now() < deadline:
        found = [m for m in smtp.inbox.wait_for(1, timeout=0.2) if m["To"] == address]
        if len(found) >= count:
            return found
        sleep(0.2)
    raise AssertionError(f"{len(found)} of {count} emails to {address} arrived: " + ", ".join(
        f"{m['To']}: {m['Subject']}" for m in smtp.inbox.messages))


def calendar_of(message: Message) -> tuple[str, Any]:
    """The email's text/calendar part's METHOD parameter, and its one event."""
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    ics = part.get_payload(decode=True)
    assert isinstance(ics, bytes)
    calendar = Calendar.from_ical(ics)
    assert str(calendar["METHOD"]) == part.get_param("method")
    [event] = calendar.walk("VEVENT")
    return str(part.get_param("method")), event


def fill_when(page: Any, day: date, clock: str, minutes: int) -> None:
    page.get_by_test_id("visit-date").fill(day.isoformat())
    page.get_by_test_id("visit-time").fill(clock)
    page.get_by_test_id("duration").fill(str(minutes))


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_a_prescriber_books_moves_and_cancels_a_visit_and_the_calendar_follows(
    browser: Any, mail_server: AppServer, smtp: SmtpServer, axe_script: Path, size: str,
) -> None:
    from playwright.sync_api import expect

    # The patient lives an hour behind the clinic, and says so on their own page.
    patient = Device(browser, mail_server, size)
    try:
        patient.sign_in(PATIENT)
        patient.page.goto("/account/time-zone")
        patient.page.locator("#timezone").fill(PATIENT_ZONE)
        patient.page.get_by_role("button", name="Save time zone").click()
        expect(patient.page.get_by_test_id("time-zone-saved")).to_be_visible()
    finally:
        patient.close()

    checked: dict[str, list[dict[str, Any]]] = {}
    device = Device(browser, mail_server, size)
    try:
        device.sign_in("prescriber@demo.test")
        page = device.page
        page.goto("/day")
        page.get_by_test_id("schedule-visit").click()
        page.wait_for_url("**/visits/new")
        # The prescriber books for themself unless they choose a colleague.
        expect(page.get_by_test_id("schedule-prescriber")).to_have_value(
            page.get_by_test_id("schedule-prescriber").locator("option", has_text="(you)")
            .get_attribute("value") or "")
        page.get_by_test_id("schedule-patient").select_option(label="Jordan Rivera")
        day = datetime.now(ZoneInfo(CLINIC)).date() + timedelta(days=3)
        fill_when(page, day, "15:00", 30)
        start = datetime.combine(day, time(15), tzinfo=ZoneInfo(CLINIC))
        patient_clock = start.astimezone(ZoneInfo(PATIENT_ZONE)).strftime("%H:%M %Z")
        # The patient's time, live, before anything is sent: 14:00 in Chicago.
        expect(page.get_by_test_id("patient-time")).to_have_text(
            f"{start.strftime('%a %-d %b')}, {patient_clock}")
        expect(page.get_by_test_id("schedule-preview")).to_contain_text("America/Chicago")
        checked["/visits/new"] = serious_violations(page, axe_script)
        device.shot("schedule-visit")
        page.get_by_test_id("schedule-submit").click()
        page.wait_for_url("**/change?done=scheduled")
        visit_id = int(page.url.split("/visits/")[1].split("/")[0])
        expect(page.get_by_test_id("change-done")).to_be_visible()
        expect(page.get_by_test_id("visit-when-patient")).to_contain_text(patient_clock)
        checked["/visits/{id}/change"] = serious_violations(page, axe_script)

        [invitation] = emails_to(smtp, PATIENT, 1)
        method, event = calendar_of(invitation)
        assert method == "REQUEST"
        uid, sequence = str(event["UID"]), int(event["SEQUENCE"])
        assert uid == f"visit-{visit_id}@127.0.0.1"
        assert event.decoded("DTSTART") == start
        assert event["DTSTART"].params["TZID"] == PATIENT_ZONE
        assert event.decoded("DTSTART").strftime("%H:%M") == "14:00"
        assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=30)

        # The same time again: the page lists the visit just booked and books nothing
        # unless told to.
        page.goto("/visits/new")
        page.get_by_test_id("schedule-patient").select_option(label="Sam Lee")
        fill_when(page, day, "15:15", 15)
        page.get_by_test_id("schedule-submit").click()
        expect(page.get_by_test_id("conflicts")).to_be_visible()
        expect(page.get_by_test_id("conflict")).to_have_attribute("data-visit-id",
                                                                  str(visit_id))
        expect(page.get_by_test_id("book-anyway")).to_be_visible()
        checked["/visits/new with a conflict"] = serious_violations(page, axe_script)
        device.shot("schedule-conflict")

        # A guest for the visit.
        page.goto(f"/visits/{visit_id}/change")
        page.get_by_test_id("guests-link").click()
        page.get_by_test_id("guest-name").fill("Ana Interpreter")
        page.get_by_test_id("guest-email").fill("ana@interpreters.test")
        page.get_by_test_id("invite-guest").click()
        expect(page.get_by_test_id("guest")).to_have_attribute("data-state", "invited")
        checked["/visits/{id}/guests"] = serious_violations(page, axe_script)
        emails_to(smtp, "ana@interpreters.test", 1)

        # Moved an hour later: the calendar's event is replaced, not doubled.
        page.goto(f"/visits/{visit_id}/change")
        fill_when(page, day, "16:00", 30)
        page.get_by_test_id("change-submit").click()
        page.wait_for_url("**/change?done=moved")
        moved = start + timedelta(hours=1)
        expect(page.get_by_test_id("visit-when-patient")).to_contain_text(
            moved.astimezone(ZoneInfo(PATIENT_ZONE)).strftime("%H:%M %Z"))
        method, event = calendar_of(emails_to(smtp, PATIENT, 2)[-1])
        assert method == "REQUEST"
        assert str(event["UID"]) == uid and int(event["SEQUENCE"]) > sequence
        assert event.decoded("DTSTART") == moved
        sequence = int(event["SEQUENCE"])

        # Cancelled, after saying so in the page (no native confirm()).
        page.on("dialog", lambda dialog: pytest.fail(f"a native dialog: {dialog.message}"))
        expect(page.get_by_test_id("cancel-confirm")).to_be_hidden()
        page.get_by_test_id("cancel-start").click()
        page.get_by_test_id("cancel-confirm").click()
        page.wait_for_url("**/change?done=cancelled")
        expect(page.get_by_test_id("not-changeable")).to_be_visible()
        expect(page.get_by_test_id("visit-status")).to_have_text("Cancelled")
        method, event = calendar_of(emails_to(smtp, PATIENT, 3)[-1])
        assert method == "CANCEL"
        assert str(event["UID"]) == uid and int(event["SEQUENCE"]) > sequence
        assert str(event["STATUS"]) == "CANCELLED"
        checked["/visits/{id}/change, cancelled"] = serious_violations(page, axe_script)
        errors = [e for e in device.errors if "favicon" not in e and "status of 409" not in e]
        assert not errors, "the pages logged errors:\n" + "\n".join(errors)
    finally:
        device.close()
    failures = {where: found for where, found in checked.items() if found}
    assert not failures, json.dumps(failures, indent=2)
