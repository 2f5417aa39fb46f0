"""The pre-join device check in a real Chromium, against the real app's aiortc echo peer.

The patient's camera (Chromium's fake device) goes to the server and comes back smaller;
the page measures the echo itself (getStats: its size, frame rate, round trip), ends by
itself after the check's time, and plays a test sound; with the server's cap at zero the
page checks locally and says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script  # noqa: F401 (the fixture, used below)

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
def patient_short_check(browser: Any, tmp_path: Path) -> Iterator[tuple[Person, int]]:
    # A 3-second check (the default is 10), so the test waits for its end in seconds.
    yield from patient_in_pre_join(
        browser, {"device_check_seconds": "3", "device_check_max_seconds": "8"}, tmp_path)


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
    assert "round trip" in text and " ms" in text and "frames a second" in text, text
    # The view fits a phone: nothing wider than the 375 px viewport.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_test_id("device-check-stop").click()
    expect(page.get_by_test_id("device-check-start")).to_be_enabled()
    print(f"device check result: {text}")


ECHO_SIZE = """() => {
  const video = document.querySelector('[data-testid="device-check-video"]');
  return [video.videoWidth, video.videoHeight];
}"""
CAMERA_SIZE = """() => new Promise((resolve) => {
  navigator.mediaDevices.getUserMedia({ video: true }).then((stream) => {
    const { width, height } = stream.getVideoTracks()[0].getSettings();
    stream.getTracks().forEach((t) => t.stop());
    resolve([width, height]);
  });
})"""


def test_the_check_ends_by_itself_with_the_echos_true_figures(
        patient_short_check: tuple[Person, int]) -> None:
    from playwright.sync_api import expect

    from signaling.device_check import echo_size

    person, _ = patient_short_check
    page = person.page
    # What the server says on the socket: its reports (what it receives and sends back).
    frames: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    def watch(ws: Any) -> None:
        if "/ws/device-check" in ws.url:
            ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))
            ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", watch)
    section = page.get_by_test_id("device-check")
    result = page.get_by_test_id("device-check-result")
    started = time.monotonic()
    page.get_by_test_id("device-check-start").click()
    try:
        page.wait_for_function(ECHO_PLAYING, timeout=10_000)
        shown_size = page.evaluate(ECHO_SIZE)
        # Nobody presses Stop: the check ends by itself after its 3 seconds.
        expect(section).to_have_attribute("data-state", "done", timeout=10_000)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{person.debug()}") from exc
    took = time.monotonic() - started
    # From the click: 3 s from `ready`, before the server's own deadline (8 s).
    assert 3.0 <= took < 7.5, took
    # The page stopped it (the server's deadline did not).
    assert [m["type"] for m in sent if m["type"] == "stop"] == ["stop"]
    assert "time_limit" not in [f["reason"] for f in frames if f["type"] == "done"]
    expect(page.get_by_test_id("device-check-start")).to_be_enabled()
    expect(page.get_by_test_id("device-check-stop")).to_be_hidden()
    expect(page.get_by_test_id("device-check-status")).to_contain_text("The test is finished")

    # The size shown is the echo's real size: what the video element decoded, what the
    # server says it sent back, and what its rule makes of the camera's size — not the
    # camera's size, and not a constant in the page.
    width, height = int(result.get_attribute("data-width") or 0), \
        int(result.get_attribute("data-height") or 0)
    reports = [f for f in frames if f["type"] == "stats" and f["sent_width"]]
    assert reports, frames
    camera = page.evaluate(CAMERA_SIZE)
    assert [reports[-1]["width"], reports[-1]["height"]] == camera
    assert (width, height) == tuple(shown_size) == \
        (reports[-1]["sent_width"], reports[-1]["sent_height"]) == echo_size(*camera)
    assert (width, height) != tuple(camera)  # the fake camera is wider than the echo
    video = page.locator('[data-figure="video"]')
    expect(video).to_contain_text(f"Video: good — your video came back at {width}×{height}.")
    fps = float(result.get_attribute("data-fps") or 0)
    assert fps > 0
    expect(page.locator('[data-figure="smoothness"]')).to_contain_text(
        f"{round(fps)} frames a second")
    assert ANY_NUMBER.match(result.get_attribute("data-rtt") or "")
    for figure in ("video", "smoothness", "delay"):
        assert page.locator(f'[data-figure="{figure}"]').get_attribute("data-verdict") in (
            "good", "fair", "reduced", "poor")
    # Loopback: a round trip of a few ms is "good".
    expect(page.locator('[data-figure="delay"]')).to_contain_text("Delay: good")
    print(f"device check: {took:.1f} s, {result.inner_text()!r}")


def test_the_speaker_test_plays_a_tone_and_asks(
        patient: tuple[Person, int]) -> None:
    from playwright.sync_api import expect

    person, _ = patient
    page = person.page
    check = page.get_by_test_id("speaker-check")
    expect(check).to_have_attribute("data-state", "idle")
    page.get_by_role("button", name="Play a test sound").click()
    try:
        # "asked" comes after the oscillator's `ended`, which fires only when the audio
        # context's clock ran through the tone: it played.
        expect(check).to_have_attribute("data-state", "asked", timeout=5_000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{person.debug()}") from exc
    assert check.get_attribute("data-played") == "1"
    question = page.get_by_role("group", name="Did you hear it?")
    expect(question).to_be_visible()
    expect(page.get_by_test_id("speaker-check-yes")).to_be_focused()
    help_box = page.get_by_test_id("speaker-check-help")
    expect(help_box).to_be_hidden()
    page.get_by_role("button", name="No, I heard nothing").click()
    expect(check).to_have_attribute("data-state", "not-heard")
    expect(help_box).to_be_visible()
    for advice in ("volume", "sound settings", "headphones"):
        expect(help_box).to_contain_text(advice)
    # Again, and this time heard.
    page.get_by_role("button", name="Play the sound again").click()
    expect(check).to_have_attribute("data-state", "asked", timeout=5_000)
    page.get_by_role("button", name="Yes, I heard it").click()
    expect(page.get_by_test_id("speaker-check-result")).to_have_text(
        "Sound: working. You will hear the visit.")
    expect(help_box).to_be_hidden()
    # Fits a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


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


def test_the_device_test_and_the_audit_log_pass_axe(
        browser: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """axe on the device test (figures, speaker help on show) and on the audit log (its
    rows, its paging, and a date refused beside its field)."""
    axe: Path = request.getfixturevalue("axe_script")
    from playwright.sync_api import expect

    from tests.browser_support import AppServer, Person
    from tests.test_browser_checkin import RUN_AXE

    def serious(page: Any) -> list[dict[str, Any]]:
        # Evaluated (not a <script> tag, which the CSP rightly refuses).
        page.evaluate(axe.read_text())
        found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
        return [v for v in found if v["impact"] in ("serious", "critical")]

    server = AppServer(tmp_path, settings={"device_check_seconds": "2",
                                           "device_check_max_seconds": "6"})
    server.start(demo=True)
    patient = Person(browser, server, "patient@demo.test",
                     viewport={"width": 390, "height": 844})
    admin = Person(browser, server, "admin@demo.test")
    checked: dict[str, list[dict[str, Any]]] = {}
    try:
        patient.sign_in()
        patient.enter_room(patient.first_visit_id())
        page = patient.page
        page.get_by_test_id("device-check-start").click()
        expect(page.get_by_test_id("device-check")).to_have_attribute(
            "data-state", "done", timeout=15_000)
        page.get_by_test_id("speaker-check-play").click()
        page.get_by_test_id("speaker-check-no").click()
        expect(page.get_by_test_id("speaker-check-help")).to_be_visible()
        checked["device test"] = serious(page)

        admin.sign_in()
        page = admin.page
        page.goto("/admin/audit")
        expect(page.get_by_test_id("audit-row").first).to_be_visible()
        checked["audit log"] = serious(page)
        page.get_by_test_id("audit-from").fill("2026-03-09")
        page.get_by_test_id("audit-to").fill("2026-03-08")
        page.get_by_test_id("audit-filter").click()
        expect(page.get_by_test_id("audit-error-to")).to_contain_text("on or after From")
        checked["audit log, a date refused"] = serious(page)
    finally:
        patient.close()
        admin.close()
        server.stop()
    assert checked == {name: [] for name in checked}, checked
