"""The app's background jobs: one loop shape for all of them.

A job is a step that does what is due now (send the outbox, fire escalation timers,
alert about long waits) and the setting that says how often to look again. Every
instance runs every job; each step claims its rows so that nothing is done twice
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL). A step that fails is logged and tried again
at its next turn: a database outage must not end a job for the life of the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.services import Services
from server.settings import Settings

log = logging.getLogger("mendwell.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    step: Callable[[Services], Awaitable[object]]
    every: Callable[[Settings], float]  # seconds between steps


async def run(job: Job, services: Services) -> None:
    """Run ``job``'s step, then again every ``job.every`` seconds, until cancelled."""
    while True:
        try:
            await job.step(services)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying", job.name)
        await asyncio.sleep(job.every(services.settings))
