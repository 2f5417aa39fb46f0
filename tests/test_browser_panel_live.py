"""The note panel's parts are live, in real Chromium against the real app: while the
prescriber's visit room is open, a coordinator enters the overdue lithium level on the
labs page in a browser of their own, and the overdue lab leaves the prescriber's panel
without a reload; a PDMP check recorded through the API and a licence an admin records
show in the controlled-substance block the same way (note-panel.js, ``?part=``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script
from tests.test_browser_labs import backdate_medication
from tests.test_browser_notes import api, open_room, signed_in, start_at_last_visit

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name


def test_a_lab_entered_elsewhere_and_a_pdmp_check_show_in_the_open_panel(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True,
                           viewport={"width": 390, "height": 844})
    coordinator = signed_in(browser, app_server, "coordinator@demo.test")
    admin = signed_in(browser, app_server, "admin@demo.test")
    patient = signed_in(browser, app_server, "patient@demo.test")
    try:
        visit_id, patient_id = start_at_last_visit(prescriber, {
            "action": "start", "drug": "Lithium carbonate", "dose": "300", "unit": "mg",
            "frequency": "twice daily", "reason": "Bipolar depression"})
        backdate_medication(app_server.database, "Lithium carbonate", 10)
        where = api(patient, "PUT", f"/api/v1/visits/{visit_id}/checkin/emergency-info", {
            "location": {"address": "40 Pearl Street, Albany", "state": "NY"},
            "callback_phone": "518 555 0142"})
        assert where["status"] == 200, where

        page = open_room(prescriber, visit_id)
        level = page.get_by_test_id("panel-labs").locator('[data-check="lithium_level"]')
        expect(level).to_have_attribute("data-status", "overdue")
        block = page.get_by_test_id("panel-controlled")
        block.locator("summary").click()
        state = page.get_by_test_id("controlled-state")
        expect(state).to_contain_text("no licence here")
        expect(page.get_by_test_id("controlled-credentials-link")).to_be_visible()
        expect(page.get_by_test_id("pdmp-checks")).to_be_empty()
        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
        # Marks the page: a reload would lose it.
        page.evaluate("() => { window.__notReloaded = true; }")

        # The coordinator enters the result on the labs page, in their own browser.
        labs = coordinator.page
        labs.goto(f"/patients/{patient_id}/labs")
        labs.get_by_test_id("lab-test").select_option("lithium_level")
        labs.get_by_test_id("lab-value").fill("0.7")
        labs.get_by_test_id("lab-unit").select_option("mmol/L")
        # Yesterday in UTC: never after today in the clinic's zone, and 9 days into the
        # lithium, past the 5 days before a level counts.
        labs.get_by_test_id("lab-taken").fill(
            (datetime.now(UTC) - timedelta(days=1)).date().isoformat())
        labs.get_by_test_id("lab-save").click()
        expect(labs.get_by_test_id("lab-added")).to_be_visible()

        # lab.added: the labs part is fetched again and the overdue level is gone.
        expect(level).to_have_count(0, timeout=10_000)

        # A PDMP check recorded through the API (not the panel's form): pdmp.checked.
        recorded = api(prescriber, "POST", f"/api/v1/visits/{visit_id}/pdmp-checks",
                       {"state": "NY", "result": "reviewed"})
        assert recorded["status"] == 201, recorded
        check = page.get_by_test_id("pdmp-checks").locator(
            f'[data-check-id="{recorded["data"]["id"]}"]')
        expect(check).to_contain_text("PDMP NY: reviewed", timeout=10_000)
        expect(page.locator("#pdmp-empty")).to_be_hidden()

        # An admin records the prescriber's New York licence and DEA registration:
        # prescriber.credentials_updated.
        prescriber_id = api(prescriber, "GET", "/api/v1/session")["data"]["user"]["id"]
        held = api(admin, "PUT", f"/api/v1/prescribers/{prescriber_id}/credentials", {
            "credentials": [{"state": "NY", "license_number": "NY-301122",
                             "dea_number": "AB1234563"}]})
        assert held["status"] == 200, held
        expect(state).to_contain_text("DEA registered", timeout=10_000)
        expect(state).not_to_contain_text("no licence here")
        expect(page.get_by_test_id("controlled-credentials-link")).to_have_count(0)
        # The block the reader opened stays open; the page was never reloaded.
        assert block.evaluate("(el) => el.open")
        assert page.evaluate("() => window.__notReloaded === true")
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
    finally:
        for person in (prescriber, coordinator, admin, patient):
            person.close()
