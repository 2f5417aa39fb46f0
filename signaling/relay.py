"""Where rooms live: in this process, or in Redis so that several instances share them.

A relay keeps the presence of each room (who is in it, one entry per ``peer_id``) and
carries *envelopes* between the instances that hold the room's sockets. Each instance
subscribes to the rooms it has sockets in and delivers the envelopes locally
(``signaling.rooms.Rooms.on_envelope``). Envelopes of one room arrive in the order they
were published, on every instance.

Only the instance holding a participant's socket writes that participant's entry, so
entries never race. Entries of an instance that died go stale: each instance refreshes
the time it last saw its own participants every ``REFRESH_SECONDS``, and entries not
refreshed for ``STALE_SECONDS`` are ignored. In the same round each instance prunes the
stale entries of the rooms it watches and, when it removed any, publishes a presence
so that every member still in the room stops seeing the participants of the dead
instance (within ``STALE_SECONDS + REFRESH_SECONDS``).

A room's seats follow ``signaling.rooms.seat`` (seats kept for the patient, the
prescriber and the coordinator; one place per guest token): ``claim()`` checks the rule
and takes the seat in one step (one Lua script in Redis), so joins racing on several
instances for the last seat cannot overfill the room or take a kept seat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from signaling import rooms
from signaling.protocol import RESERVED_SEATS, SHARED_SEATS
from signaling.rooms import PEER_ID_IN_USE, ROOM_FULL, SEATED_ELSEWHERE, Participant, Seat

log = logging.getLogger("mendwell.signaling.relay")

Deliver = Callable[[int, dict[str, Any]], Awaitable[None]]

REFRESH_SECONDS = 5.0
STALE_SECONDS = 30.0
ROOM_KEY_TTL_SECONDS = 3600


class Relay(Protocol):
    instance_id: str

    async def start(self, deliver: Deliver) -> None: ...
    async def close(self) -> None: ...
    async def put(self, visit_id: int, participant: Participant) -> None: ...
    async def claim(self, visit_id: int, participant: Participant, *,
                    replace: bool = True) -> Seat: ...
    async def get(self, visit_id: int, peer_id: str) -> Participant | None: ...
    async def members(self, visit_id: int) -> list[Participant]: ...
    async def release(self, visit_id: int, peer_id: str, connection_id: str) -> bool: ...
    async def publish(self, visit_id: int, envelope: dict[str, Any]) -> None: ...
    async def watch(self, visit_id: int) -> None: ...
    async def unwatch(self, visit_id: int) -> None: ...
    def owned(self, entries: Callable[[], Iterable[tuple[int, Participant]]]) -> None: ...
    async def healthy(self) -> bool: ...


def new_instance_id() -> str:
    return uuid.uuid4().hex[:12]


class LocalRelay:
    """One process: presence in a dict, envelopes delivered directly."""

    def __init__(self) -> None:
        self.instance_id = new_instance_id()
        self._rooms: dict[int, dict[str, Participant]] = defaultdict(dict)
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._rooms.clear()

    async def healthy(self) -> bool:
        return True

    def owned(self, entries: Callable[[], Iterable[tuple[int, Participant]]]) -> None:
        return None

    async def put(self, visit_id: int, participant: Participant) -> None:
        self._rooms[visit_id][participant.peer_id] = participant

    async def claim(self, visit_id: int, participant: Participant, *,
                    replace: bool = True) -> Seat:
        """Put the participant if ``rooms.seat`` gives them one (dropping the other
        places of the same guest it replaces); nothing stored when it does not. Atomic:
        nothing awaits."""
        room = self._rooms.get(visit_id, {})
        taken = rooms.seat(participant, room.values(), replace=replace)
        if taken.taken:
            for peer in taken.replaced:
                del room[peer]
            self._rooms[visit_id][participant.peer_id] = participant
        return taken

    async def get(self, visit_id: int, peer_id: str) -> Participant | None:
        room = self._rooms.get(visit_id)
        return room.get(peer_id) if room else None

    async def members(self, visit_id: int) -> list[Participant]:
        room = self._rooms.get(visit_id)
        return list(room.values()) if room else []

    async def release(self, visit_id: int, peer_id: str, connection_id: str) -> bool:
        room = self._rooms.get(visit_id)
        if not room or peer_id not in room or room[peer_id].connection_id != connection_id:
            return False
        del room[peer_id]
        if not room:
            del self._rooms[visit_id]
        return True

    async def publish(self, visit_id: int, envelope: dict[str, Any]) -> None:
        assert self._deliver is not None, "the relay is not started"
        await self._deliver(visit_id, envelope)

    async def watch(self, visit_id: int) -> None:
        return None

    async def unwatch(self, visit_id: int) -> None:
        return None


# Delete an entry only if it still belongs to the connection that is leaving: a
# reconnect may already have replaced it from another instance.
_RELEASE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and cjson.decode(value)['connection_id'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


# Take a seat by the rule of signaling.rooms.seat, checked and taken in one step, so
# that joins racing on several instances cannot both get the last seat.
# KEYS: the room's hash, its last-seen sorted set. ARGV: 1 peer id, 2 its entry (JSON),
# 3 now, 4 fresh after (older entries count for nothing), 5 seats kept per role (JSON),
# 6 shared seats, 7 '1' for a guest (one place per invitation), 8 '1' to take over the
# guest's other places rather than be refused, 9 the keys' TTL.
# Reply: {1, peer ids taken over...} seated (a peer with a place gets it back); {0} no
# seat for this role; {-1} the peer id is someone else's; {2} the guest has a place
# already (and ARGV[8] is not '1').
_CLAIM = """
local fresh_after = tonumber(ARGV[4])
local me = cjson.decode(ARGV[2])
local function write()
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
end
local seen = redis.call('ZSCORE', KEYS[2], ARGV[1])
if seen and tonumber(seen) >= fresh_after then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current then
    if cjson.decode(current)['who'] ~= me['who'] then
      return {-1}
    end
    write()
    return {1}
  end
