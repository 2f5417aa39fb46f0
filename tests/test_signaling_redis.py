"""Rooms shared through real Redis by several instances (one ``Rooms`` and one
``RedisRelay`` each, in this process): the room cap under racing joins, and presence
after an instance dies without saying goodbye.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from server.actors import Actor
from server.models import Role
from server.services import Services
from signaling import protocol
from signaling.protocol import Admit, Hello, RoomFull
from signaling.relay import LocalRelay, RedisRelay, Relay
from signaling.rooms import ADMITTED, Identity, Member, Participant, Rooms
from tests.clinic import Clinic, Person
from tests.conftest import Runner
from tests.signaling_support import REDIS_URL, redis_unavailable, service_or_skip

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CAP = protocol.MAX_PARTICIPANTS
# Scaled down from 5 s and 30 s: a dead instance's participants go within 1.5 s.
REFRESH_SECONDS = 0.25
STALE_SECONDS = 1.0


@pytest.fixture
def namespace() -> str:
    service_or_skip(redis_unavailable())
    # Rooms of this test only: other runs may share the Redis server.
    return f"mendwell-test-{uuid.uuid4().hex[:8]}"


@dataclass(eq=False)
class Outlet:
    """A socket as rooms see it: keeps what it is sent."""

    pushed: list[dict[str, Any]] = field(default_factory=list)
    closed: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, message: dict[str, Any]) -> None:
        self.pushed.append(message)
        self.changed.set()

    def close(self, code: int) -> None:
        self.closed = code

    async def until(self, found: Callable[[dict[str, Any]], bool], within: float,
                    after: int = 0) -> float:
        """Seconds until a message ``found`` accepts is among those pushed from index
        ``after`` on (fails after ``within``)."""
        start = time.monotonic()
        async with asyncio.timeout(within):
            while not any(found(m) for m in self.pushed[after:]):
                self.changed.clear()
                await self.changed.wait()
        return time.monotonic() - start


def staff(person: Person) -> Identity:
    return Identity.of_user(Actor(person.id, person.role, person.name, person.email), None)


def patient(person: Person) -> Identity:
    return Identity.of_user(Actor(person.id, Role.patient, person.name, person.email), None)


class Instance:
    """One app instance's rooms, on a relay of its own."""

    def __init__(self, services: Services, relay: Relay) -> None:
        self.relay = relay
        self.rooms = Rooms(services, relay)

    @classmethod
    async def start(cls, services: Services, relay: Relay) -> Instance:
        instance = cls(services, relay)
        await relay.start(instance.rooms.on_envelope)
        return instance

    async def join(self, visit_id: int, identity: Identity, peer_id: str) -> tuple[Member, Outlet]:
        outlet = Outlet()
        member = await self.rooms.join(visit_id, identity, Hello(peer_id, True), outlet,
                                       uuid.uuid4().hex)
        return member, outlet

    async def stop(self) -> None:
        await self.rooms.close()
        await self.relay.close()


def redis_relay(namespace: str) -> RedisRelay:
    return RedisRelay(REDIS_URL, namespace, refresh_seconds=REFRESH_SECONDS,
                      stale_seconds=STALE_SECONDS)


def peers_in(message: dict[str, Any]) -> set[str]:
    return {p["peer_id"] for p in message["participants"]}


def is_presence(peers: set[str]) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "presence" and peers_in(m) == peers


async def admit_across(staff_on: Instance, admitter: Member, staff_sees: Outlet,
                       patient_sees: Outlet, peer_id: str) -> None:
    """Admit a waiting patient from another instance; returns once the patient has been
    told and the staff side sees them admitted."""
    await staff_on.rooms.handle(admitter, Admit(peer_id))
    await patient_sees.until(lambda m: m["type"] == "admitted", within=5)
    await staff_sees.until(lambda m: m["type"] == "presence" and any(
        p["peer_id"] == peer_id and p["state"] == ADMITTED for p in m["participants"]),
        within=5)


def race(run: Runner, scenario: Callable[[], Awaitable[Any]]) -> Any:
    return run(lambda: asyncio.wait_for(scenario(), 30))


# --- the room cap ------------------------------------------------------------------------


