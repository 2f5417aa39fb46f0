"""A patient away from home sets their time zone from their phone in one tap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser


def test_the_patient_takes_the_devices_zone_in_one_tap(
        browser: Any, app_server: AppServer) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import Person

    patient = Person(browser, app_server, "patient2@demo.test",
                     viewport={"width": 375, "height": 740}, timezone_id="America/Denver")
    try:
        patient.sign_in()
        page = patient.page
        page.goto("/home")
        expect(page.get_by_test_id("time-zone")).to_contain_text("America/New York")
        page.get_by_role("link", name="Change").click()
        offer = page.locator("#device-zone button")
        expect(offer).to_have_text("America/Denver")
        offer.click()
        assert page.locator("#timezone").input_value() == "America/Denver"
        page.get_by_role("button", name="Save time zone").click()
        expect(page.get_by_test_id("time-zone-saved")).to_be_visible()
        # Already the device's zone: nothing more to offer.
        expect(page.locator("#device-zone")).to_be_hidden()
        page.goto("/home")
        expect(page.get_by_test_id("time-zone")).to_contain_text("America/Denver")
    finally:
        patient.close()
