"""Rooms: who is in a visit's room, who waits, who is polite to whom, and what reaches whom.

One room per visit. A participant is one signaling socket (one ``peer_id``). The room's
presence lives in the relay (this process, or Redis when instances share rooms); the
sockets themselves live here, in the instance that accepted them. Every change is
published as an envelope on the room's channel, and each instance delivers it to its
own sockets, so a patient on one instance and a prescriber on another see each other.

Admission is stored in the database, not in the room: the patient's by the visit's
status (``in_progress``), a guest's in ``visit_guests``. A participant who reconnects,
to this instance or another, after a network drop or a server restart, resumes their
place without being admitted a second time.

Seats (``seat``): the patient, the prescriber and the coordinator each have one held for
them; guests and any further sockets share the rest, and a guest token holds one seat
at a time (a second socket with it takes the place over). The relay applies the rule
in the same step as it takes the seat, so joins racing on several instances cannot
overfill a room.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from server import chat, guests, visits
from server.actors import Actor
from server.errors import APIError
from server.guests import Guest
from server.models import Role, VisitGuest, VisitStatus
from server.services import Services
from signaling import protocol
from signaling.ice import IceConfig, ice_config
from signaling.protocol import (
    Admit,
    Chat,
    Dismiss,
    End,
    Hello,
    IceRefresh,
    InvalidState,
    Leave,
    Message,
    NotAllowed,
    Ping,
    ProtocolError,
    RateLimiter,
    Remove,
    RoomFull,
    Signal,
    UnknownPeer,
)

if TYPE_CHECKING:
    from signaling.relay import Relay

log = logging.getLogger("mendwell.signaling")

WAITING = "waiting"
ADMITTED = "admitted"
STAFF_ROLES = ("prescriber", "coordinator")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a socket: a signed-in user, or an invited guest."""

    name: str
    role: str                        # patient, prescriber, coordinator, guest
    actor: Actor | None = None       # None for a guest
    guest_id: int | None = None
    session_id: int | None = None

    @property
    def who(self) -> str:
        """One key per person: their sockets share a place and an admission."""
        return f"guest:{self.guest_id}" if self.actor is None else f"user:{self.actor.user_id}"

    @property
    def user_id(self) -> int | None:
        return self.actor.user_id if self.actor else None

    @property
    def ice_user(self) -> str:
        return f"guest-{self.guest_id}" if self.actor is None else str(self.actor.user_id)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def you(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name, "role": self.role}

    @classmethod
    def of_user(cls, actor: Actor, session_id: int | None) -> Identity:
        return cls(actor.name, actor.role.value, actor, None, session_id)

    @classmethod
    def of_guest(cls, guest: Guest) -> Identity:
        return cls(guest.name, "guest", None, guest.id)

    def sender(self) -> chat.Sender:
        if self.actor is None:
            assert self.guest_id is not None
            return chat.Sender.of_guest(self.guest_id, self.name)
        return chat.Sender.of_user(self.actor)


@dataclass(slots=True)
class Participant:
    """One socket's place in a room, as every instance sees it."""

    peer_id: str
    connection_id: str
    who: str
    user_id: int | None
    guest_id: int | None
    name: str
    role: str
    state: str
    since: str
    polite_capable: bool
    instance: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Participant:
        return cls(**data)

    @property
    def one_seat(self) -> bool:
        """A guest holds one seat per invitation, whatever number of sockets use it: a
        leaked or shared link must not fill the room."""
        return self.guest_id is not None


# --- seats -----------------------------------------------------------------------------


def has_seat(role: str, others: Iterable[str]) -> bool:
    """Whether one more participant of ``role`` fits beside ``others`` (their roles).

    Each role of ``protocol.RESERVED_SEATS`` keeps its seats whether or not anyone sits
    in them; everyone beyond those, and every other role (guests), shares
    ``protocol.SHARED_SEATS``. ``_CLAIM`` in signaling/relay.py is this same rule in
    Lua, for Redis: change both together.
    """
    taken = Counter(others)
    if taken[role] < protocol.RESERVED_SEATS.get(role, 0):
        return True
    shared = sum(max(0, n - protocol.RESERVED_SEATS.get(r, 0)) for r, n in taken.items())
    return shared < protocol.SHARED_SEATS


