"""A patient signs a Part 2 consent and revokes it on a phone-sized page; axe finds no
serious violation on the pages on the way (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import Phone, serious_violations
from tests.test_browser_checkin import axe_script as axe_script
from tests.test_browser_checkin import demo_server as demo_server

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser


@pytest.fixture
def phone_for_axe(browser: Any, demo_server: AppServer) -> Iterator[Phone]:
    # axe is injected as a script, which our CSP rightly refuses: in this context only.
    device = Phone(browser, demo_server, bypass_csp=True)
    device.sign_in()
    yield device
    device.close()


def test_a_patient_signs_and_revokes_a_consent_on_a_phone(
        phone_for_axe: Phone, axe_script: Path) -> None:
    device = phone_for_axe
    page = device.page
    page.goto("/home")
    page.get_by_role("link", name="Privacy").click()
    page.wait_for_url("**/privacy")
    page.get_by_test_id("no-consents").wait_for()
    checked = {"/privacy": serious_violations(page, axe_script)}

    page.get_by_test_id("new-consent").click()
    page.get_by_test_id("consent-form").wait_for()
    # Sent without an end: the page says what is missing, next to the field.
    page.get_by_test_id("kind-tpo").check()
    page.get_by_test_id("class-treating_providers").check()
    page.get_by_test_id("category-sud_measures").check()
    page.get_by_test_id("category-moud").check()
    page.get_by_test_id("purpose-treatment").check()
    page.get_by_test_id("signed-name").fill("Jordan Rivera")
    page.get_by_test_id("consent-submit").click()
    page.locator("#expires_on-error").wait_for()
    checked["consent form with an error"] = serious_violations(page, axe_script)
    # What was ticked is still ticked; add the end and sign.
    assert page.get_by_test_id("category-moud").is_checked()
    page.get_by_test_id("expiry-event").fill("When I leave the program")
    page.get_by_test_id("consent-submit").click()
    page.get_by_test_id("privacy-done").wait_for()
    consent = page.get_by_test_id("consent")
    assert consent.count() == 1
    assert consent.get_attribute("data-active") == "yes"
    assert "My treating providers" in consent.inner_text()
    # The page fits the phone: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    checked["/privacy with a consent"] = serious_violations(page, axe_script)

    # Two taps: Revoke, then "Yes, revoke it".
    page.get_by_test_id("revoke").click()
    page.get_by_test_id("confirm-revoke").click()
    page.get_by_test_id("privacy-done").wait_for()
    assert "revoked" in page.get_by_test_id("privacy-done").inner_text()
    assert page.get_by_test_id("consent").get_attribute("data-active") == "no"
    assert page.get_by_test_id("consent-state").inner_text() == "Revoked"
    assert page.get_by_test_id("confirm-revoke").count() == 0
    # The API agrees: the consent no longer covers anything.
    listed = device.api("/api/v1/session")
    consents = device.api(f"/api/v1/patients/{listed['user']['id']}/consents")["consents"]
    assert [c["active"] for c in consents] == [False]

    page.get_by_test_id("accounting-link").click()
    page.get_by_test_id("no-disclosures").wait_for()
    checked["/privacy/disclosures"] = serious_violations(page, axe_script)
    assert checked == {name: [] for name in checked}, checked
    device.assert_no_errors(refused=1)


def test_the_care_teams_part2_pages_pass_axe(
        browser: Any, demo_server: AppServer, axe_script: Path) -> None:
    """The coordinator's pages of issue 18: the patient's consents and accounting, the
    counseling notes, a referral packet and a medical-emergency disclosure."""
    device = Phone(browser, demo_server, bypass_csp=True)
    checked: dict[str, list[dict[str, Any]]] = {}
    try:
        device.sign_in("coordinator@demo.test")
        page = device.page
        csrf = device.api("/api/v1/session")["csrf_token"]
        patients = {v["patient"]["name"]: v["patient"]["id"]
                    for v in device.api("/api/v1/visits")["visits"]}
        patient_id = patients["Jordan Rivera"]
        page.goto(f"/patients/{patient_id}")
        page.get_by_test_id("privacy-link").click()
        page.locator("details.card summary").first.click()
        page.get_by_test_id("consent-form").wait_for()
        checked["/patients/{id}/privacy"] = serious_violations(page, axe_script)
        page.get_by_test_id("counseling-link").click()
        page.get_by_test_id("counseling-text").fill("Relapse prevention plan reviewed.")
        page.get_by_role("button", name="Save the note").click()
        page.get_by_test_id("counseling-note").wait_for()
        checked["/patients/{id}/counseling-notes"] = serious_violations(page, axe_script)
        raised = device.context.request.post("/api/v1/escalations", headers={
            "X-CSRF-Token": csrf}, data={"patient_id": patient_id, "level": "step_up",
                                         "reason": "relapse", "text": "From a call"})
        assert raised.status == 201, raised.text()
        escalation_id = raised.json()["id"]
        page.goto(f"/escalations/{escalation_id}")
        page.get_by_test_id("refer").click()
        page.get_by_test_id("referral-form").wait_for()
        checked["/escalations/{id}/referral"] = serious_violations(page, axe_script)
        page.get_by_test_id("program-name").fill("Riverside Recovery Center")
        page.get_by_test_id("level-of-care").select_option("intensive_outpatient")
        page.get_by_test_id("referral-submit").click()
        page.get_by_test_id("referral").wait_for()
        assert "Intensive outpatient" in page.get_by_test_id("referral").inner_text()
        checked["/escalations/{id}/referrals/{id}"] = serious_violations(page, axe_script)
        page.goto(f"/escalations/{escalation_id}/emergency-disclosure")
        page.get_by_test_id("emergency-form").wait_for()
        checked["/escalations/{id}/emergency-disclosure"] = serious_violations(
            page, axe_script)
        page.goto(f"/patients/{patient_id}/privacy/disclosures")
        assert page.get_by_test_id("disclosure").count() == 1  # the referral packet
        checked["/patients/{id}/privacy/disclosures"] = serious_violations(page, axe_script)
    finally:
        device.close()
    assert checked == {name: [] for name in checked}, checked