end
local reserved = cjson.decode(ARGV[5])
local counts = {}
local mine = {}
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[4], '+inf')) do
  local raw = redis.call('HGET', KEYS[1], peer)
  if raw then
    local other = cjson.decode(raw)
    if ARGV[7] == '1' and other['who'] == me['who'] then
      table.insert(mine, peer)
    else
      counts[other['role']] = (counts[other['role']] or 0) + 1
    end
  end
end
if #mine > 0 and ARGV[8] ~= '1' then
  return {2}
end
if (counts[me['role']] or 0) >= (reserved[me['role']] or 0) then
  local shared = 0
  for role, n in pairs(counts) do
    shared = shared + math.max(0, n - (reserved[role] or 0))
  end
  if shared >= tonumber(ARGV[6]) then
    return {0}
  end
end
local reply = {1}
for _, peer in ipairs(mine) do
  redis.call('HDEL', KEYS[1], peer)
  redis.call('ZREM', KEYS[2], peer)
  table.insert(reply, peer)
end
write()
return reply
"""
_REFUSALS = {0: ROOM_FULL, -1: PEER_ID_IN_USE, 2: SEATED_ELSEWHERE}

# Remove the entries last seen before ARGV[1]; how many went. Only one of the instances
# pruning a room at once removes a given entry, so one presence follows.
_PRUNE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, peer in ipairs(stale) do
  redis.call('HDEL', KEYS[1], peer)
  redis.call('ZREM', KEYS[2], peer)
end
return #stale
"""


