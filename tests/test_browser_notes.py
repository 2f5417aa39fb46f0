"""The note panel in real Chromium against the real app in its own process.

Nothing is lost: typing goes on while the server is killed, the page is reloaded while
it is down (the offline page keeps the text writable), the server comes back on the
same port and database, and the server then holds exactly what was typed, once. Two
tabs editing the same note get a conflict and a merge, not a lost edit. Signing with a
dose change updates the medication list and the patient's after-visit summary. And a
call that drops during an emergency alerts the coordinator.

The patient's section: what the prescriber writes for the patient is previewed as the
patient's summary before signing and is what the summary shows; the in-page sign
confirmation lists what the safety gate still needs before it offers Sign (no native
dialog).

The signing gate in the page: an escalation raised during the visit makes the safety
assessment required at once, the risk judgement is a list, and a check-in after signing
asks for an addendum with a safety assessment, in the note and at the top of the
prescriber's day, until one is written. The day's emergency badge links to the
escalation and goes, live, when it is resolved.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.test_browser_checkin import axe_script

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

# The fixtures (app_server, browser, people) live there; importing the module here
# directly would keep pytest from rewriting its asserts.
pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

STATE = "note-save-state"
HISTORY = "#note-interval_history"

# Every text note-save-state shows from now on, in order.
RECORD_NOTE_STATES = """() => {
  const element = document.querySelector('[data-testid="note-save-state"]');
  window.__noteStates = [element.textContent];
  new MutationObserver(() => window.__noteStates.push(element.textContent))
    .observe(element, { childList: true, characterData: true, subtree: true });
}"""

# A same-origin API call from the page, with the page's session and CSRF token.
API = """async ([method, path, body]) => {
  const response = await fetch(path, { method, credentials: "same-origin",
    headers: { "Content-Type": "application/json",
               "X-CSRF-Token": document.body.dataset.csrf },
    body: body === null ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  return { status: response.status, data };
}"""


def api(person: Person, method: str, path: str, body: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = person.page.evaluate(API, [method, path, body])
    return result


def expect_state(page: Any, text: str, timeout: float = 10_000, who: Person | None = None) -> None:
    from playwright.sync_api import expect

    try:
        expect(page.get_by_test_id(STATE)).to_have_text(text, timeout=timeout)
    except AssertionError as exc:
        debug = who.debug() if who else ""
        raise AssertionError(f"the note never showed {text!r}\n{debug}") from exc


def signed_in(browser: Any, server: AppServer, email: str, **options: Any) -> Person:
    from tests.browser_support import Person

    person = Person(browser, server, email, **options)
    person.sign_in()
    return person


def todays_visit(prescriber: Person) -> int:
    """The demo's first visit today (Jordan Rivera's, starting soon)."""
    prescriber.page.goto("/day")
    found = prescriber.page.locator(".visit[data-visit-id]").first.get_attribute("data-visit-id")
    assert found is not None
    return int(found)


SERTRALINE_START: dict[str, Any] = {
    "action": "start", "drug": "Sertraline", "dose": "50", "unit": "mg", "route": "oral",
    "frequency": "once daily", "reason": "Depression"}


def start_at_last_visit(prescriber: Person, change: dict[str, Any]) -> tuple[int, int]:
    """Sign ``change`` (a medication change) in the note of the demo patient's last
    follow-up, four weeks ago; answer today's visit and the patient's id."""
    visit_id = todays_visit(prescriber)
    visits = api(prescriber, "GET", "/api/v1/visits")["data"]["visits"]
    patient_id: int = next(v for v in visits if v["id"] == visit_id)["patient"]["id"]
    earlier = next(v for v in visits if v["status"] == "completed"
                   and v["patient"]["id"] == patient_id and v["kind"] == "follow_up")
    note_url = f"/api/v1/visits/{earlier['id']}/note"
    saved = api(prescriber, "PUT", note_url, {"version": 0, "medication_changes": [change]})
    assert saved["status"] == 200, saved
    signed = api(prescriber, "POST", f"{note_url}/sign", {"version": saved["data"]["version"]})
    assert signed["status"] == 200, signed
    return visit_id, patient_id


def open_room(person: Person, visit_id: int, page: Any = None) -> Any:
    page = page or person.page
    page.goto(f"/visits/{visit_id}")
    page.get_by_test_id("note-panel").wait_for(timeout=10_000)
    return page


def server_note(person: Person, visit_id: int) -> dict[str, Any]:
    result = api(person, "GET", f"/api/v1/visits/{visit_id}/note")
    assert result["status"] == 200, result
    note: dict[str, Any] = result["data"]
    return note


def test_no_word_is_lost_to_a_server_outage_or_a_reload(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    try:
        visit_id = todays_visit(prescriber)
        page = open_room(prescriber, visit_id)
        # The offline page's worker is installed before anything goes wrong.
        assert page.evaluate("""() => Promise.race([
            navigator.serviceWorker.ready.then(() => true),
            new Promise((resolve) => setTimeout(() => resolve(false), 10000))])""")
        box = page.locator(HISTORY)
        typed = "Sleeping better since the dose change. "
        box.click()
        box.press_sequentially(typed, delay=10)
        expect_state(page, "saved", who=prescriber)

        # 1. The server dies mid-typing; typing goes on; it comes back: offline -> saved.
        page.evaluate(RECORD_NOTE_STATES)
        box.press_sequentially("Mood brighter, ", delay=10)
        app_server.kill()
        box.press_sequentially("appetite back to normal.", delay=10)
        typed += "Mood brighter, appetite back to normal."
        expect_state(page, "offline", who=prescriber)
        assert page.get_by_test_id("note-panel").is_visible()
        app_server.start()
        expect_state(page, "saved", timeout=20_000, who=prescriber)
        states = page.evaluate("window.__noteStates")
        after = states[states.index("offline"):]
        assert set(after) == {"offline", "saved"} and after[-1] == "saved", states
        assert server_note(prescriber, visit_id)["sections"]["interval_history"] == typed

        # 2. Down again; the page is reloaded while the server is down: the offline page
        # has the text and takes more; back up, it is all saved, once.
        app_server.kill()
        more = " Denies thoughts of self-harm."
        box.press_sequentially(more, delay=10)
        typed += more
        expect_state(page, "offline", who=prescriber)
        page.reload()
        offline_box = page.locator('textarea[data-section="interval_history"]')
        expect(offline_box).to_have_value(typed, timeout=10_000)
        expect_state(page, "offline")
        expect(page.get_by_role("heading", name="Mendwell is not reachable")).to_be_visible()
        last = " Plan discussed."
        offline_box.press_sequentially(last, delay=10)
        typed += last
        app_server.start()
        # The offline page goes back to the visit; the kept copy is restored and saved.
        expect(page.locator(HISTORY)).to_have_value(typed, timeout=20_000)
        expect_state(page, "saved", timeout=15_000, who=prescriber)
        note = server_note(prescriber, visit_id)
        assert note["sections"]["interval_history"] == typed
        assert note["sections"]["interval_history"].count("Denies thoughts") == 1
        kept = page.evaluate(f"""() => Object.keys(localStorage)
            .filter((key) => key.startsWith("mendwell.note.{visit_id}."))""")
        assert kept == [], f"the browser still keeps a copy after saving: {kept}"
    finally:
        prescriber.close()


def test_a_save_after_the_session_ended_waits_for_the_next_sign_in(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import DEMO_PASSWORD

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    try:
        visit_id = todays_visit(prescriber)
        page = open_room(prescriber, visit_id)
        other = prescriber.context.new_page()
        other.goto("/day")
        # Signed out in another tab (or the session expired during a long outage).
        assert other.evaluate(API, ["DELETE", "/api/v1/session", None])["status"] == 204
        typed = "Written after the session ended."
        page.locator(HISTORY).press_sequentially(typed, delay=5)
        expect_state(page, "offline", who=prescriber)
        expect(page.locator("#note-message")).to_contain_text("Sign in again in another tab")
        other.goto("/login")
        other.get_by_test_id("email").fill("prescriber@demo.test")
        other.get_by_test_id("password").fill(DEMO_PASSWORD)
        other.get_by_test_id("login").click()
        other.wait_for_url(lambda url: "/login" not in url)
        # The next retry takes the new session's CSRF token and saves.
        expect_state(page, "saved", timeout=20_000, who=prescriber)
        assert server_note(prescriber, visit_id)["sections"]["interval_history"] == typed
        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
    finally:
        prescriber.close()


def test_two_tabs_get_a_conflict_and_merge_without_losing_an_edit(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    try:
        visit_id = todays_visit(prescriber)
        first = open_room(prescriber, visit_id)
        second = open_room(prescriber, visit_id, prescriber.context.new_page())
        # The second tab's saves do not get through for a while (a flaky network) while
        # the first tab saves: both edited version 0.
        note_api = f"**/api/v1/visits/{visit_id}/note"
        second.route(note_api, lambda route: route.abort())
        mine = "Tab two: panic attacks twice a week."
        second.locator(HISTORY).press_sequentially(mine, delay=5)
        expect_state(second, "offline")
        theirs = "Tab one: sleeping seven hours."
        first.locator(HISTORY).press_sequentially(theirs, delay=5)
        expect_state(first, "saved")
        second.unroute(note_api)

        expect_state(second, "conflict", timeout=15_000, who=prescriber)
        expect(second.get_by_test_id("merge-theirs")).to_have_text(theirs)
        expect(second.get_by_test_id("merge-mine")).to_have_text(mine)
        merged = second.get_by_test_id("merge-text")
        # Prefilled with both (to check and edit): the prescriber edits it.
        assert theirs in merged.input_value() and mine in merged.input_value()
        merged.fill(f"{theirs}\n{mine} Worse at night.")
        second.get_by_test_id("merge-save").click()
        expect_state(second, "saved", who=prescriber)

        text = server_note(prescriber, visit_id)["sections"]["interval_history"]
        assert text == f"{theirs}\n{mine} Worse at night."
        # The first tab had nothing unsaved: it shows the merged note by itself.
        expect(first.locator(HISTORY)).to_have_value(text, timeout=10_000)
        expect_state(first, "saved")
    finally:
        prescriber.close()


def test_signing_a_dose_change_updates_the_medication_list_and_the_summary(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 375, "height": 740})
    try:
        # Sertraline was started at the visit four weeks ago (a signed note).
        visit_id, _ = start_at_last_visit(prescriber, SERTRALINE_START)

        page = open_room(prescriber, visit_id)
        expect(page.locator('[data-drug="Sertraline"]')).to_have_attribute("data-dose", "50")
        page.get_by_role("button", name="Add a medication change").click()
        row = page.locator("[data-med-row]").last
        row.locator('[data-field="action"]').select_option("increase")
        row.locator('[data-field="drug"]').fill("Sertraline")
        row.locator('[data-field="dose"]').fill("100")
        row.locator('[data-field="unit"]').fill("mg")
        row.locator('[data-field="route"]').fill("oral")
        row.locator('[data-field="frequency"]').fill("once daily")
        row.locator('[data-field="reason"]').fill("Partial response")
        page.locator("#note-plan").fill("Increase sertraline; recheck in 4 weeks.")
        expect_state(page, "saved", who=prescriber)
        expect(page.get_by_test_id("follow-up-reason")).to_contain_text("dose changed")
        page.get_by_role("button", name="Sign the note").click()
        page.get_by_test_id("sign-confirm").click()
        expect(page.locator("#note-signed-line")).to_contain_text("Signed by Dr. Priya Shah")
        expect(page.locator('[data-drug="Sertraline"]')).to_have_attribute("data-dose", "100")
        assert page.locator(HISTORY).evaluate("(area) => area.readOnly")
        # After signing: an addendum, never an edit; and the next visit at the interval.
        page.locator("#addendum-text").fill("Pharmacy confirmed the new dose.")
        page.get_by_role("button", name="Add the addendum").click()
        expect(page.locator("#addenda-list")).to_contain_text("Pharmacy confirmed the new dose.")
        page.get_by_role("button", name="Schedule next visit").click()
        expect(page.locator("#note-action-result")).to_contain_text("(in 28 days)")

        patient_id = server_note(prescriber, visit_id)["patient_id"]
        meds = api(prescriber, "GET", f"/api/v1/patients/{patient_id}/medications")
        sertraline = next(m for m in meds["data"]["medications"] if m["drug"] == "Sertraline")
        assert sertraline["dose"] == "100"
        assert [h["action"] for h in sertraline["history"]] == ["start", "increase"]

        patient.page.goto("/home")
        patient.page.get_by_test_id("summary-link").first.click()
        summary = patient.page.get_by_test_id("visit-summary")
        expect(summary).to_contain_text("Take more Sertraline: the dose goes up to 100 mg")
        expect(summary).to_contain_text("Partial response")
        expect(patient.page.get_by_test_id("summary-next-visit")).to_contain_text(
            "You will get an email with the link")
        expect(patient.page.get_by_test_id("crisis-resources")).to_contain_text("988")
        expect(patient.page.get_by_role("button", name="Print this summary")).to_be_visible()
    finally:
        prescriber.close()
        patient.close()


def test_a_call_that_drops_during_an_emergency_alerts_the_coordinator(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 375, "height": 740})
    try:
        visit_id = patient.first_visit_id()
        body = checkin_body(cssrs=HIGH_RISK_CSSRS)
        checked_in = api(patient, "POST", f"/api/v1/visits/{visit_id}/checkin",
                         json.loads(json.dumps(body)))
        assert checked_in["status"] == 201, checked_in
        escalation_id = checked_in["data"]["escalations"][0]

        page = open_room(prescriber, visit_id)
        emergency = page.get_by_test_id("emergency-mode")
        expect(emergency).to_be_visible()
        expect(emergency).to_contain_text("12 Elm Street, Springfield")
        expect(page.get_by_test_id("emergency-callback")).to_have_attribute(
            "href", "tel:+16175550100")

        patient.enter_room(visit_id)
        expect(patient.page.get_by_test_id("join")).to_be_enabled(timeout=10_000)
        patient.page.get_by_test_id("join").click()
        page.get_by_test_id("admit").click(timeout=15_000)
        expect(page.get_by_test_id("connection-state")).to_have_text("connected",
                                                                     timeout=15_000)
        # The patient's side goes away without a word (a closed tab, a dead phone).
        patient.page.close()
        alert = page.get_by_test_id("call-drop-alert")
        expect(alert).to_contain_text("dropped during an emergency", timeout=20_000)
        expect(alert).to_contain_text("+1 617-555-0100")
        expect(alert).to_contain_text("The coordinator has been alerted")
        detail = api(prescriber, "GET", f"/api/v1/escalations/{escalation_id}")["data"]
        assert "call_dropped" in [event["kind"] for event in detail["timeline"]]
    finally:
        prescriber.close()
        patient.close()


def resolve_by_api(person: Person, escalation_id: int, disposition: str) -> None:
    url = f"/api/v1/escalations/{escalation_id}"
    assert api(person, "POST", f"{url}/acknowledge")["status"] == 200
    reached = api(person, "POST", f"{url}/events", {
        "kind": "contact_attempt", "outcome": "reached",
        "text": "Reached the patient on the callback number."})
    assert reached["status"] == 201, reached
    resolved = api(person, "POST", f"{url}/resolve", {
        "disposition": disposition, "note": "Emergency services took the patient in."})
    assert resolved["status"] == 200, resolved


def test_the_days_emergency_badge_links_to_the_escalation_and_goes_when_resolved(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 375, "height": 740})
    try:
        visit_id = patient.first_visit_id()
        day = prescriber.page
        day.goto("/day")
        expect(day.locator("#live-status")).to_have_text("Live", timeout=15_000)
        day.evaluate("window.__sameDocument = true")
        checked_in = api(patient, "POST", f"/api/v1/visits/{visit_id}/checkin",
                         json.loads(json.dumps(checkin_body(cssrs=HIGH_RISK_CSSRS))))
        assert checked_in["status"] == 201, checked_in
        escalation_id = checked_in["data"]["escalations"][0]
        badge = day.locator(f'[data-testid="safety-flag"][data-escalation-id="{escalation_id}"]')
        expect(badge).to_have_attribute("href", f"/escalations/{escalation_id}",
                                        timeout=10_000)
        expect(badge).to_have_attribute("data-level", "emergency")

        resolve_by_api(prescriber, escalation_id, "emergency_services")
        expect(badge).to_have_count(0, timeout=10_000)
        assert day.evaluate("window.__sameDocument === true"), "the page was reloaded"
    finally:
        prescriber.close()
        patient.close()


def test_the_gate_and_the_addendum_a_late_checkin_asks_for(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 375, "height": 740})
    try:
        visit_id = patient.first_visit_id()
        patient_id = server_note(prescriber, visit_id)["patient_id"]
        page = open_room(prescriber, visit_id)
        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
        badge = page.locator("#safety-required-badge")
        expect(badge).to_be_hidden()
        # An emergency raised by hand during the visit: the gate applies at once.
        raised = api(prescriber, "POST", "/api/v1/escalations", {
            "patient_id": patient_id, "visit_id": visit_id, "level": "emergency",
            "reason": "suicidal_ideation_plan_or_intent",
            "text": "Said during the visit that they have a plan."})
        assert raised["status"] == 201, raised
        expect(badge).to_be_visible(timeout=10_000)
        expect(page.get_by_test_id("safety-why")).to_contain_text(
            "An open escalation (raised by hand): Suicidal thoughts with a plan or intent")

        # A "." is not an assessment: the sign is refused and says why.
        page.locator("#note-safety_assessed").fill(".")
        page.locator("#note-safety_plan").fill("\u200b" * 12)
        expect_state(page, "saved", who=prescriber)
        page.get_by_role("button", name="Sign the note").click()
        expect(page.get_by_test_id("sign-dialog-missing")).to_contain_text(
            "A safety assessment is required")
        expect(page.get_by_test_id("sign-confirm")).to_be_hidden()
        page.get_by_test_id("sign-cancel").click()
        assert server_note(prescriber, visit_id)["status"] == "draft"

        judgement = page.locator("#note-safety_risk_judgement")
        assert judgement.evaluate("(element) => element.tagName") == "SELECT"
        page.locator("#note-safety_assessed").fill(
            "Ideation with a plan; no access to means; lives with partner.")
        judgement.select_option("high")
        page.locator("#note-safety_plan").fill(
            "Mobile crisis team called; partner stays with the patient; 988 given.")
        expect_state(page, "saved", who=prescriber)
        assert server_note(prescriber, visit_id)["sections"]["safety_risk_judgement"] == "high"
        page.get_by_role("button", name="Sign the note").click()
        page.get_by_test_id("sign-confirm").click()
        expect(page.locator("#note-signed-line")).to_contain_text("Signed by")
        task = page.get_by_test_id("addendum-task")
        expect(task).to_be_hidden()

        # The patient's check-in arrives after signing.
        day = prescriber.context.new_page()
        day.goto("/day")
        expect(day.locator("#live-status")).to_have_text("Live", timeout=15_000)
        late = api(patient, "POST", f"/api/v1/visits/{visit_id}/checkin",
                   json.loads(json.dumps(checkin_body(gad7=[3, 3, 3, 3, 3, 0, 0]))))
        assert late["status"] == 201, late
        expect(task).to_be_visible(timeout=10_000)
        expect(task).to_contain_text("Severe anxiety")
        expect(page.get_by_test_id("addendum-safety-fields")).to_be_visible()
        due = day.get_by_test_id("addendum-due")
        expect(due).to_contain_text("Severe anxiety", timeout=10_000)
        expect(due.get_by_role("link", name="Open the note")).to_have_attribute(
            "href", f"/visits/{visit_id}#addenda")

        page.locator("#addendum-text").fill("Called the patient after the late check-in.")
        page.locator("#addendum-safety-assessed").fill(
            "Anxiety worse this week; no suicidal thoughts since the visit.")
        page.locator("#addendum-safety-judgement").select_option("moderate")
        page.locator("#addendum-safety-plan").fill(
            "Partner still with the patient; crisis numbers confirmed; visit in 3 days.")
        page.get_by_role("button", name="Add the addendum").click()
        expect(task).to_be_hidden(timeout=10_000)
        expect(page.get_by_test_id("addendum-safety").last).to_contain_text("Moderate")
        expect(due).to_have_count(0, timeout=10_000)
        note = server_note(prescriber, visit_id)
        assert note["safety_addendum_task"] is None
        assert note["addenda"][-1]["safety"]["risk_judgement"] == "moderate"
    finally:
        prescriber.close()
        patient.close()


def test_the_patients_section_is_previewed_and_the_sign_confirmation_runs_the_gate_first(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    # axe is injected as a script, which our CSP refuses: in this context only.
    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True)
    checked: dict[str, list[dict[str, Any]]] = {}
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 390, "height": 844})
    native: list[str] = []
    try:
        visit_id = patient.first_visit_id()
        patient_id = server_note(prescriber, visit_id)["patient_id"]
        page = open_room(prescriber, visit_id)
        page.on("dialog", lambda dialog: (native.append(dialog.message), dialog.dismiss()))
        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
        raised = api(prescriber, "POST", "/api/v1/escalations", {
            "patient_id": patient_id, "visit_id": visit_id, "level": "urgent",
            "reason": "suicidal_ideation_plan_or_intent",
            "text": "Said during the visit that they have thought about a plan."})
        assert raised["status"] == 201, raised
        expect(page.locator("#safety-required-badge")).to_be_visible(timeout=10_000)

        page.locator("#note-plan").fill("Cross-titrate to an SNRI if no response by week 6.")
        page.get_by_label("For the patient (goes in their summary)").fill(
            "Keep taking your medicine each morning. <b>Call us</b> if you feel worse.")
        expect_state(page, "saved", who=prescriber)
        page.get_by_text("Preview the patient's summary").click()
        preview = page.get_by_test_id("summary-preview-body")
        expect(preview).to_contain_text(
            "Keep taking your medicine each morning. <b>Call us</b> if you feel worse.")
        expect(preview).not_to_contain_text("SNRI")
        # The preview follows the next save.
        page.get_by_label("For the patient (goes in their summary)").press_sequentially(
            " See you in four weeks.", delay=5)
        expect_state(page, "saved", who=prescriber)
        expect(preview).to_contain_text("See you in four weeks.")
        checked["note panel with the summary preview"] = serious_violations(page, axe_script)

        # The confirmation asks the gate first and lists what is missing; no sign tried.
        sign = page.get_by_role("button", name="Sign the note")
        sign.click()
        dialog = page.get_by_test_id("sign-dialog")
        expect(dialog).to_be_visible()
        sections = page.get_by_test_id("sign-dialog-sections")
        expect(sections).to_contain_text("What was assessed")
        expect(sections).to_contain_text("Risk judgement")
        expect(sections).to_contain_text("Safety plan")
        expect(page.get_by_test_id("sign-dialog-missing")).to_contain_text("An open escalation")
        expect(page.get_by_test_id("sign-confirm")).to_be_hidden()
        checked["sign confirmation listing what is missing"] = serious_violations(
            page, axe_script)
        assert page.evaluate("() => document.getElementById('sign-dialog').contains("
                             "document.activeElement)")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert page.evaluate("() => document.activeElement.id") == "note-sign"
        assert server_note(prescriber, visit_id)["status"] == "draft"

        sign.click()
        page.get_by_test_id("sign-fix").click()
        expect(dialog).to_be_hidden()
        assert page.evaluate("() => document.activeElement.id") == "note-safety_assessed"
        page.locator("#note-safety_assessed").fill(
            "Passive ideation, no intent; no access to means; lives with partner.")
        page.locator("#note-safety_risk_judgement").select_option("moderate")
        page.locator("#note-safety_plan").fill(
            "Safety plan written together; partner aware; 988 given; visit in a week.")
        expect_state(page, "saved", who=prescriber)
        sign.click()
        expect(page.get_by_test_id("sign-dialog-ready")).to_be_visible()
        expect(page.get_by_test_id("sign-confirm")).to_be_focused()
        page.get_by_test_id("sign-confirm").click()
        expect(page.locator("#note-signed-line")).to_contain_text("Signed by")
        # One format: today's time with the clinic's zone named, 24-hour clock.
        expect(page.locator("#note-signed-line")).to_contain_text(
            re.compile(r"on \d\d:\d\d [A-Z]{3,4}\. The note"))
        assert server_note(prescriber, visit_id)["status"] == "signed"

        patient.page.goto(f"/visits/{visit_id}/summary")
        shown = patient.page.get_by_test_id("summary-for-patient")
        expect(shown).to_have_text("Keep taking your medicine each morning. <b>Call us</b> if "
                                   "you feel worse. See you in four weeks.")
        expect(patient.page.get_by_test_id("visit-summary")).not_to_contain_text("SNRI")
        assert native == []
    finally:
        prescriber.close()
        patient.close()
    assert checked == {name: [] for name in checked}, checked
