"""The shared objects of one running app, held by the lifespan.

Route handlers reach them as ``request.app.state.services``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.actors import Actor
from server.bus import Bus
from server.clock import Clock
from server.events import take_pending
from server.models import CheckIn
from server.session_cache import SessionCache
from server.settings import Settings
from server.triage import Level, TriageRules

log = logging.getLogger("mendwell")


@dataclass(frozen=True)
class CheckinTrigger:
    """A check-in's risk handed to the escalation workflow: the level and reasons, and the
    saved version of the answers that showed them (``CheckInVersion.id``)."""

    checkin: CheckIn
    version_id: int | None
    level: Level
    reasons: tuple[str, ...]


# Called when a check-in reaches a level that may need an escalation (a draft at urgent
# or higher, every completion); returns the ids of the escalations raised or updated.
# The escalation workflow registers itself here from app.py, since server/ must not
# import escalation/.
CheckinHook = Callable[[AsyncSession, "Services", CheckinTrigger], Awaitable[list[int]]]
# Called when the patient confirms emergency information (location and callback,
# contact) for a visit, so the open escalation shows the freshest (invariant 2).
EmergencyInfoHook = Callable[[AsyncSession, "Services", Actor, CheckIn], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    clock: Clock = field(default_factory=Clock)
    triage_rules: TriageRules | None = None
    checkin_hooks: list[CheckinHook] = field(default_factory=list)
    emergency_info_hooks: list[EmergencyInfoHook] = field(default_factory=list)
    # Sessions recently loaded by this app (server.session_cache).
    session_cache: SessionCache = field(default_factory=SessionCache)

    @property
    def rules(self) -> TriageRules:
        if self.triage_rules is None:
            raise RuntimeError("triage rules were not loaded (see server.app.create_app)")
        return self.triage_rules

    def signer(self, salt: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.settings.secret_key.get_secret_value(), salt=salt)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit, then publish the events it emitted.

        Once committed, the write stands whatever happens to its events: an error here
        would be answered as a failed write, and the client would repeat one that
        happened (a second escalation event, a note save refused as a stale version).
        The bus keeps what it cannot publish, and screens catch up from the database
        (docs/reliability.md, "Outages").
        """
        async with self.sessions() as session:
            async with session.begin():
                yield session
            for event in take_pending(session):
                try:
                    await self.bus.publish(event)
                except Exception:
                    log.exception("event %s not published after its commit", event.kind)

    async def close(self) -> None:
        await self.bus.close()
        await self.engine.dispose()
