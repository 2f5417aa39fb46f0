"""Chat in the call, in two real Chromiums: the prescriber on a desktop, the patient on a
phone (390x844, the chat folded behind its button). Messages go both ways as text, the
patient reloads and still has the history, and the prescriber reads the chat on the
visit's record once the call is over. axe checks the room with the chat open."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_browser_checkin import axe_script, serious_violations

if TYPE_CHECKING:
    from tests.browser_support import AppServer

pytest_plugins = ["tests.browser_support"]

pytestmark = pytest.mark.browser

__all__ = ["axe_script"]  # the fixture, used by name

HOSTILE = "Take it with food <b>please</b> <script>window.hacked = 1</script>"
RTL = "شكرا، سأفعل ذلك 👍🏽"
TODAY = re.compile(r"^\d{2}:\d{2} [A-Z][A-Za-z0-9+-]*$")  # "13:30 EST": time only, today


def messages(page: Any) -> list[str]:
    texts: list[str] = page.locator("#chat-messages .chat-text").all_inner_texts()
    return texts


def test_prescriber_and_patient_chat_both_ways_and_the_chat_stays_with_the_visit(
    browser: Any, app_server: AppServer, axe_script: Path,
) -> None:
    from playwright.sync_api import expect

    from tests.browser_support import Person

    patient = Person(browser, app_server, "patient@demo.test",
                     viewport={"width": 390, "height": 844}, bypass_csp=True)
    prescriber = Person(browser, app_server, "prescriber@demo.test", bypass_csp=True)
    try:
        for person in (patient, prescriber):
            person.sign_in()
        visit_id = patient.first_visit_id()
        patient.join_waiting_room(visit_id)
        # Waiting: the patient's chat is folded on the phone, and closed for writing.
        expect(patient.page.get_by_test_id("chat-toggle")).to_be_visible()
        expect(patient.page.get_by_test_id("chat-input")).to_be_hidden()
        patient.page.get_by_test_id("chat-toggle").click()
        expect(patient.page.get_by_test_id("chat-input")).to_be_disabled()
        patient.page.get_by_test_id("chat-toggle").click()

        prescriber.admit(patient, visit_id)
        for person in (patient, prescriber):
            person.expect_state("connected", timeout=20_000)

        # The prescriber (desktop: the chat is open beside the call) writes; Enter sends.
        doctor = prescriber.page
        expect(doctor.get_by_test_id("chat-toggle")).to_be_hidden()
        doctor.get_by_test_id("chat-input").fill(HOSTILE)
        doctor.get_by_test_id("chat-input").press("Enter")
        expect(doctor.locator("#chat-messages .chat-text")).to_have_text([HOSTILE])
        expect(doctor.get_by_test_id("chat-input")).to_have_value("")

        # The patient's phone counts it unread on the Chat button, and reads it out.
        phone = patient.page
        expect(phone.get_by_test_id("chat-unread")).to_have_text("1")
        expect(phone.locator("#chat-announcer")).to_contain_text(HOSTILE)
        phone.get_by_test_id("chat-toggle").click()
        expect(phone.get_by_test_id("chat-unread")).to_be_hidden()
        expect(phone.locator("#chat-messages .chat-text")).to_have_text([HOSTILE])
        # Text, never HTML: no element was made of it, no script ran.
        assert phone.locator("#chat-messages b, #chat-messages script").count() == 0
        assert phone.evaluate("window.hacked") is None
        when = phone.locator("#chat-messages time").first.inner_text()
        assert TODAY.match(when), when
        meta = phone.locator("#chat-messages .chat-meta").first.inner_text()
        assert "Prescriber" in meta

        # The patient answers with the Send button.
        phone.get_by_test_id("chat-input").fill(RTL)
        phone.get_by_test_id("chat-send").click()
        expect(phone.locator("#chat-messages .chat-text")).to_have_text([HOSTILE, RTL])
        expect(doctor.locator("#chat-messages .chat-text")).to_have_text([HOSTILE, RTL])
        expect(doctor.locator("#chat-announcer")).to_contain_text(RTL)
        expect(phone.locator(".chat-message.pending")).to_have_count(0)

        # axe on the room with the chat open, on both sizes.
        checked = {"prescriber's room": serious_violations(doctor, axe_script),
                   "patient's room on a phone": serious_violations(phone, axe_script)}
        assert checked == {name: [] for name in checked}, checked

        # A reload: back in the call, the chat so far is there.
        phone.reload()
        patient.expect_state("connected", timeout=20_000)
        phone.get_by_test_id("chat-toggle").click()
        expect(phone.locator("#chat-messages .chat-text")).to_have_text([HOSTILE, RTL])
        expect(phone.locator(".chat-message.mine .chat-text")).to_have_text([RTL])

        # The visit ends; the chat is on the visit's record for the prescriber.
        doctor.once("dialog", lambda dialog: dialog.accept())
        doctor.locator("#end-visit").click()
        prescriber.expect_state("ended")
        doctor.goto(f"/visits/{visit_id}")
        record = doctor.get_by_test_id("chat-record")
        expect(record.get_by_test_id("chat-record-message")).to_have_count(2)
        expect(record.locator(".said")).to_have_text([HOSTILE, RTL])
        assert serious_violations(doctor, axe_script) == []
    except Exception:
        print(patient.debug())
        print(prescriber.debug())
        raise
    finally:
        patient.close()
        prescriber.close()
