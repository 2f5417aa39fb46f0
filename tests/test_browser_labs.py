"""Labs in the note panel, in real Chromium against the real app in its own process:
the prescriber sees an overdue lithium level at the top of the panel and among the
signing gate's reasons, and entering the result lifts the reason, live.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script
from tests.test_browser_notes import api, open_room, signed_in, start_at_last_visit

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

# How SQLAlchemy writes a UTC datetime in SQLite (server/db.py, UTCDateTime).
STORED = "%Y-%m-%d %H:%M:%S.%f"


def backdate_medication(database: Path, drug: str, days: int) -> None:
    """The medication was started ``days`` ago: the server's clock cannot be moved, the
    record can."""
    with sqlite3.connect(database) as db:
        (medication_id, started), = db.execute(
            "SELECT id, started_at FROM medications WHERE drug = ?", (drug,)).fetchall()
        earlier = (datetime.strptime(started, STORED) - timedelta(days=days)).strftime(STORED)
        db.execute("UPDATE medications SET started_at = ?, changed_at = ? WHERE id = ?",
                   (earlier, earlier, medication_id))
        db.execute("UPDATE medication_changes SET at = ? WHERE medication_id = ?",
                   (earlier, medication_id))


def test_the_prescriber_sees_an_overdue_lithium_level_and_entering_it_lifts_the_gate(
        app_server: AppServer, browser: Any, axe_script: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_browser_checkin import serious_violations

    # axe is injected as a script, which our CSP refuses: in this context only.
    prescriber = signed_in(browser, app_server, "prescriber@demo.test", bypass_csp=True,
                           viewport={"width": 390, "height": 844})
    try:
        visit_id, patient_id = start_at_last_visit(prescriber, {
            "action": "start", "drug": "Lithium carbonate", "dose": "300", "unit": "mg",
            "frequency": "twice daily", "reason": "Bipolar depression"})
        backdate_medication(app_server.database, "Lithium carbonate", 10)

        page = open_room(prescriber, visit_id)
        labs = page.get_by_test_id("panel-labs")
        level = labs.locator('[data-check="lithium_level"]')
        expect(level).to_have_attribute("data-status", "overdue")
        expect(level).to_contain_text("Lithium level")
        expect(level).to_contain_text("overdue since")
        expect(level).to_contain_text("none on record")
        expect(level.locator(".level-badge")).to_have_text("Review")
        # The medication list says the same, from the same rules.
        flag = page.locator('[data-drug="Lithium carbonate"] [data-testid="monitoring-flag"]')
        expect(flag).to_have_attribute("data-status", "overdue")
        expect(flag).to_contain_text("Lithium level overdue since")
        # At the top: above the scores, in view without scrolling the panel far.
        box, scores = labs.bounding_box(), page.get_by_text("Scores and trends").bounding_box()
        assert box is not None and scores is not None and box["y"] < scores["y"]
        # The signing gate lists it like the check-in's reasons.
        expect(page.locator("#safety-required-badge")).to_be_visible()
        gate = page.locator('#safety-why [data-reason="lab_overdue_lithium_level"]')
        expect(gate).to_contain_text("Lithium level overdue")
        assert serious_violations(page, axe_script) == []

        expect(page.locator("#panel-live")).to_have_text("Live", timeout=15_000)
        # Yesterday in UTC: never after today in the clinic's zone, and 9 days into the
        # new lithium, past the 5 days before a level counts.
        taken = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        added = api(prescriber, "POST", f"/api/v1/patients/{patient_id}/labs", {
            "test": "lithium_level", "value": 0.7, "unit": "mmol/L", "taken_on": taken})
        assert added["status"] == 201, added
        # The lab.added event: the panel reads the note again and the reason goes; the
        # labs block and the medication list are fetched again, and agree.
        expect(gate).to_have_count(0, timeout=10_000)
        expect(labs.locator('[data-check="lithium_level"]')).to_have_count(0, timeout=10_000)
        expect(flag).to_have_attribute("data-status", "upcoming", timeout=10_000)
        expect(flag).to_contain_text("Needs monitoring")
    finally:
        prescriber.close()