ROOM_FULL = "room_full"
PEER_ID_IN_USE = "peer_id_in_use"
SEATED_ELSEWHERE = "seated_elsewhere"


@dataclass(frozen=True, slots=True)
class Seat:
    """What a claim did: the seat was ``taken``, or the ``refusal`` why not; and the
    other places of the same guest that it took over (``replaced``, their peer ids)."""

    taken: bool
    refusal: str | None = None
    replaced: tuple[str, ...] = ()


def seat(joiner: Participant, room: Iterable[Participant], *, replace: bool) -> Seat:
    """Whether ``joiner`` may take a place among a room's (fresh) entries.

    A ``peer_id`` that already has a place gets it back, however full the room is: a
    reconnect resumes its own seat and never takes a second one. A guest's other socket
    is taken over when ``replace`` (a join: the newest device is the one the person is
    looking at), and refuses the claim otherwise (putting back an entry after a Redis
    outage must not push out the device that replaced it).
    """
    others: list[str] = []
    mine: list[str] = []
    for p in room:
        if p.peer_id == joiner.peer_id:
            return Seat(True) if p.who == joiner.who else Seat(False, PEER_ID_IN_USE)
        if joiner.one_seat and p.who == joiner.who:
            mine.append(p.peer_id)
        else:
            others.append(p.role)
    if mine and not replace:
        return Seat(False, SEATED_ELSEWHERE)
    if not has_seat(joiner.role, others):
        return Seat(False, ROOM_FULL)
    return Seat(True, replaced=tuple(mine))


def refusal_error(refusal: str | None, role: str) -> ProtocolError:
    if refusal == PEER_ID_IN_USE:
        return ProtocolError("This peer_id is in use by someone else in this room.",
                             field="peer_id", code="peer_id_in_use")
    if role == "guest":
        guests_at_once = "one guest" if protocol.SHARED_SEATS == 1 else \
            f"{protocol.SHARED_SEATS} guests"
        return RoomFull(f"This visit has room for {guests_at_once} at a time, and no place "
                        "is free. The care team can let you in once one is.")
    return RoomFull(f"The room is full: it holds {protocol.MAX_PARTICIPANTS}, with a seat "
                    "kept for each of the patient, the prescriber and the care "
                    "coordinator.")


def polite(receiver: Participant, other: Participant) -> bool:
    """Whether ``receiver`` is the polite side of its pair with ``other``.

    Exactly one side of every pair is polite. aiortc cannot roll back an offer, so a
    peer that is not polite-capable is always the impolite one; between two such
    peers (or two browsers) the ``peer_id`` that sorts first is polite.
    """
    if receiver.polite_capable != other.polite_capable:
        return receiver.polite_capable
    return receiver.peer_id < other.peer_id


def presence(receiver: Participant, members: list[Participant]) -> dict[str, Any]:
    ordered = sorted(members, key=lambda p: (p.since, p.peer_id))
    return {"type": "presence", "participants": [
        {"peer_id": p.peer_id, "user_id": p.user_id, "name": p.name, "role": p.role,
         "state": p.state, "since": p.since,
         "polite": None if p.peer_id == receiver.peer_id else polite(receiver, p)}
        for p in ordered]}


def _signalling(sender: Participant) -> Participant:
    """The sender of a signal, who must have been let in."""
    if sender.state != ADMITTED:
        raise InvalidState(f'Cannot signal in state "{sender.state}".', field="type")
    return sender


def _check_target(signal: Signal, target: Participant | None) -> None:
    if target is None or target.state != ADMITTED:
        raise UnknownPeer(f'There is no admitted peer "{signal.to}" in this room.', field="to")


class Outlet(Protocol):
    """A socket, as rooms see it: messages are queued, never awaited."""

    def push(self, message: dict[str, Any]) -> None: ...
    def close(self, code: int) -> None: ...


@dataclass(slots=True)
class Member:
    """A socket of this instance that has joined a room."""

    visit_id: int
    identity: Identity
    participant: Participant
    outlet: Outlet
    gone: bool = False
    chat_limiter: RateLimiter | None = None  # made at the member's first chat message

    @property
    def key(self) -> tuple[int, str]:
        return (self.visit_id, self.participant.peer_id)


