"""A prescriber's licences and DEA registrations in real Chromium against the real app,
on a phone: the signing gate's message about a missing licence links to the page, which
the prescriber reads but cannot change (it says to ask the clinic's admins); an admin
records it (a wrong DEA number shown by its field first, a second state added and
removed without a round trip), and the prescriber's open note panel follows the change
live; the admin reaches any prescriber's page from the accounts page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script
from tests.test_browser_notes import api, expect_state, open_room, signed_in

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

PHONE = {"width": 390, "height": 844}


def test_the_gate_shows_the_prescriber_their_licences_an_admin_records_one_and_the_panel_follows(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True,
                           viewport=PHONE)
    admin = signed_in(browser, app_server, "admin@demo.test", bypass_csp=True,
                      viewport=PHONE)
    patient = signed_in(browser, app_server, "patient@demo.test")
    try:
        visit_id = patient.first_visit_id()
        where = api(patient, "PUT", f"/api/v1/visits/{visit_id}/checkin/emergency-info", {
            "location": {"address": "40 Pearl Street, Albany", "state": "NY"},
            "callback_phone": "518 555 0142"})
        assert where["status"] == 200, where

        page = open_room(prescriber, visit_id)
        page.get_by_role("button", name="Add a medication change").click()
        row = page.locator("[data-med-row]").last
        row.locator('[data-field="action"]').select_option("start")
        row.locator('[data-field="drug"]').fill("Buprenorphine/naloxone")
        row.locator('[data-field="dose"]').fill("8")
        row.locator('[data-field="unit"]').fill("mg")
        row.get_by_label("Days' supply").fill("7")
        expect_state(page, "saved", who=prescriber)
        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
        page.get_by_role("button", name="Sign the note").click()
        gaps = page.get_by_test_id("sign-dialog-controlled-list")
        licence = gaps.locator('[data-code="not_licensed_in_state"]')
        expect(licence).to_contain_text("no current licence recorded in New York")
        expect(licence).to_contain_text("an admin records new ones")
        link = licence.get_by_test_id("gap-credentials-link")
        expect(link).to_have_accessible_name(
            "See your licences and DEA registrations (opens in a new tab)")
        expect(gaps.locator('[data-code="no_dea_registration_in_state"]')
               .get_by_test_id("gap-credentials-link")).to_be_visible()
        assert serious_violations(page, axe_script) == []

        # The link opens the page in a new tab (the note and the call stay): the list,
        # read only, and whom to ask.
        with page.context.expect_page() as opened:
            link.click()
        mine = opened.value
        mine.wait_for_load_state()
        expect(mine.get_by_role("heading", level=1)).to_have_text(
            "Your licences and DEA registrations")
        expect(mine.get_by_test_id("credentials-empty")).to_be_visible()
        expect(mine.get_by_test_id("credentials-who")).to_contain_text(
            "ask your clinic's admins")
        main = mine.locator("main")
        expect(main.locator("form, input, select, button")).to_have_count(0)
        assert mine.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
        assert serious_violations(mine, axe_script) == []

        # An admin records it, from the accounts page.
        form = admin.page
        form.goto("/admin")
        form.get_by_role("link", name="Licences and DEA for Dr. Priya Shah").click()
        rows = form.locator("#credential-rows [data-testid=credential-row]")
        expect(rows).to_have_count(1)
        first = rows.first
        first.get_by_label("State", exact=True).select_option("NY")
        first.get_by_label("Licence number").fill("NY-301122")
        first.get_by_label("Licence expires").fill("2035-06-30")
        first.get_by_label("DEA number").fill("AB1234567")  # a wrong check digit
        # A second state, added here, then taken away again.
        form.get_by_role("button", name="Add another state").click()
        expect(rows).to_have_count(2)
        expect(rows.nth(1).get_by_label("State", exact=True)).to_be_focused()
        rows.nth(1).get_by_role("button", name="Remove this row").click()
        expect(rows).to_have_count(1)
        form.get_by_role("button", name="Save").click()

        error = form.locator("#cred-0-dea_number-error")
        expect(error).to_contain_text("check digit does not match")
        dea = form.locator("#cred-0-dea_number")
        expect(dea).to_have_attribute("aria-invalid", "true")
        expect(dea).to_have_value("AB1234567")
        # Error and field side by side in the phone's width, nothing scrolled sideways.
        assert form.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
        assert serious_violations(form, axe_script) == []

        dea.fill("AB1234563")
        form.get_by_role("button", name="Save").click()
        expect(form.get_by_test_id("credentials-done")).to_have_text("Saved.")
        assert serious_violations(form, axe_script) == []

        # The prescriber's panel, still open, follows: prescriber.credentials_updated.
        page.bring_to_front()
        page.keyboard.press("Escape")
        page.get_by_test_id("panel-controlled").locator("summary").click()
        state = page.get_by_test_id("controlled-state")
        expect(state).to_contain_text("DEA registered", timeout=10_000)
        expect(state).to_contain_text("licensed")
        # And their list shows it, still read only.
        mine.reload()
        listed = mine.locator('[data-testid=credential-row][data-state="NY"]')
        expect(listed).to_contain_text("NY-301122")
        expect(listed).to_contain_text("AB1234563")
        expect(listed).to_contain_text("expires 30 Jun 2035")
        expect(mine.locator("main").locator("form, input, select, button")).to_have_count(0)
        assert serious_violations(mine, axe_script) == []
        held = api(prescriber, "GET", "/api/v1/session")["data"]["user"]["id"]
        stored = api(prescriber, "GET", f"/api/v1/prescribers/{held}/credentials")
        assert [(c["state"], c["dea_number"]) for c in stored["data"]["credentials"]] == [
            ("NY", "AB1234563")]
        # Their own write is refused, and changes nothing.
        refused = api(prescriber, "PUT", f"/api/v1/prescribers/{held}/credentials",
                      {"credentials": []})
        assert refused["status"] == 403, refused
    finally:
        prescriber.close()
        admin.close()
        patient.close()


def test_an_admin_reaches_a_prescribers_page_from_the_accounts(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    admin = signed_in(browser, app_server, "admin@demo.test", bypass_csp=True,
                      viewport=PHONE)
    try:
        page = admin.page
        page.goto("/admin")
        page.get_by_role("link", name="Licences and DEA for Dr. Priya Shah").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Dr. Priya Shah: licences and DEA registrations")
        rows = page.locator("#credential-rows [data-testid=credential-row]")
        first = rows.first
        first.get_by_label("State", exact=True).select_option("MA")
        first.get_by_label("Licence number").fill("MA-4411")
        first.get_by_label("Licence expires").fill("2020-01-31")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_test_id("credentials-done")).to_have_text("Saved.")
        # An expired licence is kept, and said to be expired.
        expect(rows.first.get_by_test_id("license-expired")).to_be_visible()
        assert serious_violations(page, axe_script) == []
        rows.first.get_by_test_id("credential-remove").check()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_test_id("credentials-done")).to_have_text(
            "Saved. Removed: Massachusetts.")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-state", "")
    finally:
        admin.close()