def participant(peer_id: str) -> Participant:
    return Participant(peer_id=peer_id, connection_id=uuid.uuid4().hex, who=f"user:{peer_id}",
                       user_id=None, guest_id=None, name=peer_id, role="prescriber",
                       state=ADMITTED, since="2026-01-01T00:00:00+00:00",
                       polite_capable=True, instance="test")


@pytest.mark.redis
def test_claim_gives_the_last_seat_to_one_of_many_on_two_relays(
        run: Runner, services: Services, namespace: str) -> None:
    async def scenario() -> None:
        one, two = redis_relay(namespace), redis_relay(namespace)
        try:
            for n in range(CAP - 1):
                assert await one.claim(7, participant(f"seated-{n}"), CAP)
            for attempt in range(5):
                contenders = [participant(f"contender-{attempt}-{n}") for n in range(8)]
                got = await asyncio.gather(*(
                    (one if n % 2 else two).claim(7, p, CAP) for n, p in enumerate(contenders)))
                assert got.count(True) == (1 if attempt == 0 else 0), got
                assert len(await two.members(7)) == CAP
            # Whoever has a seat keeps it when they claim it again (a reconnect).
            assert await two.claim(7, participant("seated-0"), CAP)
            # A seat of an instance that died is free once its entry is stale.
            await asyncio.sleep(STALE_SECONDS + 0.1)
            assert await one.claim(7, participant("after-the-stale-ones"), CAP)
            assert [p.peer_id for p in await two.members(7)] == ["after-the-stale-ones"]
        finally:
            await one.close()
            await two.close()

    race(run, scenario)


@pytest.mark.parametrize("relays", [
    pytest.param("local", id="one-instance-local"),
    pytest.param("redis", id="two-instances-redis", marks=pytest.mark.redis)])
def test_racing_joins_fill_the_room_to_exactly_four(
        run: Runner, services: Services, clinic: Clinic, request: pytest.FixtureRequest,
        relays: str) -> None:
    namespace = request.getfixturevalue("namespace") if relays == "redis" else ""

    async def scenario() -> None:
        if relays == "redis":
            instances = [await Instance.start(services, redis_relay(namespace))
                         for _ in range(2)]
        else:
            instances = [await Instance.start(services, LocalRelay())]
        try:
            # Nine joins at once for four seats: the patient (who waits; the admission
            # is a database call between the check and the seat) and eight staff tabs.
            joins = [(patient(clinic.patient), "patient-peer-1")] + [
                (staff(clinic.prescriber if n % 2 else clinic.coordinator), f"staff-tab-{n}")
                for n in range(8)]
            results = await asyncio.gather(*(
                instances[n % len(instances)].join(clinic.visit_id, identity, peer)
                for n, (identity, peer) in enumerate(joins)), return_exceptions=True)
            seated = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, BaseException)]
            assert len(seated) == CAP, results
            assert all(isinstance(r, RoomFull) and r.code == "room_full" for r in refused)
            assert len(refused) == len(joins) - CAP
            in_room = {p.peer_id for p in await instances[0].relay.members(clinic.visit_id)}
            assert in_room == {m.participant.peer_id for m, _ in seated}
            # Every member, on either instance, comes to see the same four.
            for _, outlet in seated:
                await outlet.until(is_presence(in_room), within=5)
            # The refused took nothing: a seat that frees is taken by the next join.
            member, _ = seated[0]
            await next(i for i in instances
                       if i.rooms.local.get(member.key) is member).rooms.drop(
                member, deliberate=True)
            _, late = await instances[-1].join(clinic.visit_id, staff(clinic.coordinator),
                                               "late-coordinator")
            assert late.pushed[0]["type"] == "welcome"
        finally:
            for instance in instances:
                await instance.stop()

    race(run, scenario)


# --- an instance dies --------------------------------------------------------------------


