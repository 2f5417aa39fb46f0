"""The check-in's medication-management screens in real Chromium, on a phone, against
the real app seeded with the demo (issue 19): the US state in the location question
reaching the prescriber's controlled-substance block; FIBSER for a patient on a
psychotropic and the Brief Addiction Monitor for a patient the prescriber puts in the
substance-use track (the patient page's toggle), answered in the real form and read in
the note panel. Every screen gets an axe check: no serious or critical violations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script, question
from tests.test_browser_notes import (
    SERTRALINE_START,
    api,
    open_room,
    signed_in,
    start_at_last_visit,
    todays_visit,
)

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

PHONE = {"width": 390, "height": 844}


def no_serious_violations(page: Any, axe: Path, where: str) -> None:
    from tests.test_browser_checkin import serious_violations

    violations = serious_violations(page, axe)
    assert violations == [], f"{where}: {violations}"


def next_screen(page: Any) -> None:
    page.get_by_test_id("checkin-next").click()


def open_checkin(patient: Person, visit_id: int) -> Any:
    page = patient.page
    page.goto(f"/visits/{visit_id}/checkin")
    page.wait_for_selector("#checkin-form.is-live")
    return page


def answer_until_emergency(page: Any, axe: Path, picks: dict[str, int]) -> list[str]:
    """Answer each screen as it comes, as a patient would: the option at ``picks[field]``
    (else the first), until the emergency section. Each instrument's first screen gets
    an axe check. Returns the fields asked, in order."""
    asked: list[str] = []
    checked: set[str] = set()
    for _ in range(80):
        shown = page.locator("#checkin-form .q:visible").all()
        if any(q.get_attribute("data-kind") == "emergency" for q in shown):
            return asked
        for q in shown:
            field = str(q.get_attribute("data-field"))
            kind = q.get_attribute("data-kind")
            asked.append(field)
            part = field.split(".")[1] if field.startswith("responses.") else ""
            if part in ("fibser", "bam") and part not in checked:
                checked.add(part)
                no_serious_violations(page, axe, f"the {part} screen")
            if kind == "choice" and field != "sex" and not q.locator("input:checked").count():
                q.locator("label.option").nth(picks.get(field, 0)).click()
            elif kind == "number":
                q.locator("input").fill("7")
        next_screen(page)
    raise AssertionError(f"never reached the emergency section: {asked[-5:]}")


def send_emergency_section(page: Any) -> None:
    """Confirm the place and the contact as prefilled, and send the check-in."""
    from playwright.sync_api import expect

    question(page, "location.address").locator("input[data-confirm]").check()
    next_screen(page)
    question(page, "emergency_contact").locator("input[data-confirm]").check()
    expect(page.get_by_test_id("checkin-next")).to_have_text("Send my check-in")
    next_screen(page)
    expect(page.get_by_test_id("checkin-done")).to_be_visible()


def test_the_patient_picks_the_state_in_the_form_and_the_prescribers_gate_has_it(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test", viewport=PHONE,
                        bypass_csp=True)
    try:
        visit_id = todays_visit(prescriber)
        page = open_checkin(patient, visit_id)
        drafts: list[dict[str, Any]] = []
        page.on("request", lambda r: drafts.append(json.loads(r.post_data or "{}"))
                if r.method == "PUT" and r.url.endswith("/checkin/draft") else None)
        answer_until_emergency(page, axe_script, {})

        # Prefilled from last time (the demo's last check-in was in Massachusetts).
        state = page.get_by_test_id("checkin-where-state")
        expect(state).to_have_value("MA")
        expect(page.get_by_label("The state you are in today")).to_be_visible()
        # Confirming with no state is refused on the device, in the /where step's words,
        # the message tied to the list.
        state.select_option("")
        question(page, "location.address").locator("input[data-confirm]").check()
        next_screen(page)
        error = page.locator("#location-state-error")
        expect(error).to_have_text("Choose the state you are in now.")
        expect(state).to_have_attribute("aria-invalid", "true")
        assert "location-state-error" in str(state.get_attribute("aria-describedby")).split()
        expect(state).to_be_focused()
        box = state.bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] <= PHONE["width"]
        no_serious_violations(page, axe_script, "the location question with its error")

        # The choice is saved with the draft, like every answer, and survives a reload.
        with page.expect_response(lambda r: r.request.method == "PUT" and
                                  r.url.endswith("/checkin/draft") and
                                  json.loads(r.request.post_data or "{}").get("location")
                                  == {"state": "NY"}) as saved:
            state.select_option("NY")
        assert saved.value.ok
        expect(error).to_be_hidden()
        # No draft carried the address or the callback: those wait for a confirmation.
        assert drafts and all(set(d.get("location", {})) <= {"state"} and
                              "callback_phone" not in d for d in drafts)
        page.reload()
        page.wait_for_selector("#checkin-form.is-live")
        expect(page.get_by_test_id("checkin-where-state")).to_have_value("NY")
        send_emergency_section(page)

        stored = api(patient, "GET", f"/api/v1/visits/{visit_id}/checkin")["data"]
        assert stored["checkin"]["data"]["location"] == {
            "address": "221 Maple Avenue, Apt 3, Springfield", "state": "NY"}

        # The prescriber's controlled-substance block reads the state the patient gave.
        room = open_room(prescriber, visit_id)
        room.get_by_test_id("panel-controlled").locator("summary").click()
        expect(room.get_by_test_id("controlled-state")).to_contain_text("New York")
        expect(room.get_by_test_id("pdmp-state")).to_have_value("NY")
        assert not [line for line in patient.console if "pageerror" in line], patient.debug()
    finally:
        prescriber.close()
        patient.close()


def test_fibser_and_the_bam_are_answered_in_the_form_and_reach_the_note_panel(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True)
    patient = signed_in(browser, app_server, "patient@demo.test", viewport=PHONE,
                        bypass_csp=True)
    try:
        # On a psychotropic: sertraline started at the last visit (a signed note).
        visit_id, patient_id = start_at_last_visit(prescriber, SERTRALINE_START)

        # The prescriber puts the patient in the substance-use track on their page.
        page = prescriber.page
        page.goto(f"/patients/{patient_id}")
        track = page.get_by_test_id("substance-use-track")
        expect(track).not_to_be_checked()
        expect(page.get_by_label("In the substance-use track")).to_be_visible()
        no_serious_violations(page, axe_script, "the patient page")
        track.check()
        status = page.locator("#substance-use-track-state")
        expect(status).to_have_text("Saved: in the substance-use track.")
        expect(track).to_be_enabled()
        no_serious_violations(page, axe_script, "the patient page, track saved")
        page.reload()
        expect(page.get_by_test_id("substance-use-track")).to_be_checked()

        # The check-in now asks FIBSER and the BAM; answered on the phone.
        state = api(patient, "GET", f"/api/v1/visits/{visit_id}/checkin")["data"]
        assert {"fibser", "bam"} <= set(state["needs"]), state["needs"]
        form = open_checkin(patient, visit_id)
        asked = answer_until_emergency(form, axe_script, {
            "responses.fibser.answers.0": 4,  # frequency: present 50% of the time
            "responses.fibser.answers.1": 3,
            "responses.fibser.answers.2": 4,  # burden 4: address the side effects
            "responses.bam.answers.3": 2,     # drank on 4-8 days
        })
        assert [f for f in asked if f.startswith("responses.fibser.")] == [
            f"responses.fibser.answers.{i}" for i in range(3)]
        bam = [f for f in asked if f.startswith("responses.bam.")]
        # 17 items; the drug questions 7A-7G are skipped after 0 days of drug use.
        assert len(bam) == 17 - 1, bam
        send_emergency_section(form)
        scores = api(patient, "GET", f"/api/v1/visits/{visit_id}/checkin")["data"][
            "checkin"]["scores"]
        assert scores["fibser"]["burden"] == 4
        assert scores["bam"]["use"] == 2

        # The note panel: FIBSER's decision in the costs block, the BAM's scores.
        room = open_room(prescriber, visit_id)
        decision = room.get_by_test_id("fibser-decision")
        expect(decision).to_have_attribute("data-decision", "address_side_effects")
        expect(decision).to_contain_text("Side-effect burden 4/6")
        expect(room.locator('.scores [data-instrument="bam"]')).to_contain_text("Use 2")
        expect(room.locator('.scores [data-instrument="fibser"]')).to_contain_text("burden 4")
        no_serious_violations(room, axe_script, "the note panel")
        assert not [line for line in patient.console if "pageerror" in line], patient.debug()
    finally:
        prescriber.close()
        patient.close()


def test_on_the_crisis_path_a_missing_state_stops_nothing(
        app_server: AppServer, browser: Any) -> None:
    from playwright.sync_api import expect

    patient = signed_in(browser, app_server, "patient@demo.test", viewport=PHONE)
    try:
        visit_id = patient.first_visit_id()
        page = open_checkin(patient, visit_id)
        for index in range(8):
            question(page, f"responses.phq9.answers.{index}").locator(
                "label.option").first.click()
            next_screen(page)
        # Item 9 above 0 without the screener: urgent, help at once, then "where are you".
        # (The server has the urgent answer before the place is sent: saved at once.)
        with page.expect_response(lambda r: r.request.method == "PUT" and
                                  r.url.endswith("/checkin/draft") and
                                  '"answers": [0, 0, 0, 0, 0, 0, 0, 0, 1]' in
                                  json.dumps(json.loads(r.request.post_data or "{}"))):
            question(page, "responses.phq9.answers.8").locator("label.option").nth(1).click()
        expect(page.get_by_test_id("crisis-resources")).to_be_visible()
        next_screen(page)
        expect(page.get_by_test_id("checkin-where")).to_be_visible()
        page.get_by_test_id("checkin-where-state").select_option("")
        page.get_by_test_id("checkin-where-confirm").check()
        with page.expect_response(lambda r: r.request.method == "PUT" and
                                  r.url.endswith("/checkin/emergency-info")) as sent:
            next_screen(page)
        assert sent.value.ok, sent.value.text()
        expect(page.get_by_test_id("checkin-where")).to_be_hidden()
        expect(page.locator("#location-state-error")).to_be_hidden()
        expect(page.get_by_test_id("crisis-resources")).to_be_visible()
        info = api(patient, "GET", f"/api/v1/visits/{visit_id}/checkin")["data"]
        assert info["emergency_info"]["confirmed_at"] is not None
        assert info["emergency_info"]["location"]["address"]
    finally:
        patient.close()
