"""The prescriber's day as the clinic's cockpit, in two real Chromiums (issue 17).

The patient checks in and waits; the prescriber's open day shows it live (the card's
check-in level and scores, "Waiting N min", Admit) with the chime; "Running late" from
the card reaches the patient's waiting room at once; Admit on the card opens the visit
and lets the patient in with no second click, and both sides get video.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.checkin_bodies import checkin_body
from tests.test_browser_checkin import axe_script, serious_violations

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # a fixture, used by name

LIVE_MS = 10_000
# Every tone the page's chime plays (alert-sound.js: two oscillators per chime).
COUNT_TONES = """(() => {
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
})();"""
# Set on the page once; still there later means the page was never reloaded.
MARK = "() => { window.__sameDocument = true; }"
SAME_DOCUMENT = "() => window.__sameDocument === true"
# Where to put screenshots for reviewers (unset: none).
SCREENSHOTS = os.environ.get("MENDWELL_SCREENSHOTS")


def check_in(patient: Person, visit_id: int) -> dict[str, Any]:
    """As the patient: complete the visit's check-in (PHQ-9 item 9 answered, so the
    C-SSRS screener too), through the API from their own signed-in page."""
    page = patient.page
    page.goto("/home")
    body = checkin_body(phq9=[2, 2, 2, 2, 1, 1, 1, 1, 1],
                        cssrs={"q1": True, "q2": False, "q6": False}, auditc=[3, 2, 1])
    answer: dict[str, Any] = page.evaluate("""async ([visitId, body]) => {
      const response = await fetch(`/api/v1/visits/${visitId}/checkin`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json",
                   "X-CSRF-Token": document.body.dataset.csrf },
        body: JSON.stringify(body) });
      return { status: response.status, body: await response.json() };
    }""", [visit_id, body])
    assert answer["status"] == 201, answer
    return dict(answer["body"])


def tones(page: Any) -> int:
    found: int = page.evaluate("window.__tones")
    return found


def test_a_waiting_patient_is_admitted_from_the_day_and_told_of_a_late_start(
        app_server: AppServer, people: dict[str, Person]) -> None:
    from playwright.sync_api import expect

    patient, prescriber = people["patient"], people["prescriber"]
    visit_id = patient.first_visit_id()
    prescriber.context.add_init_script(COUNT_TONES)
    day = prescriber.page
    day.goto("/day")
    expect(day.locator("#live-status")).to_have_attribute("data-live", "up")
    day.locator("#alerts-button").click()  # a real tap unlocks sound (and plays it once)
    day.wait_for_function("() => window.__tones >= 2")
    day.evaluate(MARK)
    card = day.locator(f'[data-testid="day-card"][data-visit-id="{visit_id}"]')
    expect(card.get_by_test_id("checkin-glance")).to_contain_text("No check-in yet.")
    expect(card.get_by_test_id("admit")).to_have_count(0)

    # The check-in's level, flags and scores arrive without a reload.
    triaged = check_in(patient, visit_id)
    expect(card.get_by_test_id("checkin-glance")).to_have_attribute(
        "data-level", triaged["level"], timeout=LIVE_MS)
    phq9 = card.locator('[data-testid="key-score"][data-instrument="phq9"]')
    expect(phq9).to_contain_text(str(triaged["scores"]["phq9"]["total"]))
    expect(card.locator('[data-testid="key-score"][data-instrument="phq9_item9"]')
           ).to_contain_text("1")
    expect(card.locator('[data-testid="key-score"][data-instrument="cssrs"]')
           ).to_contain_text(triaged["scores"]["cssrs"]["risk"])
    expect(card.get_by_test_id("checkin-flag")).to_have_count(len(triaged["reasons"]))

    # The patient starts to wait: the card says so, counts, offers Admit, and chimes.
    day.wait_for_timeout(1000)  # whatever the check-in itself chimed has played
    before = tones(day)
    patient.join_waiting_room(visit_id)
    expect(card).to_have_attribute("data-status", "waiting", timeout=LIVE_MS)
    expect(card.get_by_test_id("wait-time")).to_have_text("Waiting 0 min", timeout=LIVE_MS)
    admit = card.get_by_test_id("admit")
    expect(admit).to_be_visible(timeout=LIVE_MS)
    day.wait_for_function(f"() => window.__tones >= {before + 2}", timeout=LIVE_MS)
    expect(day.locator("#day-announcer")).to_contain_text("waiting room")
    assert day.evaluate(SAME_DOCUMENT), "the day was reloaded instead of updated"

    # "Running late" from the card: the waiting room says it at once.
    notice = patient.page.get_by_test_id("running-late")
    expect(notice).to_have_text("")
    card.get_by_test_id("late-menu").locator("summary").click()
    card.get_by_test_id("late-10").click()
    expect(notice).to_have_text("Dr. Priya Shah is running about 10 minutes late. "
                                "Please keep this page open.", timeout=LIVE_MS)
    expect(notice).to_have_attribute("aria-live", "polite")
    expect(card.get_by_test_id("late-notice")).to_contain_text("about 10 minutes late")
    expect(day.locator("#day-announcer")).to_contain_text("10 minutes late")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        day.screenshot(path=str(Path(SCREENSHOTS) / "day-view.png"), full_page=True)
        patient.page.screenshot(path=str(Path(SCREENSHOTS) / "waiting-room-late.png"))

    # Admit on the card: the room opens and lets the patient in, no second click.
    patient.watch_first_frame()
    with day.expect_navigation():
        admit.click()
    day.wait_for_url(lambda url: url.endswith(f"/visits/{visit_id}"))  # ?admit=1 taken off
    prescriber.watch_first_frame()
    for person in (patient, prescriber):
        person.first_frame_at(timeout=20_000)
        person.expect_state("connected")
        person.assert_video_moving("after admission from the day")
    expect(notice).to_have_text("")  # let in: the notice is over
    expect(day.get_by_test_id("admit")).to_have_count(0)
    # A reload of the room does not admit again (nor fail): the patient stays in.
    day.reload()
    prescriber.expect_state("connected", timeout=20_000)
    patient.expect_state("connected")


def test_the_day_view_is_accessible_and_fits_a_phone(
        browser: Any, app_server: AppServer, people: dict[str, Person],
        axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import Person

    patient = people["patient"]
    visit_id = patient.first_visit_id()
    check_in(patient, visit_id)
    patient.join_waiting_room(visit_id)
    phone = Person(browser, app_server, "prescriber@demo.test",
                   viewport={"width": 390, "height": 844}, bypass_csp=True)
    try:
        phone.sign_in()
        page = phone.page
        page.goto("/day")
        card = page.locator(f'[data-testid="day-card"][data-visit-id="{visit_id}"]')
        expect(card.get_by_test_id("admit")).to_be_visible()
        card.get_by_test_id("late-menu").locator("summary").click()
        expect(card.get_by_test_id("late-5")).to_be_visible()
        overflow = page.evaluate(
            "() => document.scrollingElement.scrollWidth - "
            "document.documentElement.clientWidth")
        assert overflow <= 0, f"the day scrolls sideways by {overflow} px at 390 px"
        small = page.evaluate("""() => [...document.querySelectorAll(
            '.day-card button, .day-card a.button, .day-card summary')]
            .filter((b) => b.offsetParent !== null)
            .map((b) => [b.textContent.trim(), b.getBoundingClientRect().height])
            .filter(([, height]) => height < 44)""")
        assert small == [], f"touch targets under 44 px: {small}"
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / "day-view-phone.png"),
                            full_page=True)
    finally:
        phone.close()


def test_no_show_is_asked_in_the_card_and_offers_to_rebook(
        browser: Any, app_server: AppServer, axe_script: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from playwright.sync_api import expect

    from tests.browser_support import Person
    from tests.test_browser_notes import api

    phone = Person(browser, app_server, "prescriber@demo.test",
                   viewport={"width": 390, "height": 844}, bypass_csp=True)
    dialogs: list[str] = []
    try:
        phone.sign_in()
        page = phone.page
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto("/day")
        visits = api(phone, "GET", "/api/v1/visits")["data"]["visits"]
        earlier = next(v for v in visits if v["status"] == "completed"
                       and v["kind"] == "follow_up")
        patient = earlier["patient"]
        # On MOUD: naltrexone started at the last visit (a signed note).
        note_url = f"/api/v1/visits/{earlier['id']}/note"
        start = {"action": "start", "drug": "Naltrexone", "dose": "50", "unit": "mg",
                 "route": "oral", "frequency": "once daily", "reason": "Alcohol use disorder"}
        assert api(phone, "PUT", note_url, {"version": 0, "medication_changes": [start]}
                   )["status"] == 200
        assert api(phone, "POST", f"{note_url}/sign", {"version": 1})["status"] == 200
        # A visit that starts in a few seconds, with the day open before it does.
        starts = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        made = api(phone, "POST", "/api/v1/visits", {
            "patient_id": patient["id"], "kind": "follow_up",
            "scheduled_at": starts.isoformat()})
        assert made["status"] == 201, made
        visit_id = made["data"]["id"]
        page.goto("/day")
        card = page.locator(f'[data-testid="day-card"][data-visit-id="{visit_id}"]')
        ask = card.get_by_test_id("no-show")
        expect(ask).to_be_hidden()
        # day-live.js shows it once the start has passed (it looks every 15 seconds).
        expect(ask).to_be_visible(timeout=25_000)
        expect(ask).to_have_attribute("aria-expanded", "false")

        ask.click()
        confirm = card.get_by_test_id("no-show-confirm")
        expect(confirm).to_be_visible()
        expect(ask).to_have_attribute("aria-expanded", "true")
        expect(card.get_by_test_id("no-show-yes")).to_be_focused()
        expect(card.get_by_test_id("no-show-moud")).to_contain_text("within 7 days")
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
        # Changing one's mind closes it and gives the focus back.
        card.get_by_test_id("no-show-no").click()
        expect(confirm).to_be_hidden()
        expect(ask).to_be_focused()
        assert api(phone, "GET", f"/api/v1/visits/{visit_id}")["data"]["status"] == "scheduled"

        ask.click()
        card.get_by_test_id("no-show-yes").click()
        done = card.get_by_test_id("no-show-done")
        expect(done).to_contain_text("No-show.")
        expect(card.get_by_test_id("no-show-outreach")).to_contain_text(
            "if nothing is rebooked")
        rebook = card.get_by_test_id("no-show-rebook")
        expect(rebook).to_be_focused()
        expect(rebook).to_have_attribute("href", f"/visits/new?patient={patient['id']}")
        expect(card.get_by_test_id("no-show")).to_have_count(0)
        assert api(phone, "GET", f"/api/v1/visits/{visit_id}")["data"]["status"] == "no_show"
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
        small = page.evaluate("""() => [...document.querySelectorAll(
            '.day-card button, .day-card a.button')]
            .filter((b) => b.offsetParent !== null)
            .map((b) => [b.textContent.trim(), b.getBoundingClientRect().height])
            .filter(([, height]) => height < 44)""")
        assert small == [], f"touch targets under 44 px: {small}"
        assert dialogs == [], dialogs
        rebook.click()
        page.wait_for_url(f"**/visits/new?patient={patient['id']}")
    finally:
        phone.close()
