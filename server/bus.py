"""The live-event bus: in-process by default, Redis pub/sub when configured.

The bus only carries notifications of changes that are already in the database, so a
lost message delays a screen and never loses data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

from server.events import Event
from server.results import JsonObject

log = logging.getLogger("mendwell.bus")

QUEUE_LIMIT = 256
# Events kept while Redis is unavailable (each a few hundred bytes of ids and states).
BACKLOG_LIMIT = 1000
# Event ids each instance remembers, to deliver an event that reached Redis twice once.
SEEN_LIMIT = 4 * BACKLOG_LIMIT
# How long one Redis command or connection attempt may take before Redis counts as down.
SOCKET_TIMEOUT_SECONDS = 1.0
# Trying Redis again while it is down: from this, doubling to the maximum.
RETRY_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0


class Bus(Protocol):
    """What the app needs of a bus (``Services.bus``): ``LocalBus`` in one process,
    ``RedisBus`` across instances."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, event: Event) -> None: ...
    def subscribe(self, user_id: int) -> contextlib.AbstractAsyncContextManager[
        asyncio.Queue[JsonObject]]: ...
    async def healthy(self) -> bool: ...


class LocalBus:
    """Fan-out within this process."""

    def __init__(self) -> None:
        self._queues: dict[int, set[asyncio.Queue[JsonObject]]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._queues.clear()

    async def healthy(self) -> bool:
        return True

    async def publish(self, event: Event) -> None:
        self.deliver(event.to_json(), event.recipients)

    def deliver(self, message: JsonObject, recipients: frozenset[int] | set[int]) -> None:
        for user_id in recipients:
            for queue in self._queues.get(user_id, ()):
                if queue.full():
                    # A stalled screen must not hold up everyone else; it reloads
                    # from the database when it reconnects.
                    log.warning("dropping event for a slow subscriber")
                    continue
                queue.put_nowait(message)

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[asyncio.Queue[JsonObject]]:
        queue: asyncio.Queue[JsonObject] = asyncio.Queue(QUEUE_LIMIT)
        self._queues[user_id].add(queue)
        try:
            yield queue
        finally:
            self._queues[user_id].discard(queue)
            if not self._queues[user_id]:
                del self._queues[user_id]


class RedisBus(LocalBus):
    """Publishes every event on one Redis channel; each instance delivers locally.

    Redis being down never fails the write that emitted an event: the write is committed
    before its events are published. An event that cannot be published is delivered at
    once to this instance's own subscribers and kept in a backlog (at most
    ``BACKLOG_LIMIT``, the oldest dropped first), published in order when Redis is back.
    Every event carries an id, and each instance delivers an id once: a publish that
    timed out may still reach Redis, and then its copy from the backlog does too.
    Events the other instances published meanwhile may never arrive (pub/sub keeps
    nothing; an instance may have died with its backlog), so when this instance's
    subscription comes back after a loss, each of its subscribers gets ``subscribed``
    again and reloads what it shows from the database (docs/reliability.md, "Outages").
    """

    def __init__(self, url: str, namespace: str = "mendwell") -> None:
        super().__init__()
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.channel = f"{namespace}:events"
        self.instance_id = uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)
        # The ids delivered here lately (at most SEEN_LIMIT, the oldest forgotten first).
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        # A dead Redis must cost one request per outage at most two socket timeouts
        # (afterwards events go straight to the backlog). redis-py's default is ten
        # retries with backoff; one immediate retry is enough to replace a pooled
        # connection that Redis closed when it restarted.
        self._redis = Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                     socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                                     retry=Retry(NoBackoff(), 1))
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._backlog: deque[str] = deque()
        self._dropped = 0
        self._pending = asyncio.Event()  # the backlog has something to publish
        self._returned = asyncio.Event()  # the listener saw Redis come back
        self._lost = False  # the subscription is down (set by the listener)
        # The loops also stop on this flag, should redis-py's timed read absorb their
        # cancellation (seen with the signaling relay: signaling/relay.py).
        self._closed = False

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        try:
            await self._pubsub.subscribe(self.channel)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # Serve anyway: writes do not need Redis. The listener subscribes when it can.
            log.warning("Redis is unavailable at start (%s); subscribing when it is back",
                        type(exc).__name__)
            self._lost = True
        self._tasks = [asyncio.create_task(self._listen(), name="redis-bus"),
                       asyncio.create_task(self._flush(), name="redis-bus-backlog")]

    async def _listen(self) -> None:
        pubsub = self._pubsub
        while not self._closed:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.channel)
                # Subscribe confirmations are read too: after a loss, redis-py subscribes
                # again as it reconnects, and the confirmation says the channel is back.
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    if self._lost:
                        self._back()
                    continue
                if message["type"] != "message":
                    continue
                payload = json.loads(message["data"])
                if self._first_time(payload.get("id")):
                    self.deliver(payload["message"], set(payload["recipients"]))
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("redis bus listener error; retrying")
                elif not self._lost:
                    self._lost = True
                    log.warning("lost Redis (%s): events reach this instance's screens "
                                "only, the others' when it is back", type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)

    def _back(self) -> None:
        self._lost = False
        log.info("Redis is back: the event subscription is restored")
        self._returned.set()
        # Whatever other instances published meanwhile was lost to this one: every
        # screen here catches up from the database, as after reconnecting its socket.
        for user_id in list(self._queues):
            self.deliver({"type": "subscribed", "user_id": user_id, "resumed": True},
                         {user_id})

    async def publish(self, event: Event) -> None:
        message = event.to_json()
        event_id = f"{self.instance_id}:{next(self._sequence)}"
        payload: JsonObject = {"id": event_id, "recipients": sorted(event.recipients),
                               "message": message}
        if not self._backlog:
            try:
                await self._redis.publish(self.channel, json.dumps(payload))
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("Redis is unavailable (%s): keeping events to publish later",
                            type(exc).__name__)
        # Behind the backlog, in order. This instance's screens get it now, and not
        # again when it comes back through Redis.
        self._first_time(event_id)
        self.deliver(message, event.recipients)
        if len(self._backlog) >= BACKLOG_LIMIT:
            self._backlog.popleft()
            self._dropped += 1
        self._backlog.append(json.dumps(payload))
        self._pending.set()

    async def _flush(self) -> None:
        """Publish the backlog in order, retrying with backoff, at once when the
        listener sees Redis come back."""
        while not self._closed:
            await self._pending.wait()
            self._pending.clear()
            delay = RETRY_SECONDS
            published = 0
            while self._backlog:
                try:
                    await self._redis.publish(self.channel, self._backlog[0])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._returned.wait()
                    self._returned.clear()
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                self._backlog.popleft()
                published += 1
            if published:
                log.info("published %s event(s) kept while Redis was unavailable "
                         "(%s dropped over the limit of %s)", published, self._dropped,
                         BACKLOG_LIMIT)
                self._dropped = 0

    def _first_time(self, event_id: object) -> bool:
        """Whether this event id is new here (and remember it)."""
        if not isinstance(event_id, str):
            return True
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._seen_order.append(event_id)
        if len(self._seen_order) > SEEN_LIMIT:
            self._seen.discard(self._seen_order.popleft())
        return True

    @property
    def backlog(self) -> int:
        """How many events wait for Redis."""
        return len(self._backlog)

    async def healthy(self) -> bool:
        try:
            # redis-py's own timeouts answer first (an attempt and a retry); this is
            # only the backstop.
            async with asyncio.timeout(3 * SOCKET_TIMEOUT_SECONDS):
                return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        self._closed = True
        self._pending.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._backlog:
            # Screens elsewhere catch up when their sockets reconnect to a new instance.
            log.warning("closing with %s event(s) never published (Redis unavailable)",
                        len(self._backlog))
        await self._redis.aclose()
        await super().close()


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis cannot be reached now (stopped, restarting, loading its
    data, not answering), rather than that a command was wrong."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    # redis-py raises its own kinds for socket errors and timeouts (BusyLoadingError,
    # a restarted Redis still loading its data, is a ConnectionError).
    return isinstance(exc, RedisConnectionError | RedisTimeoutError)


def make_bus(redis_url: str, namespace: str = "mendwell") -> Bus:
    return RedisBus(redis_url, namespace) if redis_url else LocalBus()
