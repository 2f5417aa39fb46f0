"""Row locks that put concurrent writes to one visit, patient or escalation in a line.

Two tabs, a double click or two instances may work on the same check-in, note or
escalation at once. Each such write first takes the row lock of what it changes, then
reads, decides and writes: the next one waits and then sees the first one's result.
Locks are always taken in the order visit, patient (or the prescriber whose schedule a
booking checks), escalation, so two paths never wait on each other.

PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` on the row. SQLite has one writer at a time: a
write as the lock makes the transaction take the database's write lock at once (the
driver begins it at the first write), so nothing else commits until it ends and every
later read in it sees the latest data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import Escalation, User, Visit

Lockable = type[Visit] | type[User] | type[Escalation]


async def lock_row(session: AsyncSession, model: Lockable, row_id: int) -> None:
    """Wait for, then hold until the transaction ends, the lock of one row."""
    column: Any = model.id
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: waits for another holder of this lock, but not for the key
        # share lock every insert that refers to the row takes (a check-in's rows refer
        # to the patient). FOR UPDATE would wait for those too, and two transactions
        # that each inserted such a row and then asked for the lock would deadlock.
        await session.execute(select(column).where(column == row_id)
                              .with_for_update(key_share=True))
    else:
        await session.execute(update(model).where(column == row_id).values(id=column)
                              .execution_options(synchronize_session=False))


async def lock_visit(session: AsyncSession, visit_id: int) -> None:
    await lock_row(session, Visit, visit_id)


async def lock_patient(session: AsyncSession, patient_id: int) -> None:
    await lock_row(session, User, patient_id)


async def lock_escalation(session: AsyncSession, escalation: Escalation) -> None:
    """Lock an escalation already loaded, and read it again: what another request
    committed while this one waited must be what it decides on."""
    await lock_row(session, Escalation, escalation.id)
    await session.refresh(escalation)
