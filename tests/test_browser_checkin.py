"""The patient's check-in in real Chromium, on a phone-sized screen, against the real app.

The app runs as ``mendwell serve`` (tests.browser_support.AppServer) on a SQLite file
seeded with ``mendwell demo``;
the demo patient checks in for the visit the demo schedules in a few minutes. Every
test checks that the page logged no error, which includes Content-Security-Policy
refusals (no inline scripts or styles).

axe-core comes from npm: ``bench/node_modules`` when the benchmarks installed it, else
``tests/.node`` (installed on first use, ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.browser_support import AppServer

# The browser fixture lives there. The module is imported by pytest as a
# plugin, so its asserts are rewritten; names from it are imported where used.
pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parent.parent
PHONE = {"width": 375, "height": 740}
WAIT_MS = 10_000
ITEM9 = "responses.phq9.answers.8"
# Where to put screenshots of the flow, for a person to look at (unset: none).
SCREENSHOTS = os.environ.get("MENDWELL_SCREENSHOTS")


# --- a phone, signed in as the demo patient -------------------------------------------


class Phone:
    def __init__(self, browser: Any, server: AppServer, *, bypass_csp: bool = False) -> None:
        self.server = server
        self.browser = browser
        self.bypass_csp = bypass_csp
        self.errors: list[str] = []
        self.context = browser.new_context(
            base_url=server.base_url, viewport=PHONE, is_mobile=True, has_touch=True,
            bypass_csp=bypass_csp)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.open_page()

    def open_page(self) -> Any:
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        return page

    def sign_in(self, email: str = "patient@demo.test") -> None:
        from tests.browser_support import DEMO_PASSWORD

        page = self.page
        page.goto("/login")
        page.get_by_test_id("email").fill(email)
        page.get_by_test_id("password").fill(DEMO_PASSWORD)
        with page.expect_response(lambda r: r.request.method == "POST" and
                                  r.url.endswith("/login")) as posted:
            page.get_by_test_id("login").click()
        assert posted.value.status == 303 or posted.value.ok, \
            f"sign-in refused: {posted.value.status} {posted.value.text()[:200]}"
        page.wait_for_url(lambda url: "/login" not in url)

    def open_checkin(self) -> int:
        page = self.page
        page.goto("/home")
        link = page.get_by_test_id("checkin-link").first
        href = link.get_attribute("href")
        assert href is not None
        link.click()
        page.wait_for_selector("#checkin-form.is-live")
        return int(href.split("/")[2])

    def reopen(self, visit_id: int) -> None:
        self.page = self.open_page()
        self.page.goto(f"/visits/{visit_id}/checkin")
        self.page.wait_for_selector("#checkin-form.is-live")

    def shot(self, name: str, *, full_page: bool = False) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"),
                                 full_page=full_page)

    def api(self, path: str) -> Any:
        response = self.context.request.get(path)
        assert response.ok, f"GET {path}: {response.status}"
        return response.json()

    def assert_no_errors(self, *, refused: int = 0) -> None:
        """No error logged; ``refused``: the test itself provoked that many 422s (the
        browser logs each one), exactly."""
        # The 404 of a missing favicon is the browser's own request, not the page's.
        errors = [e for e in self.errors if "favicon" not in e and "status of 404" not in e]
        refusals = [e for e in errors if "status of 422" in e]
        assert len(refusals) == refused, f"expected {refused} refusals: {refusals}"
        errors = [e for e in errors if e not in refusals]
        assert not errors, "the page logged errors:\n" + "\n".join(errors)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[AppServer]:
    """The app on a fresh SQLite file, seeded by ``mendwell demo`` before it starts."""
    from tests.browser_support import AppServer

    server = AppServer(tmp_path)
    seeded = subprocess.run(server.command("demo"), env=server.env(), cwd=ROOT,
                            capture_output=True, timeout=60, check=False)
    assert seeded.returncode == 0, f"mendwell demo failed:\n{seeded.stderr.decode()}"
    server.start()
    yield server
    server.stop()


@pytest.fixture
def phone(browser: Any, demo_server: AppServer) -> Iterator[Phone]:
    device = Phone(browser, demo_server)
    device.sign_in()
    yield device
    device.close()


# --- driving the form ---------------------------------------------------------------


def question(page: Any, field: str) -> Any:
    return page.locator(f'.q[data-field="{field}"]')


def choose(page: Any, field: str, label: str) -> None:
    """Tap an answer of the question on show, as a patient would."""
    from playwright.sync_api import expect

    q = question(page, field)
    expect(q).to_be_visible()
    q.locator("label.option").filter(has_text=label).first.tap()
    expect(q.get_by_label(label, exact=True)).to_be_checked()


def next_screen(page: Any) -> None:
    page.get_by_test_id("checkin-next").tap()


def wait_saved(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("checkin-save-state")).to_have_attribute(
        "data-state", "saved", timeout=WAIT_MS)


def answer_phq9(page: Any, answers: list[str]) -> None:
    for index, label in enumerate(answers):
        choose(page, f"responses.phq9.answers.{index}", label)
        next_screen(page)


def pass_where_step(page: Any) -> None:
    """"Where are you right now?", asked next when the answers are urgent (CLINICAL.md
    invariant 2): confirm what is prefilled (or a place when nothing is) and carry on."""
    from playwright.sync_api import expect

    step = page.get_by_test_id("checkin-where")
    expect(step).to_be_visible()
    address = page.get_by_test_id("checkin-where-address")
    if not address.input_value().strip():
        address.fill("221 Maple Avenue, Apt 3, Springfield")
    page.get_by_test_id("checkin-where-confirm").check()
    with page.expect_response(lambda r: r.request.method == "PUT" and
                              r.url.endswith("/checkin/emergency-info")) as sent:
        next_screen(page)
    assert sent.value.ok, sent.value.text()
    expect(step).to_be_hidden()


def finish_from_here(phone: Phone, visit_id: int) -> dict[str, Any]:
    """Answer whatever is asked, screen by screen, until the check-in is sent."""
    from playwright.sync_api import expect

    page = phone.page
    for _ in range(60):
        for q in page.locator(".q:visible").all():
            kind = q.get_attribute("data-kind")
            field = q.get_attribute("data-field")
            if kind == "choice" and not q.locator("input:checked").count():
                if field == "sex":
                    continue
                q.locator("label.option").first.tap()
            elif kind == "number":
                q.locator("input").fill("7.5")
            elif kind == "side-effects":
                q.locator("label.option").filter(has_text="Feeling sleepy").tap()
                q.locator('.severity[data-effect="sedation"] label.option').filter(
                    has_text="Mild").tap()
            elif kind == "emergency":
                q.locator("input[data-confirm]").check()
        last = page.get_by_test_id("checkin-next").inner_text() == "Send my check-in"
        next_screen(page)
        if last:
            break
    expect(page.get_by_test_id("checkin-done")).to_be_visible()
    state: dict[str, Any] = phone.api(f"/api/v1/visits/{visit_id}/checkin")
    return state


# --- the tests ------------------------------------------------------------------------


def test_item9_brings_the_cssrs_and_a_high_risk_answer_shows_crisis_resources(
    phone: Phone,
) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    crisis = page.get_by_test_id("crisis-resources")
    expect(crisis).to_be_hidden()
    phone.shot("checkin-first-question")
    answer_phq9(page, ["Not at all"] * 8)
    expect(question(page, "responses.cssrs.answers.q1")).to_be_hidden()

    # Item 9 without a C-SSRS is urgent on its own (CLINICAL.md): help shows at once.
    # (An earlier answer's save may still be on its way: wait for this answer's.)
    with page.expect_response(lambda r: r.request.method == "PUT" and
                              r.json().get("requires") == ["cssrs"]) as saved:
        choose(page, ITEM9, "Several days")
    assert saved.value.json()["level"] == "urgent"
    expect(crisis).to_be_visible()
    expect(crisis).to_have_attribute("data-level", "urgent")
    expect(crisis).to_contain_text("Your care team has been alerted")
    next_screen(page)
    # Where the patient is comes first (invariant 2), then the screener, before the
    # rest of PHQ-9.
    pass_where_step(page)
    expect(question(page, "responses.cssrs.answers.q1")).to_be_visible()
    expect(question(page, "responses.phq9.difficulty")).to_be_hidden()
    phone.shot("checkin-cssrs")

    choose(page, "responses.cssrs.answers.q1", "Yes")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q2", "Yes")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q3", "No")  # asked because q2 is yes
    next_screen(page)
    with page.expect_response(lambda r: r.request.method == "PUT" and
                              r.json().get("level") == "emergency"):
        choose(page, "responses.cssrs.answers.q4", "Yes")
    expect(crisis).to_be_visible()
    expect(crisis).to_have_attribute("data-level", "emergency")
    expect(crisis).to_contain_text("988")
    expect(crisis).to_contain_text("911")
    expect(crisis).to_contain_text("Your care team has been alerted")
    expect(crisis).to_contain_text("press 1 for the Veterans Crisis Line")
    expect(crisis.locator('a[href="tel:988"]').first).to_be_visible()
    expect(crisis.locator('a[href="sms:988"]')).to_be_visible()
    expect(crisis.locator('a[href="tel:911"]').first).to_be_visible()
    phone.shot("checkin-crisis")

    # The patient can carry on, with the numbers still one tap away.
    next_screen(page)
    expect(question(page, "responses.cssrs.answers.q5")).to_be_visible()
    expect(page.locator("#crisis-strip")).to_be_visible()
    stored = phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]
    assert stored["level"] == "emergency"
    assert stored["data"]["responses"]["cssrs"]["answers"]["q4"] is True
    phone.assert_no_errors()


def test_skip_logic_and_back_keep_every_answer(phone: Phone) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    answer_phq9(page, ["Several days", "Not at all", "Not at all", "Nearly every day",
                       "Not at all", "Not at all", "Not at all", "Not at all"])
    choose(page, ITEM9, "Several days")
    next_screen(page)
    pass_where_step(page)
    choose(page, "responses.cssrs.answers.q1", "No")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q2", "No")
    next_screen(page)
    # q3-q5 are asked only when q2 is yes.
    expect(question(page, "responses.cssrs.answers.q6")).to_be_visible()
    choose(page, "responses.cssrs.answers.q6", "Yes")
    next_screen(page)
    expect(question(page, "responses.cssrs.answers.q6_recent")).to_be_visible()
    choose(page, "responses.cssrs.answers.q6_recent", "No")

    # Back, all the way to the first question: every answer is still there.
    for _ in range(13):
        if page.get_by_test_id("checkin-back").is_hidden():
            break
        page.get_by_test_id("checkin-back").tap()
    expect(question(page, "responses.phq9.answers.0")).to_be_visible()
    expect(question(page, "responses.phq9.answers.0").get_by_label("Several days")) \
        .to_be_checked()
    expect(page.locator("#progress-text")).to_have_text("Question 1 of 29")
    assert question(page, "responses.phq9.answers.3").get_by_label(
        "Nearly every day", exact=True).is_checked()

    # The draft holds what was asked and nothing that was not.
    wait_saved(page)
    stored = phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]["data"]
    assert stored["responses"]["cssrs"] == {"answers": {
        "q1": False, "q2": False, "q3": None, "q4": None, "q5": None, "q6": True,
        "q6_recent": False}}
    assert stored["responses"]["phq9"]["answers"] == [1, 0, 0, 3, 0, 0, 0, 0, 1]
    phone.assert_no_errors()


def test_a_draft_survives_closing_the_page_and_a_server_restart(
    phone: Phone, demo_server: AppServer,
) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    answers = ["Several days", "More than half the days", "Not at all", "Nearly every day",
               "Several days"]
    answer_phq9(page, answers[:4])
    choose(page, "responses.phq9.answers.4", answers[4])
    # Closed before the debounced save is due: the page-hide save must carry it.
    page.close()
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        # No check-in at all until the first save lands (the page-hide save may be the
        # first): keep polling until the deadline, as for an older draft.
        stored = phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]
        draft = stored["data"] if stored else None
        if draft and draft["responses"]["phq9"]["answers"][:5] == [1, 2, 0, 3, 1]:
            break
        assert time.monotonic() < deadline, f"the last answer never reached the server: {draft}"
        time.sleep(0.1)

    def check(where: str) -> None:
        phone.reopen(visit_id)
        for index, label in enumerate(answers):
            field = f"responses.phq9.answers.{index}"
            assert question(phone.page, field).get_by_label(label, exact=True).is_checked(), \
                f"{field} lost {where}"
        # It resumes at the first question still to answer.
        expect(question(phone.page, "responses.phq9.answers.5")).to_be_visible()

    check("after closing the page")
    demo_server.stop()
    demo_server.start()
    check("after the server restarted")
    phone.assert_no_errors()


def test_complete_a_checkin_end_to_end(phone: Phone) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    drafts: list[dict[str, Any]] = []
    page.on("request", lambda r: drafts.append(json.loads(r.post_data or "{}"))
            if r.method == "PUT" and r.url.endswith("/checkin/draft") else None)
    answer_phq9(page, ["Several days", "Several days", "Not at all", "Several days",
                       "Not at all", "Not at all", "Not at all", "Not at all"])
    choose(page, ITEM9, "Not at all")
    next_screen(page)
    # Item 9 at 0: no screener, and the difficulty question comes next.
    choose(page, "responses.phq9.difficulty", "Somewhat difficult")
    next_screen(page)
    for index in range(7):
        choose(page, f"responses.gad7.answers.{index}", "Several days")
        next_screen(page)

    # Side effects: a ticked effect needs its severity before moving on.
    effects = question(page, "side_effects")
    effects.locator("label.option").filter(has_text="Dizziness").tap()
    next_screen(page)
    expect(effects.locator(".field-error")).to_be_visible()
    effects.locator('.severity[data-effect="dizziness"] label.option').filter(
        has_text="Moderate").tap()
    phone.shot("checkin-side-effects")
    next_screen(page)

    choose(page, "missed_doses.days_missed", "2 days")
    next_screen(page)
    reasons = question(page, "missed_doses.reasons")
    reasons.locator("label.option").filter(has_text="The cost").tap()
    next_screen(page)
    question(page, "sleep.hours").locator("input").fill("6.5")
    next_screen(page)
    choose(page, "sleep.quality", "Fair")
    next_screen(page)
    choose(page, "substance_use.cravings", "3")
    next_screen(page)
    choose(page, "substance_use.used_since_last_visit", "No")
    next_screen(page)

    # The emergency information is prefilled from last time and confirmed again.
    location = question(page, "location.address")
    expect(location.locator("textarea")).to_have_value("221 Maple Avenue, Apt 3, Springfield")
    expect(page.get_by_test_id("where-state")).to_contain_text("not confirmed today")
    next_screen(page)
    expect(page.locator("#emergency-location-error")).to_contain_text("tick the box")
    location.locator("textarea").fill("Home")  # not a place help can be sent to
    location.locator("input[data-confirm]").check()
    next_screen(page)
    expect(page.locator("#location-address-error")).to_contain_text("at least 8 characters")
    expect(page.locator("#location-address")).to_have_attribute("aria-invalid", "true")
    location.locator("textarea").fill("14 Harbor Road, Springfield")
    expect(page.locator("#location-address-error")).to_be_hidden()
    next_screen(page)
    contact = question(page, "emergency_contact")
    expect(contact.locator('input[name="emergency_contact.name"]')).to_have_value("Taylor Rivera")
    contact.locator("input[data-confirm]").check()
    phone.shot("checkin-emergency")
    expect(page.get_by_test_id("checkin-next")).to_have_text("Send my check-in")
    next_screen(page)

    done = page.get_by_test_id("checkin-done")
    expect(done).to_be_visible()
    expect(done.get_by_test_id("checkin-to-visit")).to_have_attribute("href",
                                                                      f"/visits/{visit_id}")
    phone.shot("checkin-done")
    stored = phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]
    assert stored["status"] == "completed"
    assert stored["scores"]["phq9"]["total"] == 3
    assert stored["scores"]["gad7"]["total"] == 7
    assert stored["location"] == {"address": "14 Harbor Road, Springfield", "state": "MA"}
    data = stored["data"]
    assert data["side_effects"] == [{"effect": "dizziness", "severity": "moderate"}]
    assert data["missed_doses"] == {"days_missed": 2, "reasons": ["cost_or_refill"]}
    assert data["sleep"] == {"hours": 6.5, "quality": "fair"}
    assert data["substance_use"] == {"cravings": 3, "used_since_last_visit": False}
    # Drafts never carried the emergency information (a half-typed address among them
    # would be refused), only the state chosen (prefilled from last time); the
    # completion did.
    assert drafts
    for draft in drafts:
        assert not {"callback_phone", "emergency_contact"} & set(draft), draft
        assert draft.get("location", {"state": "MA"}) == {"state": "MA"}, draft
    assert phone.api(f"/api/v1/visits/{visit_id}")["status"] == "checked_in"
    # Opening it again shows the completion, not the form.
    page.goto(f"/visits/{visit_id}/checkin")
    expect(page.get_by_test_id("checkin-done")).to_be_visible()
    expect(page.locator("#checkin-form")).to_have_count(0)
    phone.assert_no_errors()


def test_auditc_never_leaves_the_drinking_questions_unasked(
    browser: Any, demo_server: AppServer
) -> None:
    """CLINICAL.md's AUDIT-C skip logic on the form: after "Never", questions 2 and 3 are
    never shown, and the completion sends them as null (not asked, total 0)."""
    device = Phone(browser, demo_server)
    try:
        device.sign_in("patient2@demo.test")  # no AUDIT-C yet: it is asked today
        visit_id = device.open_checkin()
        page = device.page
        shown: set[str] = set()
        for _ in range(60):
            for q in page.locator(".q:visible").all():
                kind, field = q.get_attribute("data-kind"), q.get_attribute("data-field")
                shown.add(field or "")
                if kind == "choice" and not q.locator("input:checked").count() \
                        and field != "sex":
                    q.locator("label.option").first.tap()  # "Never", "Not at all"...
                elif kind == "number":
                    q.locator("input").fill("7")
                elif kind == "emergency":
                    for box in q.locator("textarea, input[type=tel], input[type=text]").all():
                        if not box.input_value().strip():
                            box.fill("+1 617 555 0142" if box.get_attribute("type") == "tel"
                                     else "14 Harbor Road, Springfield")
                    state = q.locator("select[name='location.state']")
                    if state.count() and not state.input_value():
                        state.select_option("MA")  # nothing to prefill it from
                    q.locator("input[data-confirm]").check()
            last = page.get_by_test_id("checkin-next").inner_text() == "Send my check-in"
            next_screen(page)
            if last:
                break
        page.get_by_test_id("checkin-done").wait_for()
        assert "responses.auditc.answers.0" in shown
        assert not {"responses.auditc.answers.1", "responses.auditc.answers.2"} & shown
        stored = device.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]
        assert stored["data"]["responses"]["auditc"] == {"answers": [0, None, None]}
        assert stored["scores"]["auditc"] == {"total": 0, "positive": False}
        device.assert_no_errors()
    finally:
        device.close()


# Drafts leave the page 1.5 s late, so one is still on its way when the check-in is sent.
SLOW_DRAFTS = """() => {
  const send = window.fetch.bind(window);
  window.__draftsOnTheirWay = 0;
  window.fetch = async (target, options = {}) => {
    if (options.method !== "PUT" || !String(target).endsWith("/checkin/draft")) {
      return send(target, options);
    }
    window.__draftsOnTheirWay += 1;
    try {
      await new Promise((resolve) => { setTimeout(resolve, 1500); });
      return await send(target, options);
    } finally {
      window.__draftsOnTheirWay -= 1;
    }
  };
}"""


def test_sending_waits_for_the_draft_on_its_way(phone: Phone) -> None:
    """A draft still on its way when the patient sends the check-in lands first: after
    the completion it would be refused (409) and reload the page over "sent"."""
    from playwright.sync_api import expect

    visit_id = phone.open_checkin()
    page = phone.page
    page.add_init_script(f"({SLOW_DRAFTS})()")
    page.reload()
    page.wait_for_selector("#checkin-form.is-live")
    page.evaluate("() => { window.__sameDocument = true; }")
    for _ in range(60):
        for q in page.locator(".q:visible").all():
            kind, field = q.get_attribute("data-kind"), q.get_attribute("data-field")
            if kind == "choice" and not q.locator("input:checked").count() and field != "sex":
                q.locator("label.option").first.tap()
            elif kind == "number":
                q.locator("input").fill("7.5")
            elif kind == "emergency":
                q.locator("input[data-confirm]").check()
        if page.get_by_test_id("checkin-next").inner_text() == "Send my check-in":
            break
        next_screen(page)
    # The last answer's draft leaves (after the save delay) and is on its way.
    page.wait_for_function("() => window.__draftsOnTheirWay > 0")
    next_screen(page)
    expect(page.get_by_test_id("checkin-done")).to_be_visible()
    assert page.evaluate("() => window.__sameDocument === true")  # no reload over "sent"
    page.wait_for_function("() => window.__draftsOnTheirWay === 0")
    assert phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"]["status"] == "completed"
    phone.assert_no_errors()


def test_a_checkin_with_a_screener_can_be_completed(phone: Phone) -> None:
    visit_id = phone.open_checkin()
    page = phone.page
    answer_phq9(page, ["Not at all"] * 8)
    choose(page, ITEM9, "Several days")
    next_screen(page)
    pass_where_step(page)
    choose(page, "responses.cssrs.answers.q1", "Yes")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q2", "No")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q6", "No")
    next_screen(page)
    stored = finish_from_here(phone, visit_id)["checkin"]
    assert stored["scores"]["cssrs"] == {"risk": "low"}
    # The visit's risk never drops (invariant 1): item 9 was urgent until the screener
    # was done, and stays on record next to what the screener then showed.
    assert stored["level"] == "urgent"
    assert stored["reasons"] == ["phq9_item9_unassessed", "cssrs_low", "phq9_item9_positive"]
    phone.assert_no_errors()


# --- the emergency path: help on the device, where you are first, nobody joins unconfirmed


def draft_saves_failing(page: Any, how: str) -> list[str]:
    """Every draft save fails before it reaches the server: the network drops it
    ("abort") or the server answers 500 without storing anything ("500"). Returns the
    list the attempts are noted in."""
    attempts: list[str] = []

    def fail(route: Any) -> None:
        attempts.append(route.request.method)
        if how == "abort":
            route.abort()
        else:
            route.fulfill(status=500, content_type="application/json",
                          body='{"error": {"code": "internal", "message": "Sorry."}}')

    page.route("**/checkin/draft", fail)
    return attempts


@pytest.mark.parametrize("how", ["abort", "500"])
def test_crisis_help_shows_at_once_with_every_draft_save_failing(
    phone: Phone, how: str,
) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    attempts = draft_saves_failing(page, how)
    crisis = page.get_by_test_id("crisis-resources")
    answer_phq9(page, ["Not at all"] * 8)
    expect(crisis).to_be_hidden()
    choose(page, ITEM9, "Nearly every day")
    # Decided on the device from the answer (the rules came with the page): no server
    # answer is needed, and none came.
    expect(crisis).to_be_visible(timeout=1000)
    expect(crisis).to_have_attribute("data-level", "urgent")
    expect(crisis.locator('a[href="tel:988"]').first).to_be_visible()
    expect(crisis.locator('a[href="sms:988"]')).to_be_visible()
    expect(crisis.locator('a[href="tel:911"]').first).to_be_visible()
    expect(page.locator("#crisis-strip")).to_be_visible()
    # It does not claim an alert the care team has not had.
    expect(page.locator("#crisis-alerted")).to_be_hidden()
    expect(page.get_by_test_id("crisis-unsent")).to_be_visible()
    phone.shot(f"checkin-crisis-offline-{how}")
    assert attempts, "the page never tried to save"
    # Nothing reached the server's draft endpoint: no check-in was ever stored.
    assert phone.api(f"/api/v1/visits/{visit_id}/checkin")["checkin"] is None
    # The patient carries on, help still on screen: where they are comes first.
    next_screen(page)
    expect(page.get_by_test_id("checkin-where")).to_be_visible()
    expect(crisis).to_be_visible()
    # The failed saves are the only errors (the browser logs each refused request).
    phone.errors = [e for e in phone.errors if "status of 500" not in e and
                    "ERR_FAILED" not in e]
    phone.assert_no_errors()


def test_an_emergency_answer_asks_where_the_patient_is_next_and_saves_it_at_once(
    phone: Phone,
) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    answer_phq9(page, ["Several days"] * 8)
    choose(page, ITEM9, "Several days")
    next_screen(page)
    step = page.get_by_test_id("checkin-where")
    expect(step).to_be_visible()
    # The very next screen, before any other question, with focus on it.
    expect(question(page, "responses.cssrs.answers.q1")).to_be_hidden()
    expect(page.locator("#part-where-title")).to_be_focused()
    expect(page.get_by_test_id("crisis-resources")).to_be_visible()
    address = page.get_by_test_id("checkin-where-address")
    expect(address).to_have_value("221 Maple Avenue, Apt 3, Springfield")  # to confirm
    expect(page.get_by_test_id("where-state")).to_contain_text("not confirmed today")
    phone.shot("checkin-where-step")

    # Checked on the device first: nothing is sent until it can be right.
    next_screen(page)
    expect(page.locator("#emergency-location-error")).to_contain_text("tick the box")
    address.fill("14 Harbor Road, Springfield")
    page.get_by_test_id("checkin-where-callback").fill("12")  # digits, but not a number
    page.get_by_test_id("checkin-where-confirm").check()
    # The server's word is final: its message shows on the field.
    with page.expect_response("**/checkin/emergency-info") as refused:
        next_screen(page)
    assert refused.value.status == 422
    error = page.locator("#callback-phone-error")
    expect(error).to_contain_text("too few or too many digits")
    callback = page.get_by_test_id("checkin-where-callback")
    expect(callback).to_have_attribute("aria-invalid", "true")
    assert "callback-phone-error" in (callback.get_attribute("aria-describedby") or "")
    expect(step).to_be_visible()

    callback.fill("(617) 555-0134")
    page.get_by_test_id("checkin-where-confirm").check()
    with page.expect_request(lambda r: r.method == "PUT" and
                             r.url.endswith("/checkin/emergency-info")) as sent:
        next_screen(page)
    assert json.loads(sent.value.post_data or "{}") == {
        "location": {"address": "14 Harbor Road, Springfield", "state": "MA"},
        "callback_phone": "(617) 555-0134"}  # the state as last given, confirmed
    # Saved at once, then the flow resumes at the next question: the screener.
    expect(step).to_be_hidden()
    expect(question(page, "responses.cssrs.answers.q1")).to_be_visible()
    expect(page.get_by_test_id("where-state")).to_have_attribute("data-state", "confirmed")
    info = phone.api(f"/api/v1/visits/{visit_id}/checkin")["emergency_info"]
    assert info["location"] == {"address": "14 Harbor Road, Springfield", "state": "MA"}
    assert info["callback_phone"] == "+16175550134"
    assert info["confirmed_at"] is not None and info["source"] == "checkin"

    # At the end the emergency section shows it as confirmed, still editable; the
    # contact is asked there; the completion carries all three.
    choose(page, "responses.cssrs.answers.q1", "No")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q2", "No")
    next_screen(page)
    choose(page, "responses.cssrs.answers.q6", "No")
    next_screen(page)
    with page.expect_request(lambda r: r.method == "POST" and
                             r.url.endswith(f"/visits/{visit_id}/checkin")) as completed:
        stored = finish_from_here(phone, visit_id)["checkin"]
    final = json.loads(completed.value.post_data or "{}")
    assert final["location"] == {"address": "14 Harbor Road, Springfield", "state": "MA"}
    assert final["callback_phone"] == "(617) 555-0134"
    assert final["emergency_contact"]["name"] == "Taylor Rivera"
    assert stored["location"] == {"address": "14 Harbor Road, Springfield", "state": "MA"}
    assert stored["location_confirmed_at"] is not None
    phone.assert_no_errors(refused=1)  # the number refused above


def test_where_the_patient_is_waits_for_the_network_without_holding_them_up(
    phone: Phone,
) -> None:
    from playwright.sync_api import expect

    page = phone.page
    visit_id = phone.open_checkin()
    page.route("**/checkin/emergency-info", lambda route: route.abort())
    answer_phq9(page, ["Not at all"] * 8)
    choose(page, ITEM9, "More than half the days")
    next_screen(page)
    expect(page.get_by_test_id("checkin-where")).to_be_visible()
    page.get_by_test_id("checkin-where-address").fill("14 Harbor Road, Springfield")
    page.get_by_test_id("checkin-where-confirm").check()
    next_screen(page)
    # Not delivered: the patient carries on with the screener, help still on screen.
    expect(question(page, "responses.cssrs.answers.q1")).to_be_visible()
    expect(page.get_by_test_id("crisis-resources")).to_be_visible()
    expect(page.get_by_test_id("where-state")).to_have_attribute("data-state", "offline")
    assert phone.api(f"/api/v1/visits/{visit_id}/checkin")["emergency_info"][
        "confirmed_at"] is None
    # The network is back: the kept values go on their own (every 5 seconds).
    page.unroute("**/checkin/emergency-info")
    with page.expect_response("**/checkin/emergency-info", timeout=WAIT_MS) as sent:
        choose(page, "responses.cssrs.answers.q1", "No")
    assert sent.value.ok
    expect(page.get_by_test_id("where-state")).to_have_attribute("data-state", "confirmed")
    info = phone.api(f"/api/v1/visits/{visit_id}/checkin")["emergency_info"]
    assert info["location"] == {"address": "14 Harbor Road, Springfield", "state": "MA"}
    assert info["confirmed_at"] is not None
    phone.errors = [e for e in phone.errors if "ERR_FAILED" not in e]
    phone.assert_no_errors()


def join_token(server: AppServer, visit_id: int, patient_id: int) -> str:
    """A join link's token, signed as the app signs the one in the invitation email."""
    from itsdangerous import URLSafeTimedSerializer

    from server.auth import JOIN_SALT
    from tests.browser_support import SECRET_KEY

    serializer = URLSafeTimedSerializer(SECRET_KEY, salt=JOIN_SALT)
    return str(serializer.dumps({"v": visit_id, "p": patient_id, "n": "b10c4e11"}))


