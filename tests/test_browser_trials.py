"""Is it working: a prescriber sees a medication trial's response in the note panel, in
real Chromium against the real app in its own process (the demo's data).

The demo patient's PHQ-9 was 17 at intake and 10 four weeks ago. Sertraline is started
in a signed note now, so the trial's baseline is that 10 (the last score before the
start); the patient's check-in for today's visit then scores 4: a 6-point drop from a
baseline at caseness to below it (reliable recovery), a response and a remission.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.checkin_bodies import checkin_body
from tests.test_browser_checkin import axe_script
from tests.test_browser_notes import (
    SERTRALINE_START,
    api,
    open_room,
    signed_in,
    start_at_last_visit,
)

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

PHQ9_4 = [1, 1, 1, 1, 0, 0, 0, 0, 0]
# Where to put screenshots for reviewers (unset: none).
SCREENSHOTS = os.environ.get("MENDWELL_SCREENSHOTS")


def test_the_prescriber_sees_the_trials_response_in_the_panel(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    # axe is injected as a script, which our CSP refuses: in this context only.
    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True)
    patient = signed_in(browser, app_server, "patient@demo.test",
                        viewport={"width": 390, "height": 844})
    try:
        visit_id, _ = start_at_last_visit(prescriber, SERTRALINE_START)

        done = api(patient, "POST", f"/api/v1/visits/{visit_id}/checkin",
                   checkin_body(phq9=PHQ9_4))
        assert done["status"] == 201, done

        page = open_room(prescriber, visit_id)
        trial = page.get_by_test_id("current-trial")
        expect(trial).to_contain_text("Current trial: Start Sertraline 50 mg")
        line = page.get_by_test_id("trial-phq9")
        expect(line).to_contain_text("10 → 4 (-6, 60 % better)")
        expect(line).to_contain_text("reliable recovery")
        expect(line).to_contain_text("response")
        expect(line).to_contain_text("remission")
        expect(line).to_have_attribute("data-response", "true")
        expect(page.get_by_test_id("not-on-track-phq9")).to_have_count(0)
        # The start is on the trend's time axis, with the drug and dose, in words too.
        chart = page.locator("#panel-phq9")
        expect(chart.locator("g.med-event")).to_have_attribute(
            "data-label", "Start Sertraline 50 mg")
        expect(chart.locator("desc")).to_contain_text("Medication changes: Start Sertraline")
        expect(chart.locator("desc")).to_contain_text("down 6 from the baseline of 10")
        assert trial.is_visible()
        violations = serious_violations(page, axe_script)
        assert violations == [], violations
        if SCREENSHOTS:
            # What the prescriber sees on opening the room, then the whole panel.
            page.screenshot(path=str(Path(SCREENSHOTS) / "room-with-panel.png"))
            # The panel scrolls on its own: a tall window shows all of it at once.
            page.set_viewport_size({"width": 1100, "height": 4000})
            page.locator("#note-panel").screenshot(
                path=str(Path(SCREENSHOTS) / "note-panel-trial.png"))
    finally:
        prescriber.close()
        patient.close()
