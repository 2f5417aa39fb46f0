"""The WebSocket endpoints: ``/ws/visits/{visit_id}`` (signaling) and ``/ws/events``.

They parse, check access and hand over to the rooms or the bus. Refusals are sent after
accepting the socket, as an ``error`` and then a close code (4401, 4403, ...), because a
browser cannot read the reason for an upgrade that was refused at the HTTP level.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket

from server import audit, guests
from server.access import access_visit_room
from server.auth import Current
from server.errors import APIError, Forbidden, NotFound
from server.health import dependency_down
from server.http import MAX_ID, client_ip, current_of, services_of
from server.models import Visit
from server.services import Services
from server.visits import ENDED
from signaling import protocol
from signaling.hub import Hub, hub_of
from signaling.outlet import SocketOutlet
from signaling.protocol import Hello, InvalidState, ProtocolError, RateLimiter
from signaling.rooms import Identity, Member

log = logging.getLogger("mendwell.signaling")


def same_origin(websocket: WebSocket, base_url: str) -> bool:
    """Browsers always send ``Origin`` on a WebSocket; it must be our own site.

    Cookies ride along on cross-site WebSocket upgrades (CSRF does not protect them), so
    without this check any page on the web could open a visit's socket as its visitor.
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: it had to hold the cookie itself
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc in (websocket.headers.get("host", ""),
                                       urlsplit(base_url).netloc)


async def refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    outlet = SocketOutlet(websocket)
    outlet.push(protocol.error(error, message))
    outlet.close(code)
    await outlet.finish()


async def open_socket(websocket: WebSocket, hub: Hub) -> bool:
    """Start the hub and accept the socket; refuse (and say so) a cross-site one.

    The socket is accepted first because a browser cannot read why an upgrade was
    refused; it can read an ``error`` message followed by a close code.
    """
    await hub.start()
    await websocket.accept()
    if same_origin(websocket, hub.services.settings.base_url):
        return True
    await refuse(websocket, protocol.CLOSE_FORBIDDEN, "forbidden",
                 "Connections from another site are refused.")
    return False


async def _record_refusal(services: Services, websocket: WebSocket, current: Current,
                          exc: APIError) -> None:
    if exc.audit is None:
        return
    async with services.transaction() as session:
        audit.record(session, current.actor(client_ip(websocket)), exc.audit["action"],
                     exc.audit["resource_type"], exc.audit["resource_id"],
                     patient_id=exc.audit["patient_id"], outcome=audit.DENIED,
                     path=websocket.url.path)


async def _user_identity(websocket: WebSocket, services: Services, current: Current,
                         visit_id: int) -> Identity | None:
    """The signed-in user's identity in this visit's room, or None after refusing."""
    actor = current.actor(client_ip(websocket))
    try:
        async with services.transaction() as session:
            visit = await access_visit_room(session, actor, visit_id)
            status = visit.status
            if status not in ENDED:
                audit.record(session, actor, "join", "visit", visit.id,
                             patient_id=visit.patient_id)
    except NotFound as exc:
        await refuse(websocket, protocol.CLOSE_NOT_FOUND, "not_found", exc.message)
        return None
    except Forbidden as exc:
        await _record_refusal(services, websocket, current, exc)
        await refuse(websocket, protocol.CLOSE_FORBIDDEN, "forbidden", exc.message)
        return None
    if status in ENDED:
        await refuse(websocket, protocol.CLOSE_ENDED, "visit_ended",
                     f'This visit is over (state "{status.value}").')
        return None
    return Identity.of_user(actor, current.session.id)


async def _guest_identity(websocket: WebSocket, services: Services, visit_id: int,
                          token: str | None) -> Identity | None:
    if token is None:
        await refuse(websocket, protocol.CLOSE_UNAUTHENTICATED, "unauthenticated",
                     "Sign in, or open the invitation link again.")
        return None
    async with services.transaction() as session:
        guest = await guests.guest_for_token(session, visit_id, token,
                                             now=services.clock.now())
        visit_over = False
        if guest is not None:
            visit = await session.get(Visit, visit_id)
            visit_over = visit is None or visit.status in ENDED
            if not visit_over and visit is not None:
                audit.record(session, None, "join", "visit", visit_id,
                             patient_id=visit.patient_id, ip=client_ip(websocket),
                             guest_id=guest.id)
    if guest is None:
        await refuse(websocket, protocol.CLOSE_UNAUTHENTICATED, "unauthenticated",
                     "This invitation is not valid any more. Ask the care team for a new one.")
        return None
    if visit_over:
        await refuse(websocket, protocol.CLOSE_ENDED, "visit_ended", "This visit is over.")
        return None
    return Identity.of_guest(guest)