def test_a_join_link_patient_confirms_where_they_are_before_the_waiting_room(
    browser: Any, demo_server: AppServer,
) -> None:
    from playwright.sync_api import expect

    staff = Phone(browser, demo_server)
    staff.sign_in("prescriber@demo.test")
    staff.page.goto("/day")
    visit_id = int(staff.page.locator(".visit[data-visit-id]").first
                   .get_attribute("data-visit-id") or 0)
    patient_id = staff.api(f"/api/v1/visits/{visit_id}")["patient"]["id"]
    staff.close()

    device = Phone(browser, demo_server)  # no account signed in: the link is enough
    try:
        page = device.page
        page.goto(f"/visits/{visit_id}/join?t={join_token(demo_server, visit_id, patient_id)}")
        # 988 and 911 before anything else, also here, and it fits a phone.
        bar = page.get_by_test_id("crisis-bar")
        expect(bar).to_be_visible()
        expect(bar.locator('a[href="tel:988"]')).to_be_visible()
        expect(bar.locator('a[href="sms:988"]')).to_be_visible()
        expect(bar.locator('a[href="tel:911"]')).to_be_visible()
        assert page.evaluate("() => document.scrollingElement.scrollWidth - "
                             "document.documentElement.clientWidth") <= 0
        for link in bar.locator("a").all():
            box = link.bounding_box()
            assert box is not None and box["height"] >= 44, box
        device.shot("join-page")
        page.get_by_test_id("join").tap()
        # The check-in is open and not done: it comes first, with a way straight to the
        # location step.
        page.wait_for_url(f"**/visits/{visit_id}/checkin")
        page.get_by_test_id("checkin-skip-to-where").tap()
        page.wait_for_url(f"**/visits/{visit_id}/where")
        expect(page.get_by_test_id("crisis-bar")).to_be_visible()
        address = page.get_by_test_id("where-address")
        expect(address).to_have_value("221 Maple Avenue, Apt 3, Springfield")
        expect(page.get_by_test_id("where-status")).to_contain_text("not confirmed today")
        device.shot("where-step")

        # An address nobody could be sent to first: the message is on the field.
        address.fill("Home")
        page.get_by_test_id("where-confirm").check()
        page.get_by_test_id("where-submit").tap()
        error = page.get_by_test_id("where-address-error")
        expect(error).to_contain_text("at least 8 characters")
        expect(address).to_have_attribute("aria-invalid", "true")
        assert "where-address-error" in (address.get_attribute("aria-describedby") or "")
        expect(address).to_be_focused()
        expect(address).to_have_value("Home")  # kept as typed
        device.shot("where-step-error")

        address.fill("14 Harbor Road, Springfield")
        page.get_by_test_id("where-state").select_option("MA")
        page.get_by_test_id("where-callback").fill("617-555-0188")
        page.get_by_test_id("where-confirm").check()
        page.get_by_test_id("where-submit").tap()
        page.wait_for_url(lambda url: url.endswith(f"/visits/{visit_id}"))
        expect(page.get_by_test_id("local-video")).to_be_attached()
        expect(page.get_by_test_id("join")).to_be_visible()
        expect(page.get_by_test_id("crisis-bar")).to_be_visible()

        state = device.api(f"/api/v1/visits/{visit_id}/checkin")
        assert state["checkin"]["location"] == {"address": "14 Harbor Road, Springfield",
                                                "state": "MA"}
        assert state["checkin"]["callback_phone"] == "+16175550188"
        assert state["checkin"]["location_confirmed_at"] is not None
        assert state["checkin"]["status"] == "draft"  # the questions can still be answered
        info = state["emergency_info"]
        assert info["confirmed_at"] == state["checkin"]["location_confirmed_at"]
        # Back to the room later: no second step while it is fresh.
        page.goto(f"/visits/{visit_id}")
        assert page.url.endswith(f"/visits/{visit_id}")
        device.assert_no_errors(refused=1)  # the address refused above
    finally:
        device.close()


