"""The one loop every background job runs in (server/jobs.py): the app starts one per
job, and a step that fails is logged and tried again at its next turn."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from escalation import deadlines
from server import jobs, outbox, visits
from server.models import OutboxEmail
from server.services import Services
from tests.conftest import Runner


def test_a_failing_step_is_logged_and_tried_again(
    run: Runner, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    turns: list[int] = []
    third = asyncio.Event()

    async def step(_services: Services) -> None:
        turns.append(len(turns))
        if len(turns) == 3:
            third.set()
        if len(turns) == 1:
            raise RuntimeError("the database went away")

    job = jobs.Job("test job", step, lambda _settings: 0.01)

    async def scenario() -> None:
        task = asyncio.create_task(jobs.run(job, services))
        try:
            async with asyncio.timeout(5):
                await third.wait()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.ERROR, logger="mendwell.jobs"):
        run(scenario)
    assert turns[:3] == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records] == ["test job failed; retrying"]


def test_each_job_looks_again_on_its_own_setting(services: Services) -> None:
    settings = services.settings
    assert outbox.SENDER.every(settings) == settings.outbox_poll_seconds
    assert deadlines.TIMERS.every(settings) == settings.timer_poll_seconds
    assert visits.LONG_WAITS.every(settings) == settings.waiting_alert_poll_seconds


def test_instances_claiming_at_once_never_take_the_same_row(
    run: Runner, services: Services
) -> None:
    """``jobs.claim``, the one claim of every job, raced by three "instances" (three
    sessions in three transactions) over 45 due emails: no email is taken twice, and
    every one taken is marked (SKIP LOCKED on PostgreSQL, the repeated due conditions
    on SQLite)."""
    now = services.clock.now()

    async def queue() -> None:
        async with services.transaction() as session:
            for n in range(45):
                outbox.queue_email(session, to=f"c{n}@clinic.test", subject="s", body="b",
                                   kind="test", now=now)

    run(queue)
    due = (OutboxEmail.sent_at.is_(None), OutboxEmail.claimed_until.is_(None),
           OutboxEmail.next_attempt_at <= now)

    async def one_instance() -> list[int]:
        async with services.transaction() as session:
            rows = await jobs.claim(session, OutboxEmail, due,
                                    (OutboxEmail.next_attempt_at, OutboxEmail.id),
                                    {"claimed_until": now + timedelta(minutes=1)}, 20)
            assert all(r.claimed_until is not None for r in rows)
            return [r.id for r in rows]

    async def race() -> list[list[int]]:
        return list(await asyncio.gather(*(one_instance() for _ in range(3))))

    taken = run(race)
    flat = [i for ids in taken for i in ids]
    assert len(flat) == len(set(flat)), taken
    assert len(flat) >= 20  # the first to claim got a full batch

    async def claimed() -> set[int]:
        async with services.transaction() as session:
            return set((await session.scalars(select(OutboxEmail.id).where(
                OutboxEmail.claimed_until.is_not(None)))).all())

    assert run(claimed) == set(flat)
