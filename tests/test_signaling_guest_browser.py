"""The care team's "Remove" and "Cancel invitation" beside a guest, in real Chromium."""

from __future__ import annotations

import re
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

# The fixtures (app_server, browser, people) live there.
pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser


def invite_guest(app_server: AppServer, prescriber: Person, visit_id: int) -> str:
    """The prescriber invites a guest; the link from the queued email."""
    page = prescriber.page
    page.goto("/home")
    csrf = page.request.get("/api/v1/session").json()["csrf_token"]
    made = page.request.post(f"/api/v1/visits/{visit_id}/guests",
                             data={"name": "Ana Interpreter", "email": "ana@interpreters.test"},
                             headers={"X-CSRF-Token": csrf})
    assert made.status == 201, made.text()
    with sqlite3.connect(app_server.database) as db:
        body = db.execute("SELECT body FROM email_outbox WHERE id = ?",
                          (made.json()["outbox_id"],)).fetchone()[0]
    found = re.search(r"http\S+/guest\?t=\S+", body)
    assert found is not None, body
    return found.group(0)


def test_staff_send_a_guest_out_then_cancel_the_invitation(
        app_server: AppServer, people: dict[str, Person], browser: Any) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import Person

    prescriber = people["prescriber"]
    visit_id = people["patient"].first_visit_id()
    link = invite_guest(app_server, prescriber, visit_id)
    guest = Person(browser, app_server, "guest (no account)")
    try:
        guest.page.goto(link)
        guest.page.get_by_test_id("join").click()
        guest.expect_state("waiting")
        page = prescriber.page
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"/visits/{visit_id}")
        remove = page.get_by_role("button", name="Remove Ana Interpreter from the visit")
        remove.click()
        # Out, told why, and not coming back by itself; gone from the staff's list.
        guest.expect_state("failed")
        expect(guest.page.locator("body")).to_contain_text("ended your place in this visit")
        expect(remove).to_have_count(0)
        # The link still works: back in the waiting room, by a click (not by a reload).
        guest.page.goto(link)
        guest.page.get_by_test_id("join").click()
        guest.expect_state("waiting")
        page.get_by_role("button", name="Remove Ana Interpreter and cancel their "
                         "invitation").click()
        guest.expect_state("failed")
        expect(guest.page.locator("body")).to_contain_text("no longer works")
        errors = [line for line in guest.console + prescriber.console if "pageerror" in line]
        assert errors == [], errors
    finally:
        guest.close()
