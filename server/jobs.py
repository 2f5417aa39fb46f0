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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.services import Services
from server.settings import Settings

log = logging.getLogger("mendwell.jobs")

Row = TypeVar("Row")


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


async def claim(session: AsyncSession, model: type[Row], due: Sequence[ColumnElement[bool]],
                order_by: Sequence[Any], values: Mapping[str, object], limit: int) -> list[Row]:
    """Take up to ``limit`` due rows of ``model`` for this instance, each exactly once
    across instances, marking them with ``values`` (fired, leased, alerted) in the
    caller's transaction; returns them in ``order_by`` order.

    The one claim of every job. On PostgreSQL the due rows are locked with
    ``FOR UPDATE SKIP LOCKED``, so instances take different rows without waiting. SQLite
    has no SKIP LOCKED, but one writer at a time: the marking update repeats the due
    conditions, so of two instances that read the same row only the first marks it,
    and only what this update returned is this instance's.
    """
    table: Any = model
    candidates = select(table.id).where(*due).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list((await session.scalars(candidates)).all())
    if not ids:
        return []
    taken = list((await session.scalars(
        update(table).where(table.id.in_(ids), *due).values(**values).returning(table.id)
        .execution_options(synchronize_session=False))).all())
    if not taken:
        return []
    rows = await session.scalars(select(table).where(table.id.in_(taken)).order_by(*order_by)
                                 .execution_options(populate_existing=True))
    return list(rows.all())