@pytest.mark.redis
def test_members_stop_seeing_the_participants_of_a_dead_instance(
        run: Runner, services: Services, clinic: Clinic, namespace: str) -> None:
    visit = clinic.visit_id

    async def scenario() -> None:
        a = await Instance.start(services, redis_relay(namespace))
        b = await Instance.start(services, redis_relay(namespace))
        restarted: Instance | None = None
        try:
            # The patient is on A, the prescriber and the coordinator on B.
            _, on_a = await a.join(visit, patient(clinic.patient), "patient-peer-1")
            prescriber, on_b = await b.join(visit, staff(clinic.prescriber), "prescriber-peer")
            _, coordinator = await b.join(visit, staff(clinic.coordinator), "coordinator-peer")
            everyone = {"patient-peer-1", "prescriber-peer", "coordinator-peer"}
            await on_b.until(is_presence(everyone), within=5)
            await admit_across(b, prescriber, on_b, on_a, "patient-peer-1")

            # A dies: no release, no goodbye; its Redis connections just stop.
            died = time.monotonic()
            seen = len(on_b.pushed), len(coordinator.pushed)
            await a.relay.close()
            staff_only = {"prescriber-peer", "coordinator-peer"}
            await on_b.until(is_presence(staff_only), within=STALE_SECONDS + 2, after=seen[0])
            await coordinator.until(is_presence(staff_only), within=1, after=seen[1])
            gone_after = time.monotonic() - died
            assert gone_after < STALE_SECONDS + REFRESH_SECONDS + 0.5, gone_after
            # One presence for the loss (B's refresh pruned the entry once), and none
            # before it that still showed the patient.
            told = [m for m in on_b.pushed[seen[0]:] if m["type"] == "presence"]
            assert [peers_in(m) for m in told] == [staff_only], told

            # The patient's page reconnects (to B here): back in, admitted, without a
            # second admission, and the care team sees them again.
            seen = len(on_b.pushed), 0
            _, back = await b.join(visit, patient(clinic.patient), "patient-peer-1")
            welcome = back.pushed[0]
            assert welcome["type"] == "welcome", back.pushed
            assert welcome["state"] == ADMITTED and welcome["resumed"] is True
            await on_b.until(is_presence(everyone), within=5, after=seen[0])

            # And a restarted A serves a participant as before.
            restarted = await Instance.start(services, redis_relay(namespace))
            _, guest_tab = await restarted.join(visit, staff(clinic.coordinator),
                                                "coordinator-tab-2")
            await guest_tab.until(is_presence(everyone | {"coordinator-tab-2"}), within=5)
            await on_b.until(is_presence(everyone | {"coordinator-tab-2"}), within=5)
        finally:
            await b.stop()
            if restarted is not None:
                await restarted.stop()
            a.rooms.local.clear()

    race(run, scenario)


@pytest.mark.redis
def test_an_instance_cut_off_from_redis_puts_its_participants_back(
        run: Runner, services: Services, clinic: Clinic, namespace: str) -> None:
    """An instance that could not reach Redis for longer than the stale time finds its
    participants pruned by the others; its sockets are still open, so its next refresh
    puts them back (in their current state) and everyone sees them again."""
    from redis.asyncio import Redis

    visit = clinic.visit_id

    async def scenario() -> None:
        a = await Instance.start(services, redis_relay(namespace))
        b = await Instance.start(services, redis_relay(namespace))
        redis = Redis.from_url(REDIS_URL)
        try:
            _, on_a = await a.join(visit, patient(clinic.patient), "patient-peer-1")
            prescriber, on_b = await b.join(visit, staff(clinic.prescriber), "prescriber-peer")
            everyone = {"patient-peer-1", "prescriber-peer"}
            await on_b.until(is_presence(everyone), within=5)
            await admit_across(b, prescriber, on_b, on_a, "patient-peer-1")

            # What B's pruning does to the entry of an instance it has not heard from.
            room = f"{namespace}:room:{visit}"
            seen = len(on_b.pushed)
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hdel(room, "patient-peer-1")
                pipe.zrem(f"{room}:seen", "patient-peer-1")
                await pipe.execute()

            back = await on_b.until(is_presence(everyone), within=REFRESH_SECONDS * 4,
                                    after=seen)
            assert back < REFRESH_SECONDS * 3, back
            stored = await redis.hget(room, "patient-peer-1")
            assert stored is not None
            assert Participant.from_json(json.loads(stored)).state == ADMITTED
            assert on_a.closed is None and on_b.closed is None
        finally:
            await redis.aclose()
            await a.stop()
            await b.stop()

    race(run, scenario)