def test_an_emergency_mid_check_in_then_where_they_are_reaches_coordinator_and_prescriber(
    phone: Phone, browser: Any, demo_server: AppServer,
) -> None:
    """The issue's path, as the three people live it: the patient's answers raise the
    escalation from a draft, then they type where they are; the coordinator's card and
    the prescriber's emergency box show that place and number, with when it was
    confirmed, and follow a later change at the end of the form."""
    from playwright.sync_api import expect

    coordinator = Phone(browser, demo_server)
    prescriber = Phone(browser, demo_server)
    try:
        coordinator.sign_in("coordinator@demo.test")
        coordinator.page.goto("/coordinator")
        queue = coordinator.page.locator("[data-queue-list]")

        page = phone.page
        visit_id = phone.open_checkin()
        answer_phq9(page, ["Several days"] * 8)
        choose(page, ITEM9, "Nearly every day")
        next_screen(page)
        # The draft with item 9 raised the escalation before the location was asked.
        card = queue.get_by_test_id("escalation-row").first
        expect(card).to_contain_text("Jordan Rivera", timeout=WAIT_MS)
        expect(card.get_by_test_id("emergency-info-when")).to_contain_text(
            "Not confirmed today")
        expect(page.get_by_test_id("checkin-where")).to_be_visible()

        page.get_by_test_id("checkin-where-address").fill(
            "Greyhound station, 950 Congress Street, Portland")
        # Portland, Maine (the demo's last state, Massachusetts, is prefilled).
        page.get_by_test_id("checkin-where-state").select_option("ME")
        page.get_by_test_id("checkin-where-callback").fill("(207) 555-0199")
        page.get_by_test_id("checkin-where-confirm").check()
        with page.expect_response("**/checkin/emergency-info") as sent:
            next_screen(page)
        assert sent.value.ok
        confirmed_at = sent.value.json()["confirmed_at"]

        # The coordinator's card follows live: the place, a callback to tap, and when.
        card = queue.get_by_test_id("escalation-row").first
        expect(card.get_by_test_id("escalation-location")).to_have_text(
            "Greyhound station, 950 Congress Street, Portland — Maine", timeout=WAIT_MS)
        expect(card.get_by_test_id("escalation-callback")).to_have_text("+1 207-555-0199")
        expect(card.get_by_test_id("escalation-callback")).to_have_attribute(
            "href", "tel:+12075550199")
        when = card.get_by_test_id("emergency-info-when")
        expect(when).to_contain_text("Confirmed by the patient")
        expect(when.locator("time")).to_have_attribute("datetime", confirmed_at)

        # Then a "yes" to intent: an emergency. The location is not asked twice.
        choose(page, "responses.cssrs.answers.q1", "Yes")
        next_screen(page)
        choose(page, "responses.cssrs.answers.q2", "Yes")
        next_screen(page)
        choose(page, "responses.cssrs.answers.q3", "No")
        next_screen(page)
        choose(page, "responses.cssrs.answers.q4", "Yes")
        wait_saved(page)
        expect(page.get_by_test_id("crisis-resources")).to_have_attribute(
            "data-level", "emergency")
        expect(page.get_by_test_id("checkin-where")).to_be_hidden()
        expect(queue.get_by_test_id("escalation-row").first).to_have_attribute(
            "data-level", "emergency", timeout=WAIT_MS)

        # The prescriber's emergency box: the same place and number, and when.
        prescriber.sign_in("prescriber@demo.test")
        prescriber.page.goto(f"/visits/{visit_id}")
        box = prescriber.page.get_by_test_id("emergency-mode")
        expect(box).to_be_visible()
        expect(box.get_by_test_id("emergency-location")).to_have_text(
            "Greyhound station, 950 Congress Street, Portland — Maine")
        expect(box.get_by_test_id("emergency-callback")).to_have_text("+1 207-555-0199")
        expect(box.get_by_test_id("emergency-confirmed")).to_contain_text("By the patient")
        expect(box.get_by_test_id("emergency-confirmed").locator("time")).to_have_attribute(
            "datetime", confirmed_at)
        expect(prescriber.page.get_by_test_id("location-not-confirmed")).to_have_count(0)

        # The patient finishes; at the end they correct the address. The completion
        # confirms it again and both screens take the newest.
        next_screen(page)
        for _ in range(40):
            if page.locator("#location-address:visible").count():
                break
            for q in page.locator(".q:visible").all():
                kind = q.get_attribute("data-kind")
                if kind == "choice" and not q.locator("input:checked").count() and \
                        q.get_attribute("data-field") != "sex":
                    q.locator("label.option").first.tap()
                elif kind == "number":
                    q.locator("input").fill("6")
            next_screen(page)
        page.locator("#location-address").fill("Maine Medical Center lobby, Portland")
        stored = finish_from_here(phone, visit_id)["checkin"]
        assert stored["location"] == {"address": "Maine Medical Center lobby, Portland",
                                      "state": "ME"}
        assert stored["level"] == "emergency"
        card = queue.get_by_test_id("escalation-row").first
        expect(card.get_by_test_id("escalation-location")).to_have_text(
            "Maine Medical Center lobby, Portland — Maine", timeout=WAIT_MS)
        prescriber.page.reload()
        expect(prescriber.page.get_by_test_id("emergency-location")).to_have_text(
            "Maine Medical Center lobby, Portland — Maine")
        for person in (phone, coordinator, prescriber):
            person.errors = [e for e in person.errors if "media" not in e.lower()]
        phone.assert_no_errors()
        coordinator.assert_no_errors()
    finally:
        coordinator.close()
        prescriber.close()


