"""Rooms shared through real Redis by several instances (one ``Rooms`` and one
``RedisRelay`` each, in this process): the room cap under racing joins, and presence
after an instance dies without saying goodbye.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from server import guests
from server.actors import Actor
from server.models import Role, VisitGuest
from server.services import Services
from signaling import protocol
from signaling.protocol import Admit, Dismiss, Hello, RoomFull
from signaling.relay import LocalRelay, RedisRelay, Relay
from signaling.rooms import (
    ADMITTED,
    PEER_ID_IN_USE,
    ROOM_FULL,
    SEATED_ELSEWHERE,
    Identity,
    Member,
    Participant,
    Rooms,
)
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
        self.changed.set()

    async def until_closed(self, within: float) -> int:
        async with asyncio.timeout(within):
            while self.closed is None:
                self.changed.clear()
                await self.changed.wait()
        return self.closed

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


def actor(person: Person) -> Actor:
    return Actor(person.id, person.role, person.name, person.email)


def staff(person: Person) -> Identity:
    return Identity.of_user(actor(person), None)


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
        hello = Hello(peer_id=peer_id, polite_capable=True)
        member = await self.rooms.join(visit_id, identity, hello, outlet, uuid.uuid4().hex)
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
    await staff_on.rooms.handle(admitter, Admit(peer_id=peer_id))
    await patient_sees.until(lambda m: m["type"] == "admitted", within=5)
    await staff_sees.until(lambda m: m["type"] == "presence" and any(
        p["peer_id"] == peer_id and p["state"] == ADMITTED for p in m["participants"]),
        within=5)


def race(run: Runner, scenario: Callable[[], Awaitable[Any]]) -> Any:
    return run(lambda: asyncio.wait_for(scenario(), 30))


# --- the room's seats ---------------------------------------------------------------------


def participant(peer_id: str, role: str = "prescriber", who: str | None = None) -> Participant:
    guest_id = int(who.split(":")[1]) if who and who.startswith("guest:") else None
    return Participant(peer_id=peer_id, connection_id=uuid.uuid4().hex,
                       who=who or f"user:{peer_id}", user_id=None, guest_id=guest_id,
                       name=peer_id, role=role, state=ADMITTED,
                       since="2026-01-01T00:00:00+00:00", polite_capable=True, instance="test")


def guest_identity(guest_id: int) -> Identity:
    # No invitation row is needed: a guest without a stored admission waits.
    return Identity(f"Guest {guest_id}", "guest", None, guest_id)


@pytest.mark.redis
def test_claim_keeps_the_care_teams_seats_on_two_relays(
        run: Runner, services: Services, namespace: str) -> None:
    async def scenario() -> None:
        one, two = redis_relay(namespace), redis_relay(namespace)
        try:
            for attempt in range(4):
                # Eight guests at once, half on each relay, for the one shared seat.
                contenders = [participant(f"guest-{attempt}-{n}", "guest",
                                          f"guest:{attempt * 10 + n}") for n in range(8)]
                got = await asyncio.gather(*(
                    (one if n % 2 else two).claim(7, p) for n, p in enumerate(contenders)))
                assert [s.taken for s in got].count(True) == (1 if attempt == 0 else 0), got
                assert {s.refusal for s in got if not s.taken} == {ROOM_FULL}
            # The seats kept for the care team and the patient are there, on either relay.
            for peer, role in [("prescriber-1", "prescriber"), ("patient-1", "patient"),
                               ("coordinator-1", "coordinator")]:
                assert (await one.claim(7, participant(peer, role))).taken
            assert len(await two.members(7)) == CAP
            refused = await two.claim(7, participant("prescriber-tab-2"))
            assert (refused.taken, refused.refusal) == (False, ROOM_FULL)
            # Whoever has a seat keeps it when they claim it again (a reconnect); the peer
            # id of someone else is refused.
            assert (await two.claim(7, participant("patient-1", "patient"))).taken
            stolen = await two.claim(7, participant("patient-1", "patient", "user:other"))
            assert stolen.refusal == PEER_ID_IN_USE
            # The seated guest on another device takes their own place over; putting an
            # entry back after an outage (replace=False) does not.
            members = {p.peer_id: p for p in await one.members(7)}
            guest = next(p for p in members.values() if p.role == "guest")
            laptop = participant("guest-laptop", "guest", guest.who)
            kept = await two.claim(7, laptop, replace=False)
            assert (kept.taken, kept.refusal) == (False, SEATED_ELSEWHERE)
            moved = await two.claim(7, laptop)
            assert (moved.taken, moved.replaced) == (True, (guest.peer_id,))
            assert {p.peer_id for p in await one.members(7)} == {
                "prescriber-1", "patient-1", "coordinator-1", "guest-laptop"}
            # A seat of an instance that died is free once its entry is stale.
            await asyncio.sleep(STALE_SECONDS + 0.1)
            assert (await one.claim(7, participant("after-the-stale-ones", "guest",
                                                   "guest:99"))).taken
            assert [p.peer_id for p in await two.members(7)] == ["after-the-stale-ones"]
        finally:
            await one.close()
            await two.close()

    race(run, scenario)
@pytest.mark.redis
def test_the_redis_seat_script_follows_the_same_rule_as_one_instance(
        run: Runner, services: Services, namespace: str) -> None:
    """The Lua script and ``rooms.seat`` are one rule written twice: the same random
    run of joins, reconnects and departures gets the same answers from both."""
    import random

    async def scenario() -> None:
        redis, local = redis_relay(namespace), LocalRelay()
        chooser = random.Random(14)
        # Guests twice as likely as each other role, three guest tokens, two people of
        # each other role, up to three sockets each; now and then someone else's peer id.
        # (Over the 300 steps: about 120 seats taken, 10 of them replacing the guest's
        # other socket, 60 room_full, 15 peer_id_in_use, a few seated_elsewhere.)
        roles = ["patient", "prescriber", "coordinator", "guest", "guest"]
        try:
            for step in range(300):
                role = chooser.choice(roles)
                who = f"guest:{chooser.randrange(3)}" if role == "guest" else \
                    f"user:{role}-{chooser.randrange(2)}"
                present = await local.members(3)
                if chooser.random() < 0.3:
                    if present:
                        gone = chooser.choice(present)
                        assert await local.release(3, gone.peer_id, gone.connection_id)
                        assert await redis.release(3, gone.peer_id, gone.connection_id)
                    continue
                peer = f"{who.replace(':', '-')}-{chooser.randrange(3)}"
                if present and chooser.random() < 0.1:
                    peer = chooser.choice(present).peer_id
                joiner = participant(peer, role, who)
                replace = chooser.random() < 0.8
                expected = await local.claim(3, joiner, replace=replace)
                got = await redis.claim(3, joiner, replace=replace)
                assert got == expected, (step, joiner, replace)
                assert sorted(p.peer_id for p in await redis.members(3)) == \
                    sorted(p.peer_id for p in await local.members(3)), step
        finally:
            await redis.close()

    race(run, scenario)


def seats_of(members: list[Participant]) -> dict[str, int]:
    return dict(Counter(p.role for p in members))


@pytest.mark.parametrize("relays", [
    pytest.param("local", id="one-instance-local"),
    pytest.param("redis", id="two-instances-redis", marks=pytest.mark.redis)])
def test_racing_guests_and_staff_leave_the_care_team_seated(
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
            # Seventeen joins at once, spread over the instances: four guests, four
            # sockets of one more guest token, eight staff tabs, and the patient (who
            # waits; the admission is a database call between the check and the seat).
            joins = [(guest_identity(n), f"guest-{n}-peer") for n in range(4)] + [
                (guest_identity(99), f"one-token-{n}") for n in range(4)] + [
                (staff(clinic.prescriber if n % 2 else clinic.coordinator), f"staff-tab-{n}")
                for n in range(8)] + [(patient(clinic.patient), "patient-peer-1")]
            results = await asyncio.gather(*(
                instances[n % len(instances)].join(clinic.visit_id, identity, peer)
                for n, (identity, peer) in enumerate(joins)), return_exceptions=True)
            joined = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, RoomFull) for r in refused), refused
            in_room = await instances[0].relay.members(clinic.visit_id)
            seats = seats_of(in_room)
            # The patient, a prescriber and a coordinator are in, whatever won the race
            # for the shared seat; at most one guest, and one place per token.
            assert len(in_room) == CAP, in_room
            assert seats["patient"] == 1 and seats["prescriber"] >= 1, seats
            assert seats["coordinator"] >= 1 and seats.get("guest", 0) <= 1, seats
            ids = {p.peer_id for p in in_room}
            # Every socket that joined but holds no place (a token's earlier socket,
            # taken over) is closed, 4409, within a refresh; the others see the four.
            for member, outlet in joined:
                if member.participant.peer_id not in ids:
                    assert await outlet.until_closed(within=5) == 4409
            for member, outlet in joined:
                if member.participant.peer_id in ids:
                    await outlet.until(is_presence(ids), within=5)
                    assert outlet.closed is None
            # The refused took nothing: a coordinator's seat that frees is taken by the
            # next coordinator.
            member, _ = next((m, o) for m, o in joined if m.participant.peer_id in ids
                             and m.participant.role == "coordinator")
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


@pytest.mark.redis
def test_a_guest_moves_device_and_is_sent_out_across_instances(
        run: Runner, services: Services, clinic: Clinic, namespace: str) -> None:
    visit = clinic.visit_id

    async def scenario() -> None:
        async with services.transaction() as session:
            invited = await guests.invite_guest(
                session, services, actor(clinic.prescriber), visit, name="Ana Interpreter",
                email="ana@interpreters.test")
        guest = Identity("Ana Interpreter", "guest", None, invited.id)
        a = await Instance.start(services, redis_relay(namespace))
        b = await Instance.start(services, redis_relay(namespace))
        try:
            prescriber, on_b = await b.join(visit, staff(clinic.prescriber), "prescriber-peer")
            _, phone = await a.join(visit, guest, "guest-phone-01")
            # The same invitation on another device, on the other instance: it takes the
            # guest's place over, and the phone's instance closes the phone.
            _, laptop = await b.join(visit, guest, "guest-laptop-1")
            assert await phone.until_closed(within=5) == 4409
            await on_b.until(is_presence({"prescriber-peer", "guest-laptop-1"}), within=5)
            _, tablet = await a.join(visit, guest, "guest-tablet-1")
            assert await laptop.until_closed(within=5) == 4409
            # Sent out from B while on A: told, closed, gone from the room for everyone.
            seen = len(on_b.pushed)
            await b.rooms.handle(prescriber, Dismiss(peer_id="guest-tablet-1", revoke=True))
            assert await tablet.until_closed(within=5) == protocol.CLOSE_DISMISSED
            assert [m["code"] for m in tablet.pushed if m["type"] == "error"] == ["dismissed"]
            await on_b.until(is_presence({"prescriber-peer"}), within=5, after=seen)
            assert [p.peer_id for p in await a.relay.members(visit)] == ["prescriber-peer"]
            async with services.transaction() as session:
                row = await session.get(VisitGuest, invited.id)
                assert row is not None and row.revoked_at is not None
        finally:
            await a.stop()
            await b.stop()

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
