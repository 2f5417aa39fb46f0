"""The shared objects of one running app, held by the lifespan.

Route handlers reach them as ``request.app.state.services``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.bus import LocalBus
from server.clock import Clock
from server.events import take_pending
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: LocalBus
    clock: Clock = field(default_factory=Clock)

    def signer(self, salt: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.settings.secret_key, salt=salt)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit, then publish the events it emitted."""
        async with self.sessions() as session:
            async with session.begin():
                yield session
            for event in take_pending(session):
                await self.bus.publish(event)

    async def close(self) -> None:
        await self.bus.close()
        await self.engine.dispose()
