"""The pre-join device check in a real Chromium, against the real app's aiortc echo peer.

The patient's camera (Chromium's fake device) goes to the server and comes back smaller,
with the round-trip time and frame rate the server measures; with the server's cap at
zero the page checks locally and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.browser_support import Person

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

ECHO_PLAYING = """() => {
  const video = document.querySelector('[data-testid="device-check-video"]');
  return video !== null && video.videoWidth > 0 && video.currentTime > 0;
}"""
ANY_NUMBER = re.compile(r"^\d+$")


def patient_in_pre_join(browser: Any, settings: dict[str, str], tmp_path: Path
                        ) -> Iterator[tuple[Person, int]]:
    from tests.browser_support import AppServer, Person

    server = AppServer(tmp_path, settings=settings)
    server.start(demo=True)
    patient = Person(browser, server, "patient@demo.test", viewport={"width": 375, "height": 740})
    try:
        patient.sign_in()
        visit_id = patient.first_visit_id()
        patient.enter_room(visit_id)
        yield patient, visit_id
    finally:
        patient.close()
        server.stop()


@pytest.fixture
def patient(browser: Any, tmp_path: Path) -> Iterator[tuple[Person, int]]:
    yield from patient_in_pre_join(browser, {}, tmp_path)


@pytest.fixture
def patient_at_capacity(browser: Any, tmp_path: Path) -> Iterator[tuple[Person, int]]:
    yield from patient_in_pre_join(browser, {"device_check_limit": "0"}, tmp_path)


def test_the_patient_sees_their_video_come_back_with_rtt_and_fps(
        patient: tuple[Person, int]) -> None:
    from playwright.sync_api import expect

    person, _ = patient
    page = person.page
    start = page.get_by_role("button", name="Test camera and microphone")
    expect(start).to_be_enabled()
    start.click()
    try:
        page.wait_for_function(ECHO_PLAYING, timeout=15_000)
        result = page.get_by_test_id("device-check-result")
        expect(result).to_have_attribute("data-rtt", ANY_NUMBER, timeout=15_000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{person.debug()}") from exc
    except Exception as exc:
        raise AssertionError(f"the echo never played: {exc}\n{person.debug()}") from exc
    width = page.evaluate(
        "document.querySelector('[data-testid=\"device-check-video\"]').videoWidth")
    assert 0 < width <= 320  # sent back at reduced resolution
    assert result.get_attribute("data-mode") == "server"
    assert float(result.get_attribute("data-fps") or 0) > 0
    text = result.inner_text()
    assert "Round trip" in text and " ms" in text and "frames a second" in text, text
    # The view fits a phone: nothing wider than the 375 px viewport.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_test_id("device-check-stop").click()
    expect(page.get_by_test_id("device-check-start")).to_be_enabled()
    print(f"device check result: {text}")


def test_at_capacity_the_page_checks_locally_and_says_so(
        patient_at_capacity: tuple[Person, int]) -> None:
    from playwright.sync_api import expect

    person, _ = patient_at_capacity
    page = person.page
    page.get_by_role("button", name="Test camera and microphone").click()
    result = page.get_by_test_id("device-check-result")
    expect(result).to_have_attribute("data-mode", "local", timeout=10_000)
    expect(result).to_contain_text("Local check only")
    expect(page.get_by_test_id("device-check-status")).to_contain_text("busy")
    expect(page.get_by_test_id("device-check-status")).to_contain_text("on this device")
    page.wait_for_function(ECHO_PLAYING, timeout=10_000)  # the local preview
    expect(page.get_by_test_id("device-check-meter")).to_be_visible()



INVITE = """async (visitId) => {
  const response = await fetch(`/api/v1/visits/${visitId}/guests`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
    body: JSON.stringify({ name: "Ana Interpreter", email: "ana@interpreters.test" }) });
  return { status: response.status, body: await response.json() };
}"""


def test_an_invited_guest_checks_devices_and_waits(browser: Any, tmp_path: Path) -> None:
    """The emailed link, opened with no account: the device check runs on the guest's
    token and joining puts the guest in the waiting room (the token went in hello)."""
    import sqlite3
    from urllib.parse import urlsplit

    from playwright.sync_api import expect

    from tests.browser_support import AppServer, Person

    server = AppServer(tmp_path)
    server.start(demo=True)
    prescriber = Person(browser, server, "prescriber@demo.test")
    patient = Person(browser, server, "patient@demo.test")
    guest = Person(browser, server, "guest (no account)", viewport={"width": 375, "height": 740})
    try:
        patient.sign_in()
        visit_id = patient.first_visit_id()
        prescriber.sign_in()
        prescriber.page.goto("/day")
        invited = prescriber.page.evaluate(INVITE, visit_id)
        assert invited["status"] == 201, invited
        with sqlite3.connect(server.database) as db:
            (body,) = db.execute("SELECT body FROM email_outbox WHERE id = ?",
                                 (invited["body"]["outbox_id"],)).fetchone()
        link = next(line for line in body.splitlines() if line.startswith("http"))
        parts = urlsplit(link)
        page = guest.page
        page.goto(f"{parts.path}?{parts.query}")
        expect(page.get_by_role("heading", name="Video visit with")).to_be_visible()
        page.get_by_role("button", name="Test camera and microphone").click()
        try:
            page.wait_for_function(ECHO_PLAYING, timeout=15_000)
        except Exception as exc:
            raise AssertionError(f"no echo for the guest: {exc}\n{guest.debug()}") from exc
        assert page.get_by_test_id("device-check-result").get_attribute("data-mode") != "local"
        page.get_by_test_id("join").click()
        expect(page.get_by_test_id("connection-state")).to_have_text("waiting")
        expect(page.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
    finally:
        for person in (prescriber, patient, guest):
            person.close()
        server.stop()
