"""Controlled substances by telehealth in real Chromium against the real app: a
prescriber starting buprenorphine is stopped by the sign confirmation until a PDMP check
of the patient's state is recorded for the visit, records it in the note panel's compact
form, and then signs (CLINICAL.md; server/controlled.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script
from tests.test_browser_notes import api, expect_state, open_room, server_note, signed_in

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name


def test_a_buprenorphine_start_waits_for_the_pdmp_check_then_signs(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True)
    admin = signed_in(browser, app_server, "admin@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 390, "height": 844})
    try:
        visit_id = patient.first_visit_id()
        # The patient is in New York for this visit; the prescriber is licensed and
        # DEA-registered there.
        where = api(patient, "PUT", f"/api/v1/visits/{visit_id}/checkin/emergency-info", {
            "location": {"address": "40 Pearl Street, Albany", "state": "NY"},
            "callback_phone": "518 555 0142"})
        assert where["status"] == 200, where
        prescriber_id = api(prescriber, "GET", "/api/v1/session")["data"]["user"]["id"]
        held = api(admin, "PUT", f"/api/v1/prescribers/{prescriber_id}/credentials", {
            "credentials": [{"state": "NY", "license_number": "NY-301122",
                             "dea_number": "AB1234563"}]})
        assert held["status"] == 200, held
        patient_id = server_note(prescriber, visit_id)["patient_id"]

        page = open_room(prescriber, visit_id)
        block = page.get_by_test_id("panel-controlled")
        block.locator("summary").click()
        expect(page.get_by_test_id("controlled-state")).to_contain_text("New York")
        expect(page.get_by_test_id("controlled-state")).to_contain_text("DEA registered")
        expect(page.get_by_test_id("pdmp-checks")).to_be_empty()

        page.get_by_role("button", name="Add a medication change").click()
        row = page.locator("[data-med-row]").last
        row.locator('[data-field="action"]').select_option("start")
        row.locator('[data-field="drug"]').fill("Buprenorphine/naloxone")
        row.locator('[data-field="dose"]').fill("8")
        row.locator('[data-field="unit"]').fill("mg")
        row.locator('[data-field="route"]').fill("sublingual")
        row.locator('[data-field="frequency"]').fill("once daily")
        row.get_by_label("Days' supply").fill("7")
        page.locator("#note-plan").fill("Start buprenorphine-naloxone; review in one week.")
        expect_state(page, "saved", who=prescriber)
        assert server_note(prescriber, visit_id)["medication_changes"][0]["days_supply"] == 7

        # The confirmation asks the gate first: no PDMP check, so no Sign.
        sign = page.get_by_role("button", name="Sign the note")
        sign.click()
        dialog = page.get_by_test_id("sign-dialog")
        expect(dialog).to_be_visible()
        gaps = page.get_by_test_id("sign-dialog-controlled-list")
        expect(gaps).to_contain_text("Check the New York PDMP")
        expect(gaps.locator("li")).to_have_count(1)
        expect(page.get_by_test_id("sign-confirm")).to_be_hidden()
        assert page.evaluate("() => document.getElementById('sign-dialog').contains("
                             "document.activeElement)")
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert server_note(prescriber, visit_id)["status"] == "draft"

        # Recorded in the panel, for this visit and the patient's state.
        form = page.get_by_test_id("pdmp-form")
        expect(form.get_by_test_id("pdmp-state")).to_have_value("NY")
        form.get_by_test_id("pdmp-result").select_option("reviewed")
        form.get_by_test_id("pdmp-record").click()
        expect(page.get_by_test_id("pdmp-checks")).to_contain_text("PDMP NY: reviewed")
        violations = serious_violations(page, axe_script)
        assert violations == [], violations

        sign.click()
        expect(page.get_by_test_id("sign-dialog-ready")).to_be_visible()
        expect(page.get_by_test_id("sign-dialog-controlled")).to_be_hidden()
        page.get_by_test_id("sign-confirm").click()
        expect(page.locator("#note-signed-line")).to_contain_text("Signed by")
        assert server_note(prescriber, visit_id)["status"] == "signed"
        meds = api(prescriber, "GET", f"/api/v1/patients/{patient_id}/medications")
        bup = next(m for m in meds["data"]["medications"]
                   if m["drug"] == "Buprenorphine/naloxone")
        assert bup["active"] and bup["history"][0]["days_supply"] == 7
        checks = api(prescriber, "GET", f"/api/v1/visits/{visit_id}/pdmp-checks")
        assert [(c["state"], c["result"]) for c in checks["data"]["pdmp_checks"]] == [
            ("NY", "reviewed")]
    finally:
        prescriber.close()
        admin.close()
        patient.close()