class RedisRelay:
    """Presence in a Redis hash per room; envelopes over a pub/sub channel per room."""

    def __init__(self, url: str, namespace: str, *, refresh_seconds: float = REFRESH_SECONDS,
                 stale_seconds: float = STALE_SECONDS) -> None:
        from redis.asyncio import Redis

        if stale_seconds <= refresh_seconds:
            raise ValueError("stale_seconds must be longer than refresh_seconds")
        self.instance_id = new_instance_id()
        self.refresh_seconds = refresh_seconds
        self.stale_seconds = stale_seconds
        self._redis = Redis.from_url(url)
        self._namespace = namespace
        self._pubsub: Any = None
        self._deliver: Deliver | None = None
        self._watched: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._owned: Callable[[], Iterable[tuple[int, Participant]]] = lambda: ()
        self._release = self._redis.register_script(_RELEASE)
        self._claim = self._redis.register_script(_CLAIM)
        self._prune = self._redis.register_script(_PRUNE)
        self._subscribed = asyncio.Event()
        self._closed = False
        self._confirmations: dict[str, asyncio.Future[None]] = {}

    def _room(self, visit_id: int) -> str:
        return f"{self._namespace}:room:{visit_id}"

    def _seen(self, visit_id: int) -> str:
        return f"{self._namespace}:room:{visit_id}:seen"

    def _channel(self, visit_id: int) -> str:
        return f"{self._namespace}:room:{visit_id}:events"

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._pubsub = self._redis.pubsub()
        self._tasks = [asyncio.create_task(self._listen(), name="signaling-relay"),
                       asyncio.create_task(self._refresh(), name="signaling-presence")]

    def owned(self, entries: Callable[[], Iterable[tuple[int, Participant]]]) -> None:
        """Tell the relay how to list this instance's participants, for refreshing."""
        self._owned = entries

    async def close(self) -> None:
        # The loops also stop on this flag: the listener was seen to absorb its
        # cancellation inside redis-py's timed pubsub read and go on reading (close()
        # then hung); with the flag it ends within one read timeout (1 s) at worst.
        self._closed = True
        self._subscribed.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def put(self, visit_id: int, participant: Participant) -> None:
        room, seen = self._room(visit_id), self._seen(visit_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(room, participant.peer_id, json.dumps(participant.to_json()))
            pipe.zadd(seen, {participant.peer_id: time.time()})
            pipe.expire(room, ROOM_KEY_TTL_SECONDS)
            pipe.expire(seen, ROOM_KEY_TTL_SECONDS)
            await pipe.execute()

    async def claim(self, visit_id: int, participant: Participant, *,
                    replace: bool = True) -> Seat:
        """``put()`` if ``rooms.seat`` gives this peer a seat (see ``_CLAIM``)."""
        now = time.time()
        reply = await self._claim(
            keys=[self._room(visit_id), self._seen(visit_id)],
            args=[participant.peer_id, json.dumps(participant.to_json()), now,
                  now - self.stale_seconds, json.dumps(RESERVED_SEATS), SHARED_SEATS,
                  "1" if participant.one_seat else "0", "1" if replace else "0",
                  ROOM_KEY_TTL_SECONDS])
        status = int(reply[0])
        if status != 1:
            return Seat(False, _REFUSALS[status])
        return Seat(True, replaced=tuple(peer.decode() for peer in reply[1:]))

    async def get(self, visit_id: int, peer_id: str) -> Participant | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._room(visit_id), peer_id)
            pipe.zscore(self._seen(visit_id), peer_id)
            raw, seen = await pipe.execute()
        if raw is None or seen is None or seen < time.time() - self.stale_seconds:
            return None
        return Participant.from_json(json.loads(raw))

    async def members(self, visit_id: int) -> list[Participant]:
        room, seen_key = self._room(visit_id), self._seen(visit_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(room)
            pipe.zrange(seen_key, 0, -1, withscores=True)
            raw, seen = await pipe.execute()
        fresh_after = time.time() - self.stale_seconds
        fresh = {peer.decode() for peer, score in seen if score >= fresh_after}
        # Stale entries (left by an instance that stopped without saying goodbye) are
        # skipped here and pruned by _refresh(), which tells the room.
        return [Participant.from_json(json.loads(value)) for peer, value in raw.items()
                if peer.decode() in fresh]

    async def release(self, visit_id: int, peer_id: str, connection_id: str) -> bool:
        done = await self._release(keys=[self._room(visit_id), self._seen(visit_id)],
                                   args=[peer_id, connection_id])
        return bool(done)

    async def publish(self, visit_id: int, envelope: dict[str, Any]) -> None:
        await self._redis.publish(self._channel(visit_id), json.dumps(envelope))

    async def watch(self, visit_id: int) -> None:
        if visit_id in self._watched:
            return
        self._watched.add(visit_id)
        channel = self._channel(visit_id)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        await self._pubsub.subscribe(channel)
        self._subscribed.set()
        # Wait until Redis has the subscription: an envelope published before that
        # (for example the presence that follows this join) would never arrive here.
        try:
            async with asyncio.timeout(2.0):
                await confirmed
        except TimeoutError:
            log.warning("no subscription confirmation from Redis for %s", channel)
        finally:
            self._confirmations.pop(channel, None)

    async def unwatch(self, visit_id: int) -> None:
        if visit_id not in self._watched:
            return
        self._watched.discard(visit_id)
        await self._pubsub.unsubscribe(self._channel(visit_id))

    async def _listen(self) -> None:
        prefix = f"{self._namespace}:room:"
        while not self._closed:
            try:
                if not self._pubsub.subscribed:
                    # get_message() on a pubsub with no subscription returns at once.
                    self._subscribed.clear()
                    await self._subscribed.wait()
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None or self._deliver is None:
                    continue
                channel = message["channel"].decode()
                if message["type"] == "subscribe":
                    waiting = self._confirmations.get(channel)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)
                    continue
                if message["type"] != "message":
                    continue
                visit_id = int(channel[len(prefix):].split(":", 1)[0])
                await self._deliver(visit_id, json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signaling relay listener error; retrying")
                await asyncio.sleep(0.5)

    async def _refresh(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self._refresh_owned()
                await self._prune_watched()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing presence in Redis failed; retrying")

    async def _refresh_owned(self) -> None:
        now = time.time()
        by_room: dict[int, list[Participant]] = defaultdict(list)
        for visit_id, participant in self._owned():
            by_room[visit_id].append(participant)
        if not by_room:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for visit_id, people in by_room.items():
                pipe.zadd(self._seen(visit_id), {p.peer_id: now for p in people}, xx=True)
                pipe.hmget(self._room(visit_id), [p.peer_id for p in people])
                pipe.expire(self._room(visit_id), ROOM_KEY_TTL_SECONDS)
                pipe.expire(self._seen(visit_id), ROOM_KEY_TTL_SECONDS)
            results = await pipe.execute()
        for index, (visit_id, people) in enumerate(by_room.items()):
            stored = results[index * 4 + 1]
            lost = [p for p, raw in zip(people, stored, strict=True) if raw is None]
            if lost:
                await self._reseat(visit_id, lost)

    async def _reseat(self, visit_id: int, lost: list[Participant]) -> None:
        """Put back the entries of this instance's own sockets that others pruned while it
        could not reach Redis for longer than ``stale_seconds`` (cut off, not dead): the
        sockets are still open, so everyone should see them again."""
        back = 0
        for participant in lost:
            taken = await self.claim(visit_id, participant, replace=False)
            if taken.taken:
                back += 1
            elif taken.refusal == SEATED_ELSEWHERE:
                # The same guest joined from another device meanwhile, which took the
                # place over (the "replace" envelope may have come before this socket was
                # registered): whoever holds this socket closes it.
                await self.publish(visit_id, {"op": "replace", "peer_id": participant.peer_id,
                                              "connection_id": ""})
            else:
                log.warning("room %s filled while this instance was cut off; a participant "
                            "stays out until they reconnect", visit_id)
        if back:
            log.info("put back %s participant(s) of room %s after a Redis outage", back,
                     visit_id)
            await self.publish(visit_id, {"op": "presence"})

    async def _prune_watched(self) -> None:
        """Drop the stale entries of the rooms this instance has members in, and publish
        a presence for each room that lost any: the members everywhere then stop seeing
        the participants of an instance that died (their sockets died with it)."""
        stale_before = time.time() - self.stale_seconds
        for visit_id in list(self._watched):
            removed = await self._prune(keys=[self._room(visit_id), self._seen(visit_id)],
                                        args=[stale_before])
            if removed:
                log.info("dropped %s stale participant(s) of room %s", removed, visit_id)
                await self.publish(visit_id, {"op": "presence"})


def make_relay(redis_url: str, namespace: str) -> Relay:
    return RedisRelay(redis_url, namespace) if redis_url else LocalRelay()
