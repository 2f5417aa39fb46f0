"""Acknowledgement deadlines and re-alerts, as timer rows.

Each open escalation has one pending ``escalation_ack`` timer due at its deadline. When
it fires and nobody has acknowledged, the coordinators are alerted again, from the
second deadline on the backup too, and the next timer is set: until someone
acknowledges. Timers are claimed by exactly one instance: ``FOR UPDATE SKIP LOCKED``
on PostgreSQL; on SQLite (one process) a claiming UPDATE is the transaction's first
statement, which takes the write lock. The effects and the claim commit together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import notify
from server.models import Escalation, EscalationEvent, EscalationStatus, Timer
from server.services import Services
from server.timezones import DEFAULT_ZONE
from server.triage import Level

log = logging.getLogger("mendwell.deadlines")

ACK_TIMER = "escalation_ack"
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


async def cancel_timers(session: AsyncSession, services: Services, kind: str,
                        subject_id: int) -> None:
    await session.execute(
        update(Timer).where(Timer.kind == kind, Timer.subject_id == subject_id,
                            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
        .values(cancelled_at=services.clock.now())
    )


async def schedule_ack_timer(session: AsyncSession, services: Services,
                             escalation: Escalation) -> None:
    """One pending acknowledgement timer per escalation, due at its deadline."""
    await cancel_timers(session, services, ACK_TIMER, escalation.id)
    if escalation.ack_due_at is not None:
        session.add(Timer(kind=ACK_TIMER, subject_id=escalation.id,
                          due_at=escalation.ack_due_at, created_at=services.clock.now()))


async def _ack_deadline_passed(session: AsyncSession, services: Services, timer: Timer,
                               now: datetime) -> None:
    escalation = await session.get(Escalation, timer.subject_id)
    if escalation is None or escalation.status is not EscalationStatus.open:
        return  # acknowledged (or resolved) in time: nothing to do
    escalation.realerts += 1
    backup = escalation.realerts >= 2
    session.add(EscalationEvent(escalation_id=escalation.id, at=now, actor_id=None,
                                kind="realert", detail={"count": escalation.realerts,
                                                        "backup": backup}))
    await notify.alert(session, services, escalation, "backup" if backup else "realert")
    escalation.ack_due_at = ack_due(services, escalation.level, now)
    if escalation.ack_due_at is not None:
        session.add(Timer(kind=ACK_TIMER, subject_id=escalation.id,
                          due_at=escalation.ack_due_at, created_at=now))


Handler = Callable[[AsyncSession, Services, Timer, datetime], Awaitable[None]]
HANDLERS: dict[str, Handler] = {ACK_TIMER: _ack_deadline_passed}


async def _claim(session: AsyncSession, now: datetime, instance: str) -> list[Timer]:
    due = (Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= now)
    if session.get_bind().dialect.name == "postgresql":
        timers = list((await session.scalars(
            select(Timer).where(*due).order_by(Timer.due_at, Timer.id).limit(BATCH)
            .with_for_update(skip_locked=True))).all())
        for timer in timers:
            timer.fired_at = now
            timer.fired_by = instance
        return timers
    ids = list((await session.scalars(
        update(Timer).where(*due).values(fired_at=now, fired_by=instance)
        .returning(Timer.id))).all())
    if not ids:
        return []
    return list((await session.scalars(
        select(Timer).where(Timer.id.in_(ids)).order_by(Timer.due_at, Timer.id))).all())


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


async def run_timers(services: Services) -> None:
    """Background loop started by the app's lifespan."""
    while True:
        try:
            while await fire_due_timers(services) == BATCH:
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer run failed; retrying")
        await asyncio.sleep(services.settings.timer_poll_seconds)
