"""The live-event bus: in-process by default, Redis pub/sub when configured.

The bus only carries notifications of changes that are already in the database, so a
lost message delays a screen and never loses data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

from server.events import Event

log = logging.getLogger("mendwell.bus")

QUEUE_LIMIT = 256


class Bus(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, event: Event) -> None: ...
    def subscribe(self, user_id: int) -> contextlib.AbstractAsyncContextManager[
        asyncio.Queue[dict[str, Any]]]: ...
    async def healthy(self) -> bool: ...


class LocalBus:
    """Fan-out within this process."""

    def __init__(self) -> None:
        self._queues: dict[int, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._queues.clear()

    async def healthy(self) -> bool:
        return True

    async def publish(self, event: Event) -> None:
        self.deliver(event.to_json(), event.recipients)

    def deliver(self, message: dict[str, Any], recipients: frozenset[int] | set[int]) -> None:
        for user_id in recipients:
            for queue in self._queues.get(user_id, ()):
                if queue.full():
                    # A stalled screen must not hold up everyone else; it reloads
                    # from the database when it reconnects.
                    log.warning("dropping event for a slow subscriber")
                    continue
                queue.put_nowait(message)

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self._queues[user_id].add(queue)
        try:
            yield queue
        finally:
            self._queues[user_id].discard(queue)
            if not self._queues[user_id]:
                del self._queues[user_id]


class RedisBus(LocalBus):
    """Publishes every event on one Redis channel; each instance delivers locally."""

    CHANNEL = "mendwell:events"

    def __init__(self, url: str) -> None:
        super().__init__()
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.CHANNEL)
        self._task = asyncio.create_task(self._listen(pubsub), name="redis-bus")

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                payload = json.loads(message["data"])
                self.deliver(payload["message"], set(payload["recipients"]))
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception:
                log.exception("redis bus listener error; retrying")
                await asyncio.sleep(1.0)

    async def publish(self, event: Event) -> None:
        payload = {"recipients": sorted(event.recipients), "message": event.to_json()}
        await self._redis.publish(self.CHANNEL, json.dumps(payload))

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()
        await super().close()


def make_bus(redis_url: str) -> LocalBus:
    return RedisBus(redis_url) if redis_url else LocalBus()
