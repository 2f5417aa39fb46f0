"""What the patient is sent about a visit, through a real SMTP server: the invitation, a
change of time and a cancellation, each saying who and when in the patient's zone, with
a calendar event that calendars can update (same UID, higher SEQUENCE) and cancel."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from starlette.testclient import TestClient

from server import outbox
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer
from tests.test_timezones import set_zone

PACIFIC = "America/Los_Angeles"


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


def delivered(run: Runner, services: Services, smtp: SmtpServer, count: int) -> Message:
    assert run(outbox.deliver_due, services) == 1
    return smtp.inbox.wait_for(count)[-1]


def parts(message: Message) -> tuple[str, Message, Calendar]:
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    body, ics = text.get_payload(decode=True), calendar.get_payload(decode=True)
    assert isinstance(body, bytes) and isinstance(ics, bytes)
    return body.decode().replace("\r\n", "\n"), calendar, Calendar.from_ical(ics)


def the_event(calendar: Calendar) -> Any:
    [event] = calendar.walk("VEVENT")
    return event


def test_invitation_change_and_cancellation_keep_one_calendar_event_up_to_date(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    sign_in(clinic.prescriber)
    visit = client.get(f"/api/v1/visits/{clinic.visit_id}").json()
    start = datetime.fromisoformat(visit["scheduled_at"])
    local = start.astimezone(ZoneInfo(PACIFIC))

    assert client.post(f"/api/v1/visits/{clinic.visit_id}/invite").status_code == 201
    text, part, calendar = parts(delivered(run, services, smtp_server, 1))
    # Who, when in the patient's zone (named), how long, how to prepare.
    assert f"Your video visit with {clinic.prescriber.name} is on " \
           f"{local.strftime('%A %-d %B at %H:%M %Z')} (America/Los Angeles)" in text
    assert "It lasts about 15 minutes." in text
    assert "Before your visit:" in text and "quiet, private place" in text
    assert part.get_param("method") == "REQUEST"
    assert str(calendar["METHOD"]) == "REQUEST"
    event = the_event(calendar)
    uid = str(event["UID"])
    assert uid == f"visit-{clinic.visit_id}@testserver"
    assert int(event["SEQUENCE"]) == 0
    # To the second, as iCalendar keeps times (the fixture's visit has microseconds).
    assert event.decoded("DTSTART") == start.replace(microsecond=0)
    assert event["DTSTART"].params["TZID"] == PACIFIC
    assert calendar.walk("VTIMEZONE"), "the zone's definition travels with the event"
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=15)
    assert str(event["ATTENDEE"]) == f"mailto:{clinic.patient.email}"
    assert str(event["SUMMARY"]) == f"Video visit with {clinic.prescriber.name}"

    # Moved: the same event, a higher SEQUENCE, the new time.
    later = (start + timedelta(days=1, hours=2)).replace(microsecond=0)
    moved = client.patch(f"/api/v1/visits/{clinic.visit_id}",
                         json={"scheduled_at": later.isoformat(), "duration_minutes": 30})
    assert moved.status_code == 200, moved.text
    text, part, calendar = parts(delivered(run, services, smtp_server, 2))
    assert "has moved" in smtp_server.inbox.messages[-1]["Subject"]
    assert later.astimezone(ZoneInfo(PACIFIC)).strftime("%A %-d %B at %H:%M %Z") in text
    assert "It lasts about 30 minutes." in text
    event = the_event(calendar)
    assert (str(event["UID"]), int(event["SEQUENCE"])) == (uid, 1)
    assert event.decoded("DTSTART") == later
    assert part.get_param("method") == "REQUEST"

    # Cancelled: the calendar removes it.
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/cancel").status_code == 200
    text, part, calendar = parts(delivered(run, services, smtp_server, 3))
    assert "is cancelled" in smtp_server.inbox.messages[-1]["Subject"]
    assert "Its link no longer works." in text
    assert str(calendar["METHOD"]) == "CANCEL"
    assert part.get_param("method") == "CANCEL"
    event = the_event(calendar)
    assert (str(event["UID"]), int(event["SEQUENCE"]), str(event["STATUS"])) == \
        (uid, 2, "CANCELLED")
    for message in smtp_server.inbox.messages:
        lowered = parts(message)[0].lower()
        for clinical in ("follow", "intake", "psychiatr", "medication", "diagnos", "phq"):
            assert clinical not in lowered, clinical