class Rooms:
    def __init__(self, services: Services, relay: Relay) -> None:
        self.services = services
        self.relay = relay
        from signaling.relay import LocalRelay  # (relay imports this module)

        self._in_process = isinstance(relay, LocalRelay)
        self.local: dict[tuple[int, str], Member] = {}
        self._by_visit: dict[int, set[str]] = {}
        self._joining: dict[int, int] = {}  # joins between watch() and their seat, per room
        relay.owned(lambda: [(m.visit_id, m.participant) for m in self.local.values()])

    # --- joining and leaving ---------------------------------------------------------

    async def join(self, visit_id: int, identity: Identity, hello: Hello, outlet: Outlet,
                   connection_id: str) -> Member:
        """Take (or take back) a place in the room; sends ``welcome`` and ``presence``."""
        existing = await self.relay.get(visit_id, hello.peer_id)
        if existing is not None and existing.who != identity.who:
            raise refusal_error(PEER_ID_IN_USE, identity.role)
        participant = Participant(
            peer_id=hello.peer_id, connection_id=connection_id, who=identity.who,
            user_id=identity.user_id, guest_id=identity.guest_id, name=identity.name,
            role=identity.role, state=WAITING, since="", polite_capable=hello.polite_capable,
            instance=self.relay.instance_id)
        if existing is None:
            # A quick refusal before the admission touches the database; the seat itself
            # is taken atomically by relay.claim() below.
            quick = seat(participant, await self.relay.members(visit_id), replace=True)
            if not quick.taken:
                raise refusal_error(quick.refusal, identity.role)
        now = self.services.clock.now()
        state, since, stored = await self._admission(visit_id, identity, now)
        if existing is not None and state == existing.state:
            since = existing.since
        participant.state, participant.since = state, since
        # Subscribe before taking the seat: once the entry is there, envelopes may be
        # for this peer. Check and take the seat in one step: joins racing on other
        # instances for the last seat cannot both get it.
        self._joining[visit_id] = self._joining.get(visit_id, 0) + 1
        try:
            await self.relay.watch(visit_id)
            taken = await self.relay.claim(visit_id, participant)
        finally:
            self._joining[visit_id] -= 1
            if not self._joining[visit_id]:
                del self._joining[visit_id]
        if not taken.taken:
            if visit_id not in self._by_visit and visit_id not in self._joining:
                await self.relay.unwatch(visit_id)
            raise refusal_error(taken.refusal, identity.role)
        # Nothing awaits from the claim to here: no envelope is delivered in between.
        member = Member(visit_id, identity, participant, outlet)
        previous = self.local.get(member.key)
        if previous is not None:
            self._let_go(previous)
        for peer in taken.replaced:
            other = self.local.get((visit_id, peer))
            if other is not None:
                self._let_go(other)
        self.local[member.key] = member
        self._by_visit.setdefault(visit_id, set()).add(hello.peer_id)
        if existing is not None and existing.instance != self.relay.instance_id:
            await self.relay.publish(visit_id, {"op": "replace", "peer_id": hello.peer_id,
                                                "connection_id": connection_id})
        for peer in taken.replaced:
            # The guest's other socket may be on another instance (or on this one, still
            # between its own claim and here): whoever holds it closes it.
            await self.relay.publish(visit_id, {"op": "replace", "peer_id": peer,
                                                "connection_id": connection_id})
        resumed = existing is not None or (stored and state == ADMITTED)
        outlet.push({"type": "welcome", "peer_id": hello.peer_id, "you": identity.you(),
                     "state": state, "resumed": resumed, **self._ice(identity).to_json()})
        await self.relay.publish(visit_id, {"op": "presence"})
        if state == ADMITTED:
            # After the presence that starts the call's negotiation: the chat so far
            # must not hold up the video.
            await self._chat_history(member)
        return member

    async def _admission(self, visit_id: int, identity: Identity,
                         now: datetime) -> tuple[str, str, bool]:
        """(state, since, whether the admission was stored earlier) for a joiner."""
        if identity.is_staff:
            return ADMITTED, now.isoformat(), False
        alert_after = timedelta(minutes=self.services.settings.waiting_alert_minutes)
        async with self.services.transaction() as session:
            if identity.actor is None:
                guest = await session.get(VisitGuest, identity.guest_id)
                if guest is not None and guest.admitted_at is not None:
                    return ADMITTED, guest.admitted_at.isoformat(), True
                return WAITING, now.isoformat(), False
            visit = await visits.mark_waiting(session, identity.actor, visit_id, now=now,
                                              alert_after=alert_after)
            if visit.status is VisitStatus.in_progress:
                return ADMITTED, (visit.started_at or now).isoformat(), True
            since = await visits.waiting_since(session, visit_id)
            return WAITING, (since or now).isoformat(), False

    def _forget(self, member: Member) -> None:
        if self.local.get(member.key) is member:
            del self.local[member.key]
            peers = self._by_visit.get(member.visit_id)
            if peers is not None:
                peers.discard(member.participant.peer_id)
                if not peers:
                    del self._by_visit[member.visit_id]

    def _let_go(self, member: Member) -> None:
        """Another socket of the same person took this one's place over: close it (its
        entry in the relay already belongs to the other socket, or is gone)."""
        self._forget(member)
        member.gone = True
        member.outlet.close(protocol.CLOSE_REPLACED)

    async def drop(self, member: Member, *, deliberate: bool) -> None:
        """The socket closed (``deliberate``: the participant said ``leave``)."""
        self._forget(member)
        member.gone = True
        p = member.participant
        released = await self.relay.release(member.visit_id, p.peer_id, p.connection_id)
        if deliberate and member.identity.role == "patient" and p.state == WAITING and \
                member.identity.actor is not None:
            try:
                async with self.services.transaction() as session:
                    await visits.leave_waiting(session, member.identity.actor, member.visit_id,
                                               now=self.services.clock.now())
            except APIError as exc:
                log.info("leaving the waiting room of visit %s: %s", member.visit_id, exc)
        if released:
            await self.relay.publish(member.visit_id, {"op": "presence"})
        if member.visit_id not in self._by_visit and member.visit_id not in self._joining:
            await self.relay.unwatch(member.visit_id)

    # --- messages from a member --------------------------------------------------------

    def handle(self, member: Member, message: Message) -> Awaitable[None] | None:
        """Act on one message from a joined member; raises ProtocolError to refuse it.

        What needs no I/O is done here and now (a ping, a signal within this instance,
        fresh ICE servers): the signaling hot path. What needs the database or Redis
        comes back as an awaitable, which the socket awaits before it acts on the
        member's next message.
        """
        if isinstance(message, Ping):
            member.outlet.push({"type": "pong"})
        elif isinstance(message, Signal):
            if not self._in_process:
                return self._signal_through_relay(member, message)
            self._signal_here(member, message)
        elif isinstance(message, IceRefresh):
            member.outlet.push({"type": "ice-servers", **self._ice(member.identity).to_json()})
        elif isinstance(message, Admit):
            return self._admit(member, message.peer_id)
        elif isinstance(message, Remove):
            return self._remove(member, message.peer_id)
        elif isinstance(message, Dismiss):
            return self._dismiss(member, message)
        elif isinstance(message, Leave):
            return self._leave(member)
        elif isinstance(message, End):
            return self._end(member)
        elif isinstance(message, Chat):
            return self._chat(member, message)
        elif isinstance(message, Hello):
            raise InvalidState(f'Already joined as "{member.participant.peer_id}".',
                               field="type")
        return None

    async def _leave(self, member: Member) -> None:
        await self.drop(member, deliberate=True)
        member.outlet.close(protocol.CLOSE_NORMAL)

    def _signal_here(self, member: Member, signal: Signal) -> None:
        """One instance: every participant of the room is a member in ``self.local`` (the
        relay's entries are the same objects), so a signal goes straight to its socket,
        without an envelope through the relay."""
        me = _signalling(member.participant)
        here = None if signal.to == me.peer_id else self.local.get((member.visit_id, signal.to))
        _check_target(signal, None if here is None else here.participant)
        assert here is not None
        here.outlet.push(signal.relayed(me.peer_id))

    async def _signal_through_relay(self, member: Member, signal: Signal) -> None:
        """Several instances: the target may be on any of them, so the signal goes as an
        envelope on the room's channel (in order with the room's other envelopes)."""
        me = _signalling(member.participant)
        target = None if signal.to == me.peer_id else \
            await self.relay.get(member.visit_id, signal.to)
        _check_target(signal, target)
        await self.relay.publish(member.visit_id, {"op": "deliver", "to": signal.to,
                                                   "message": signal.relayed(me.peer_id)})

    async def _target(self, member: Member, peer_id: str, verb: str) -> Participant:
        if not member.identity.is_staff:
            raise NotAllowed(f"Only the care team can {verb} participants.", field="type")
        target = await self.relay.get(member.visit_id, peer_id)
        if target is None:
            raise UnknownPeer(f'There is no peer "{peer_id}" in this room.', field="peer_id")
        return target

    async def _admit(self, member: Member, peer_id: str) -> None:
        target = await self._target(member, peer_id, "admit")
        if target.state == ADMITTED:
            return
        actor = member.identity.actor
        assert actor is not None
        now = self.services.clock.now()
        async with self._domain() as session:
            if target.guest_id is not None:
                await guests.admit_guest(session, actor, member.visit_id, target.guest_id,
                                         now=now)
            else:
                await visits.admit(session, actor, member.visit_id, now=now)
        await self.relay.publish(member.visit_id, {"op": "admit", "who": target.who,
                                                   "since": now.isoformat()})

    async def _remove(self, member: Member, peer_id: str) -> None:
        target = await self._target(member, peer_id, "remove")
        if target.role in STAFF_ROLES:
            raise NotAllowed("Staff leave a visit themselves; they cannot be removed.",
                             field="peer_id")
        actor = member.identity.actor
        assert actor is not None
        now = self.services.clock.now()
        async with self._domain() as session:
            if target.guest_id is not None:
                await guests.remove_guest(session, actor, member.visit_id, target.guest_id,
                                          now=now)
            elif target.state == ADMITTED:
                await visits.return_to_waiting(
                    session, actor, member.visit_id, now=now,
                    alert_after=timedelta(minutes=self.services.settings.waiting_alert_minutes))
        await self.relay.publish(member.visit_id, {"op": "remove", "who": target.who,
                                                   "since": now.isoformat()})

    async def _dismiss(self, member: Member, message: Dismiss) -> None:
        """Send a guest out of the room: their seat frees for someone else."""
        target = await self._target(member, message.peer_id, "send out")
        if target.guest_id is None:
            raise NotAllowed("Only a guest can be sent out of the visit; remove moves the "
                             "patient back to the waiting room.", field="peer_id")
        actor = member.identity.actor
        assert actor is not None
        async with self._domain() as session:
            await guests.dismiss_guest(session, actor, member.visit_id, target.guest_id,
                                       revoke=message.revoke, now=self.services.clock.now())
        await self.relay.publish(member.visit_id, {"op": "dismiss", "who": target.who,
                                                   "revoked": message.revoke})

    async def _end(self, member: Member) -> None:
        actor = member.identity.actor
        if actor is None or actor.role is not Role.prescriber:
            raise NotAllowed("Only the prescriber can end the visit.", field="type")
        async with self._domain() as session:
            await visits.end_visit(session, actor, member.visit_id,
                                   now=self.services.clock.now())
        await self.relay.publish(member.visit_id, {"op": "ended"})

    async def _chat(self, member: Member, message: Chat) -> None:
        """Store a chat message, then relay it to every admitted member of the room, on
        every instance. A refusal names the message's ``client_id``, so the page can say
        which message did not go."""
        try:
            if member.participant.state != ADMITTED:
                raise ProtocolError("You can send messages once you have been let in.",
                                    field="type", code="not_admitted")
            if member.chat_limiter is None:
                member.chat_limiter = RateLimiter(protocol.CHAT_BURST, protocol.CHAT_PER_SECOND)
            if not member.chat_limiter.allow(time.monotonic()):
                raise ProtocolError(f"Slow down: at most {protocol.CHAT_PER_SECOND:g} chat "
                                    "messages a second. Send it again in a moment.",
                                    field="type", code="rate_limited")
            async with self._domain() as session:
                sent = await chat.send_message(session, member.identity.sender(),
                                               member.visit_id, message.client_id,
                                               message.text, self.services.clock.now())
        except ProtocolError as exc:
            member.outlet.push({**exc.to_json(), "client_id": message.client_id})
            return
        # A resend is relayed again too: the first try may have been stored and never
        # relayed (the instance went down in between). Pages show a message once, by id.
        await self.relay.publish(member.visit_id, {"op": "chat",
                                                   "message": sent.message.to_json()})

    async def _chat_history(self, member: Member) -> None:
        """The chat so far, to a member just let in or back in (a reconnect, a reload).

        Their place in the room is taken already: a refusal here (the visit ended or
        they were sent back meanwhile) leaves them without the history, not outside."""
        try:
            async with self._domain() as session:
                found = await chat.history_for(session, member.identity.sender(),
                                               member.visit_id)
        except ProtocolError as exc:
            log.info("no chat history for a member of visit %s: %s", member.visit_id,
                     exc.code)
            return
        who = member.participant.who
        member.outlet.push({"type": "chat-history", "messages": [
            {**m.to_json(), "mine": m.sender.who == who} for m in found]})

    def _domain(self) -> _DomainCall:
        return _DomainCall(self.services)

    def _ice(self, identity: Identity) -> IceConfig:
        return ice_config(self.services.settings, identity.ice_user, self.services.clock.now())

    # --- envelopes from the relay ------------------------------------------------------

    def members_of(self, visit_id: int) -> list[Member]:
        return [self.local[(visit_id, peer)] for peer in self._by_visit.get(visit_id, ())]

    async def on_envelope(self, visit_id: int, envelope: dict[str, Any]) -> None:
        op = envelope.get("op")
        if op == "deliver":
            target = self.local.get((visit_id, envelope["to"]))
            if target is not None and target.participant.state == ADMITTED:
                target.outlet.push(envelope["message"])
        elif op == "presence":
            here = self.members_of(visit_id)
            if here:
                everyone = await self.relay.members(visit_id)
                for member in here:
                    member.outlet.push(presence(member.participant, everyone))
        elif op in ("admit", "remove"):
            await self._change_state(visit_id, envelope)
        elif op == "replace":
            found = self.local.get((visit_id, envelope["peer_id"]))
            if found is not None and \
                    found.participant.connection_id != envelope["connection_id"]:
                self._let_go(found)
        elif op == "dismiss":
            await self._dismissed(visit_id, envelope)
        elif op == "chat":
            message = envelope["message"]
            for member in self.members_of(visit_id):
                if member.participant.state == ADMITTED and not member.gone:
                    member.outlet.push({"type": "chat", **message, "mine":
                                        message["from"]["who"] == member.participant.who})
        elif op == "ended":
            for member in self.members_of(visit_id):
                member.outlet.push({"type": "ended"})
                await self.drop(member, deliberate=False)
                member.outlet.close(protocol.CLOSE_NORMAL)

    async def _dismissed(self, visit_id: int, envelope: dict[str, Any]) -> None:
        message = "The care team has ended your place in this visit."
        if envelope["revoked"]:
            message += " Your invitation link no longer works."
        for member in self.members_of(visit_id):
            if member.participant.who != envelope["who"] or member.gone:
                continue
            member.outlet.push(protocol.error("dismissed", message))
            await self.drop(member, deliberate=False)
            member.outlet.close(protocol.CLOSE_DISMISSED)

    async def _change_state(self, visit_id: int, envelope: dict[str, Any]) -> None:
        admit = envelope["op"] == "admit"
        changed = []
        for member in self.members_of(visit_id):
            p = member.participant
            if p.who != envelope["who"] or (p.state == ADMITTED) == admit:
                continue
            p.state, p.since = (ADMITTED if admit else WAITING), envelope["since"]
            await self.relay.put(visit_id, p)
            member.outlet.push({"type": "admitted" if admit else "removed"})
            changed.append(member)
        if changed:
            await self.relay.publish(visit_id, {"op": "presence"})
        for member in changed if admit else ():
            if not member.gone:
                await self._chat_history(member)

    async def close(self) -> None:
        for member in list(self.local.values()):
            p = member.participant
            member.gone = True
            await self.relay.release(member.visit_id, p.peer_id, p.connection_id)
            member.outlet.close(1012)  # service restart: clients reconnect and resume
        self.local.clear()
        self._by_visit.clear()


class _DomainCall:
    """A transaction for a domain call; its refusals become protocol errors."""

    def __init__(self, services: Services) -> None:
        self._transaction = services.transaction()

    async def __aenter__(self) -> AsyncSession:
        return await self._transaction.__aenter__()

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        await self._transaction.__aexit__(kind, exc, tb)
        if isinstance(exc, APIError):
            raise ProtocolError(exc.message, field=exc.field, code=exc.code) from exc
        return False
