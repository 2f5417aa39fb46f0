"""The one loop every background job runs in (server/jobs.py): the app starts one per
job, and a step that fails is logged and tried again at its next turn."""

from __future__ import annotations

import asyncio
import logging

import pytest

from escalation import deadlines
from server import jobs, outbox, visits
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
