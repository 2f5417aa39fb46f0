"""What a patient is sent about a visit: the invitation, a change of time and a
cancellation, each saying who, when (in the patient's zone, named) and how to prepare,
with the visit as a calendar event (iCalendar, ``icalendar``).

The event keeps one UID for the visit's life; every change raises its SEQUENCE, so a
calendar replaces the event it holds (``METHOD:REQUEST``) or removes it
(``METHOD:CANCEL``), as RFC 5546 asks. No clinical content in any of it: not the kind of
visit, nor a reason; the event does not carry the join link either (calendars sync to
other services), only where to find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText

from server.models import User, Visit
from server.services import Services

Method = Literal["REQUEST", "CANCEL"]
Kind = Literal["visit_invite", "visit_changed", "visit_cancelled", "visit_reminder"]

PREPARE = (
    "Before your visit:\n"
    "- Open the link up to 72 hours before to answer a few short questions (about 5 "
    "minutes). It saves as you go.\n"
    "- Find a quiet, private place where you can talk freely, and charge your phone or "
    "plug in your computer.\n"
    "- At the time of the visit, open the link again: you wait in a waiting room until "
    "{prescriber} lets you in. Nothing to install.\n"
)


def when_text(at: datetime, zone: str) -> str:
    """"Monday 7 December at 13:30 PST (America/Los_Angeles)": the day, the time and the
    zone named, so nobody has to guess which 13:30."""
    local = at.astimezone(ZoneInfo(zone))
    return f"{local.strftime('%A %-d %B at %H:%M %Z')} ({zone.replace('_', ' ')})"


def _uid(services: Services, visit: Visit) -> str:
    host = urlsplit(services.settings.base_url).hostname or "mendwell.local"
    return f"visit-{visit.id}@{host}"


def event(services: Services, visit: Visit, *, patient: User, prescriber: User, zone: str,
          method: Method, now: datetime) -> str:
    """The visit as an iCalendar object, its times in the patient's zone (with the
    zone's definition, so any calendar shows the right hour)."""
    calendar = Calendar()
    calendar.add("prodid", "-//Mendwell//Video visits//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    item = Event()
    item.add("uid", _uid(services, visit))
    item.add("sequence", visit.calendar_sequence)
    item.add("dtstamp", now)
    start = visit.scheduled_at.astimezone(ZoneInfo(zone))
    item.add("dtstart", start)
    item.add("dtend", start + timedelta(minutes=visit.duration_minutes))
    item.add("summary", f"Video visit with {prescriber.name}")
    item.add("description", "Join from the link in your invitation email. "
                            f"Sign in at {services.settings.base_url}/login to see it.")
    item.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    _, sender = parseaddr(services.settings.smtp_from)
    organizer = vCalAddress(f"mailto:{sender or 'no-reply@mendwell.local'}")
    organizer.params["cn"] = vText("Mendwell")
    item.add("organizer", organizer)
    attendee = vCalAddress(f"mailto:{patient.email}")
    attendee.params["cn"] = vText(patient.name)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    item.add("attendee", attendee)
    calendar.add_component(item)
    calendar.add_missing_timezones()
    text: bytes = calendar.to_ical()
    return text.decode()


@dataclass(frozen=True)
class Email:
    kind: Kind
    subject: str
    body: str
    calendar: str | None


@dataclass(frozen=True)
class About:
    """The visit an email is about, and who and when as its patient reads it."""

    services: Services
    visit: Visit
    patient: User
    prescriber: User
    zone: str
    now: datetime

    @property
    def when(self) -> str:
        return when_text(self.visit.scheduled_at, self.zone)

    @property
    def hello(self) -> str:
        return f"Hello {self.patient.name},\n\n"

    @property
    def prepare(self) -> str:
        return PREPARE.format(prescriber=self.prescriber.name)

    def event(self, method: Method) -> str:
        return event(self.services, self.visit, patient=self.patient,
                     prescriber=self.prescriber, zone=self.zone, method=method, now=self.now)


def invitation(about: About, link: str) -> Email:
    hours = about.services.settings.join_link_hours
    return Email(
        kind="visit_invite", subject="Your Mendwell video visit",
        body=(about.hello
              + f"Your video visit with {about.prescriber.name} is on {about.when}. It lasts "
              f"about {about.visit.duration_minutes} minutes.\n\n"
              "Open this link on your phone or computer to check in and join:\n\n"
              f"{link}\n\n" + about.prepare
              + f"\nThe link works until {hours} hours after your visit starts. If you did "
              "not expect this email, you can ignore it.\n"),
        calendar=about.event("REQUEST"))


def change(about: About) -> Email:
    return Email(
        kind="visit_changed", subject="Your Mendwell video visit has moved",
        body=(about.hello
              + f"Your video visit with {about.prescriber.name} is now on {about.when}. It "
              f"lasts about {about.visit.duration_minutes} minutes.\n\n"
              "The link in your invitation email still works; use it at the new time.\n\n"
              + about.prepare),
        calendar=about.event("REQUEST"))


def cancellation(about: About) -> Email:
    return Email(
        kind="visit_cancelled", subject="Your Mendwell video visit is cancelled",
        body=(about.hello
              + f"Your video visit with {about.prescriber.name} on {about.when} is "
              "cancelled. Its link no longer works.\n\n"
              "Your care team will be in touch to arrange another time. If you need help "
              "before then, call your clinic.\n"),
        calendar=about.event("CANCEL"))


def reminder(about: About, link: str) -> Email:
    """A reminder before the visit (``MENDWELL_REMINDER_HOURS``): the same who and when,
    and the link to join; no calendar event (the invitation's is still right)."""
    return Email(
        kind="visit_reminder", subject="Reminder: your Mendwell video visit",
        body=(about.hello
              + f"A reminder: your video visit with {about.prescriber.name} is on "
              f"{about.when}.\n\n"
              "Open this link on your phone or computer to check in and join:\n\n"
              f"{link}\n\n" + about.prepare),
        calendar=None)
