"""Acknowledgement deadlines and re-alerts, as timer rows.

CLINICAL.md, safety invariant 4: the acknowledgement deadline is fixed when an
escalation is raised or re-armed (``armed_at``) and never moves. Re-alerts repeat on
their own interval from that moment (emergency every 5 minutes, urgent every 15, both
settings; step_up once a business day from its deadline) until someone acknowledges;
from the second re-alert on they also reach whoever is on call. Pages count "overdue
by" up from the fixed deadline.

Each open escalation has one pending ``escalation_realert`` timer, due at its next
re-alert and stamped with the ``armed_at`` it belongs to, so a timer left over from
before a re-arm does nothing. Timers are claimed by exactly one instance: ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite (one process) a claiming UPDATE is the
transaction's first statement, which takes the write lock. The effects and the claim
commit together.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import notify
from server.jobs import Job, claim
from server.models import Escalation, EscalationEvent, EscalationStatus, Timer
from server.services import Services
from server.substance_use import OUTREACH_TIMER
from server.timezones import DEFAULT_ZONE
from server.triage import Level

log = logging.getLogger("mendwell.deadlines")

REALERT_TIMER = "escalation_realert"
# Timers written before deadlines were fixed; fired like re-alerts.
LEGACY_ACK_TIMER = "escalation_ack"
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
BATCH = 50


def add_business_days(start: datetime, days: int, tz: str = DEFAULT_ZONE) -> datetime:
    """The same clock time ``days`` working days later (Saturdays and Sundays skipped,
    counted in the clinic's time zone ``tz``)."""
    local = start.astimezone(ZoneInfo(tz))
    added = 0
    while added < days:
        local += timedelta(days=1)
        if local.weekday() < 5:
            added += 1
    return local.astimezone(start.tzinfo)


def ack_due(services: Services, level: Level | str, now: datetime) -> datetime | None:
    s = services.settings
    if level == Level.EMERGENCY:
        return now + timedelta(minutes=s.ack_emergency_minutes)
    if level == Level.URGENT:
        return now + timedelta(minutes=s.ack_urgent_minutes)
    if level == Level.STEP_UP:
        return add_business_days(now, s.ack_step_up_business_days, s.clinic_timezone)
    return None


async def cancel_timers(session: AsyncSession, services: Services, escalation_id: int) -> None:
    """Cancel an escalation's pending re-alert timers (and any left from before
    deadlines were fixed)."""
    await session.execute(
        update(Timer).where(Timer.kind.in_((REALERT_TIMER, LEGACY_ACK_TIMER)),
                            Timer.subject_id == escalation_id,
                            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
        .values(cancelled_at=services.clock.now())
    )


def next_realert(services: Services, escalation: Escalation,
                 after: datetime) -> datetime | None:
    """The first re-alert slot after ``after``. Slots count from when the escalation was
    armed (emergency and urgent: every interval; step_up: its deadline, then every
    business day), so a worker that was down does not send a burst to catch up."""
    s = services.settings
    armed = escalation.armed_at or escalation.raised_at
    if escalation.level in (Level.EMERGENCY, Level.URGENT):
        minutes = s.realert_emergency_minutes if escalation.level == Level.EMERGENCY \
            else s.realert_urgent_minutes
        interval = timedelta(minutes=minutes)
        slots = max(0, int((after - armed) / interval)) + 1
        return armed + slots * interval
    if escalation.level == Level.STEP_UP and escalation.ack_due_at is not None:
        # "Within 1 business day": nothing before the deadline, then once a business
        # day at the same clock time.
        due = escalation.ack_due_at
        while due <= after:
            due = add_business_days(due, 1, s.clinic_timezone)
        return due
    return None


async def schedule_realert(session: AsyncSession, services: Services,
                           escalation: Escalation) -> None:
    """The one pending re-alert timer of an escalation just raised or re-armed."""
    await cancel_timers(session, services, escalation.id)
    due = next_realert(services, escalation, services.clock.now())
    if due is not None:
        armed = escalation.armed_at or escalation.raised_at
        session.add(Timer(kind=REALERT_TIMER, subject_id=escalation.id, due_at=due,
                          created_at=services.clock.now(),
                          data={"armed_at": armed.isoformat()}))


async def _realert_due(session: AsyncSession, services: Services, timer: Timer,
                       now: datetime) -> None:
    escalation = await session.get(Escalation, timer.subject_id)
    if escalation is None or escalation.status is not EscalationStatus.open:
        return  # acknowledged (or resolved): nothing to do
    armed = escalation.armed_at or escalation.raised_at
    stamp = timer.data.get("armed_at") if timer.kind == REALERT_TIMER else None
    if stamp is not None and stamp != armed.isoformat():
        return  # re-armed since this timer was set: the re-arm scheduled its own
    escalation.realerts += 1
    backup = escalation.realerts >= 2
    session.add(EscalationEvent(escalation_id=escalation.id, at=now, actor_id=None,
                                kind="realert", detail={"count": escalation.realerts,
                                                        "backup": backup}))
    await notify.alert(session, services, escalation, "backup" if backup else "realert")
    # The deadline stays where it is; only the next re-alert is set.
    await schedule_realert(session, services, escalation)


async def _moud_outreach_due(session: AsyncSession, services: Services, timer: Timer,
                            now: datetime) -> None:
    # Imported here, not at the top: the outreach raises through the lifecycle, which
    # imports this module for its deadlines.
    from escalation import moud_outreach

    await moud_outreach.outreach_due(session, services, timer, now)


Handler = Callable[[AsyncSession, Services, Timer, datetime], Awaitable[None]]
HANDLERS: dict[str, Handler] = {REALERT_TIMER: _realert_due, LEGACY_ACK_TIMER: _realert_due,
                                OUTREACH_TIMER: _moud_outreach_due}


async def _claim(session: AsyncSession, now: datetime, instance: str) -> list[Timer]:
    return await claim(session, Timer, (Timer.fired_at.is_(None),
                                        Timer.cancelled_at.is_(None), Timer.due_at <= now),
                       (Timer.due_at, Timer.id), {"fired_at": now, "fired_by": instance},
                       BATCH)


async def fire_due_timers(services: Services, *, instance: str = INSTANCE) -> int:
    """Fire every timer due now, each exactly once across instances; returns how many."""
    now = services.clock.now()
    async with services.transaction() as session:
        timers = await _claim(session, now, instance)
        for timer in timers:
            handler = HANDLERS.get(timer.kind)
            if handler is None:
                log.error("no handler for timer kind %s", timer.kind)
                continue
            await handler(session, services, timer, now)
    return len(timers)


async def fire_all_due(services: Services) -> None:
    """Fire timers in batches until fewer than a batch were due."""
    while await fire_due_timers(services) == BATCH:
        pass


TIMERS = Job("escalation timers", fire_all_due, lambda settings: settings.timer_poll_seconds)