async def visit_room(websocket: WebSocket) -> None:
    services = services_of(websocket)
    hub = hub_of(websocket)
    if not await open_socket(websocket, hub):
        return
    raw_id = str(websocket.path_params["visit_id"])
    visit_id = int(raw_id) if raw_id.isdigit() and len(raw_id) < 19 else 0
    if not 0 < visit_id <= MAX_ID:
        await refuse(websocket, protocol.CLOSE_NOT_FOUND, "not_found",
                     f"There is no visit {raw_id[:20]}.")
        return
    current = current_of(websocket)
    identity = None
    if current is not None:
        identity = await _user_identity(websocket, services, current, visit_id)
        if identity is None:
            return
    outlet = SocketOutlet(websocket)
    if current is not None:
        hub.watch(outlet, current, idle=False)
        # Everything needed is in the identity now; the session's database rows would
        # otherwise stay in memory for as long as the socket is open.
        websocket.scope["state"].pop("current", None)
        current = None
    connection_id = uuid.uuid4().hex
    limiter = RateLimiter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + protocol.HELLO_TIMEOUT_SECONDS
    member: Member | None = None
    rooms = hub.rooms

    try:
        while not outlet.closing:
            try:
                if member is None:
                    async with asyncio.timeout_at(deadline):
                        message = await websocket.receive()
                else:
                    message = await websocket.receive()
            except TimeoutError:
                outlet.push(protocol.error("hello_timeout", "Send hello first."))
                outlet.close(protocol.CLOSE_BAD_HELLO)
                break
            if message["type"] == "websocket.disconnect":
                break
            if not limiter.allow(loop.time()):
                _rate_limited(limiter, outlet)
                continue
            try:
                text = message.get("text")
                if text is None:
                    raise protocol.InvalidMessage("Send JSON in text frames.", field="frame")
                parsed = protocol.parse(text)
                if member is not None:
                    await rooms.handle(member, parsed)
                    continue
                if not isinstance(parsed, Hello):
                    raise InvalidState("Send hello first.", field="type")
                if identity is None:
                    identity = await _guest_identity(websocket, services, visit_id,
                                                     parsed.guest_token)
                    if identity is None:
                        return
                member = await rooms.join(visit_id, identity, parsed, outlet, connection_id)
            except ProtocolError as exc:
                outlet.push(exc.to_json())
    except Exception as exc:
        if dependency_down(exc) is None:
            raise
        _unavailable(outlet, exc)
    finally:
        hub.unwatch(outlet)
        if member is not None:
            try:
                await rooms.drop(member, deliberate=False)
            except Exception as exc:
                if dependency_down(exc) is None:
                    raise
                # Its place in Redis goes stale and is pruned (signaling/relay.py), or
                # is taken back when the client resumes with the same peer_id.
                if not outlet.closing:
                    _unavailable(outlet, exc)
    await outlet.finish()


def _unavailable(outlet: SocketOutlet, exc: Exception) -> None:
    """Redis (the rooms) or the database went away under this socket: say so and close
    with 1013; the client comes back with backoff and resumes its place."""
    log.warning("closing a signaling socket: the %s is unavailable (%s)",
                dependency_down(exc), type(exc).__name__)
    outlet.push(protocol.error("unavailable", "The server is briefly unavailable; "
                               "reconnecting."))
    outlet.close(protocol.CLOSE_TRY_AGAIN_LATER)


def _rate_limited(limiter: RateLimiter, outlet: SocketOutlet) -> None:
    """Answer a message over the rate: once to say so, then by closing the socket."""
    if limiter.exhausted:
        outlet.push(protocol.error("rate_limited", "Too many messages; closing."))
        outlet.close(protocol.CLOSE_RATE_LIMITED)
    elif limiter.refused == 1:
        outlet.push(protocol.error(
            "rate_limited", f"Slow down: at most {protocol.RATE_PER_SECOND:g} "
            "messages a second. Messages are being dropped."))


async def events(websocket: WebSocket) -> None:
    """Live dashboard events for the signed-in user (docs/signaling.md, "/ws/events")."""
    services = services_of(websocket)
    hub = hub_of(websocket)
    if not await open_socket(websocket, hub):
        return
    current = current_of(websocket)
    if current is None:
        await refuse(websocket, protocol.CLOSE_UNAUTHENTICATED, "unauthenticated", "Sign in.")
        return
    outlet = SocketOutlet(websocket)
    hub.watch(outlet, current, idle=True)
    limiter = RateLimiter()
    loop = asyncio.get_running_loop()
    async with services.bus.subscribe(current.user.id) as queue:
        outlet.push({"type": "subscribed", "user_id": current.user.id})
        forwarder = asyncio.create_task(_forward(queue, outlet))
        try:
            while not outlet.closing:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not limiter.allow(loop.time()):
                    if limiter.exhausted:
                        outlet.close(protocol.CLOSE_RATE_LIMITED)
                    continue
                try:
                    text = message.get("text")
                    if text is None:
                        raise protocol.InvalidMessage("Send JSON in text frames.", field="frame")
                    if protocol.decode(text)["type"] != "ping":
                        raise protocol.InvalidMessage("Only ping is accepted here.", field="type")
                    outlet.push({"type": "pong"})
                except ProtocolError as exc:
                    outlet.push(exc.to_json())
        finally:
            hub.unwatch(outlet)
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
    await outlet.finish()


async def _forward(queue: asyncio.Queue[dict[str, Any]], outlet: SocketOutlet) -> None:
    while True:
        outlet.push(await queue.get())