# --- accessibility: axe-core ----------------------------------------------------------


@pytest.fixture(scope="session")
def axe_script() -> Path:
    from tests.browser_support import unavailable

    for candidate in (ROOT / "bench" / "node_modules" / "axe-core" / "axe.min.js",
                      ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"):
        if candidate.exists():
            return candidate
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm not installed (needed once to fetch axe-core)")
    assert npm is not None
    target = ROOT / "tests" / ".node"
    target.mkdir(exist_ok=True)
    try:
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(target), "axe-core@4"],
            capture_output=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        unavailable("npm install axe-core timed out")
    if result.returncode != 0:
        unavailable(f"npm install axe-core failed: {result.stderr.decode()[-300:]}")
    found = target / "node_modules" / "axe-core" / "axe.min.js"
    assert found.exists(), f"npm installed axe-core without {found}"
    return found


RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
}"""


def serious_violations(page: Any, axe: Path) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(axe))
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_pages_have_no_serious_accessibility_violations(
    browser: Any, demo_server: AppServer, axe_script: Path,
) -> None:
    # axe is injected as a script, which our CSP rightly refuses; this context only.
    device = Phone(browser, demo_server, bypass_csp=True)
    try:
        device.sign_in()
        page = device.page
        visit_id = device.open_checkin()
        checked: dict[str, list[dict[str, Any]]] = {
            "check-in": serious_violations(page, axe_script)}
        # The check-in again with the screener and the crisis resources on show.
        answer_phq9(page, ["Not at all"] * 8)
        choose(page, ITEM9, "Several days")
        page.get_by_test_id("crisis-resources").wait_for(state="visible")
        next_screen(page)
        checked["check-in with crisis resources"] = serious_violations(page, axe_script)
        for path in ("/home", "/progress", "/account/time-zone", f"/visits/{visit_id}/checkin",
                     f"/visits/{visit_id}/where"):
            page.goto(path)
            checked[path] = serious_violations(page, axe_script)
            device.shot(f"page-{path.strip('/').replace('/', '-')}", full_page=True)
    finally:
        device.close()
    # The location step with its errors on show, and the pages before signing in.
    device = Phone(browser, demo_server, bypass_csp=True)
    try:
        device.sign_in()
        page = device.page
        page.goto(f"/visits/{visit_id}/where")
        page.get_by_test_id("where-address").fill("Home")
        page.get_by_test_id("where-callback").fill("")
        page.get_by_test_id("where-submit").click()
        page.get_by_test_id("where-address-error").wait_for()
        checked["/visits/{id}/where with errors"] = serious_violations(page, axe_script)
        patient_id = device.api(f"/api/v1/visits/{visit_id}")["patient"]["id"]
    finally:
        device.close()
    anonymous = Phone(browser, demo_server, bypass_csp=True)
    try:
        for path in ("/login",
                     f"/visits/{visit_id}/join?t={join_token(demo_server, visit_id, patient_id)}"):
            anonymous.page.goto(path)
            checked[path.split("?")[0]] = serious_violations(anonymous.page, axe_script)
    finally:
        anonymous.close()
    # And the prescriber's view of the same patient, charts and all.
    staff = Phone(browser, demo_server, bypass_csp=True)
    try:
        staff.sign_in("prescriber@demo.test")
        staff.page.locator(".visit .name a").first.click()
        staff.page.wait_for_url("**/patients/*")
        checked["/patients/{id}"] = serious_violations(staff.page, axe_script)
        staff.shot("page-staff-patient", full_page=True)
    finally:
        staff.close()
    failures = {where: found for where, found in checked.items() if found}
    assert not failures, json.dumps(failures, indent=2)
