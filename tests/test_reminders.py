"""Reminder emails before a visit (MENDWELL_REMINDER_HOURS, 24 h and 1 h by default):
each sent once, through the outbox and a real SMTP server, planned again when the visit
moves, and none for a visit that was called off or is already under way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server import outbox, visits
from server.models import OutboxEmail, VisitReminder
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.mail import SmtpServer


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


def schedule(client: TestClient, clinic: Clinic, services: Services, hours: float) -> int:
    at = (services.clock.now() + timedelta(hours=hours)).replace(microsecond=0)
    created = client.post("/api/v1/visits", json={
        "patient_id": clinic.patient.id, "prescriber_id": clinic.prescriber.id,
        "kind": "follow_up", "scheduled_at": at.isoformat()})
    assert created.status_code == 201, created.text
    visit_id: int = created.json()["id"]
    return visit_id


def reminders_queued(run: Runner, services: Services) -> list[OutboxEmail]:
    async def rows() -> list[OutboxEmail]:
        async with services.transaction() as session:
            return list((await session.scalars(select(OutboxEmail).where(
                OutboxEmail.kind == "visit_reminder").order_by(OutboxEmail.id))).all())

    return run(rows)


def planned(run: Runner, services: Services, visit_id: int) -> list[tuple[int, bool]]:
    async def rows() -> list[tuple[int, bool]]:
        async with services.transaction() as session:
            found = (await session.scalars(select(VisitReminder).where(
                VisitReminder.visit_id == visit_id).order_by(VisitReminder.hours))).all()
            return [(r.hours, r.sent_at is not None) for r in found]

    return run(rows)


def turn(run: Runner, services: Services) -> list[int]:
    return run(visits.send_reminders_now, services)


def test_a_reminder_a_day_before_and_an_hour_before_each_sent_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: SmtpServer,
) -> None:
    sign_in(clinic.prescriber)
    visit_id = schedule(client, clinic, services, hours=30)
    start = datetime.fromisoformat(client.get(f"/api/v1/visits/{visit_id}").json()
                                   ["scheduled_at"])
    assert planned(run, services, visit_id) == [(1, False), (24, False)]
    assert turn(run, services) == []  # nothing due yet

    services.clock.advance(timedelta(hours=6, minutes=1))
    assert turn(run, services) == [visit_id]
    assert turn(run, services) == []  # once
    [day_before] = reminders_queued(run, services)
    assert run(outbox.deliver_due, services) == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["Subject"] == "Reminder: your Mendwell video visit"
    text = day_before.body
    local = start.astimezone(ZoneInfo("America/New_York"))
    assert f"with {clinic.prescriber.name} is on {local.strftime('%A %-d %B at %H:%M %Z')}" \
        in text
    assert f"/visits/{visit_id}/join?t=" in text

    services.clock.advance(timedelta(hours=23))
    assert turn(run, services) == [visit_id]
    assert len(reminders_queued(run, services)) == 2
    assert planned(run, services, visit_id) == [(1, True), (24, True)]
    services.clock.advance(timedelta(hours=2))
    assert turn(run, services) == []


def test_a_moved_visit_is_reminded_for_its_new_time_and_a_cancelled_one_not_at_all(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    sign_in(clinic.coordinator)
    visit_id = schedule(client, clinic, services, hours=25)
    services.clock.advance(timedelta(hours=1, minutes=1))
    assert turn(run, services) == [visit_id]  # the day-before one

    sign_in(clinic.coordinator)  # the clock moved past the idle sign-out
    later = (services.clock.now() + timedelta(days=3)).replace(microsecond=0)
    assert client.patch(f"/api/v1/visits/{visit_id}",
                        json={"scheduled_at": later.isoformat()}).status_code == 200
    # Planned again for the new time: the day-before reminder will go again.
    assert planned(run, services, visit_id) == [(1, False), (24, False)]
    assert turn(run, services) == []

    soon = schedule(client, clinic, services, hours=0.5)
    # Half an hour ahead: both moments have passed; nothing is sent late.
    assert planned(run, services, soon) == []

    assert client.post(f"/api/v1/visits/{visit_id}/cancel").status_code == 200
    assert planned(run, services, visit_id) == []
    services.clock.advance(timedelta(days=3))
    assert turn(run, services) == []
    assert len(reminders_queued(run, services)) == 1
