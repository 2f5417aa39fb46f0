"""Visit signaling on its own listener: ``/ws/visits/{visit_id}`` served by picows.

Why not through uvicorn like the rest of the app: measured side by side with PeerJS
(docs/performance.md, "Signaling on public APIs only"), uvicorn's WebSocket transport
alone costs more CPU per relayed message than the whole PeerJS server, and a relay
through plain ASGI stayed at 1.2x PeerJS's p99 and 1.6x its CPU. picows hands each frame
to a callback inside the transport's ``data_received``, through its documented
``WSListener`` API, at about half PeerJS's CPU. The HTTP app, ``/ws/events`` and the
device check stay on uvicorn; ``mendwell serve`` runs both in one event loop and one
process, so the rooms, the relay and the services are shared as before.

One message path. Every frame of a socket goes ``on_ws_frame`` → ``_received`` (rate
limit) → ``Rooms.handle``. What ``handle`` can do at once it does inside the callback
(a ping, a signal to a member of this instance, ICE servers); what needs the database or
Redis it returns as an awaitable, and the socket's one worker task awaits it. While the
worker has anything to do, later frames queue behind it, so a member's messages are
acted on in the order they were sent. Authentication (the session cookie, the guest
token of ``hello``) and joining run in the worker too: a socket is accepted first and
refused afterwards with an ``error`` and a close code, because a browser cannot read
why an upgrade was refused.

Outgoing messages are written straight into the transport (``push`` never waits). A
client that stops reading lets the transport's write buffer grow; past
``WRITE_LIMIT_BYTES`` it is too slow to take part in a call and is closed (4408).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from server import audit, guests
from server.access import access_visit_room
from server.auth import COOKIE_NAME, Current, load_session
from server.errors import APIError, Forbidden, NotFound
from server.health import dependency_down
from server.http import MAX_ID, same_site_socket
from server.middleware import cookie_value
from server.models import Visit
from server.visits import ENDED
from signaling import protocol
from signaling.protocol import Hello, InvalidState, ProtocolError, RateLimiter
from signaling.rooms import Identity, Member

if TYPE_CHECKING:
    from signaling.hub import Hub

log = logging.getLogger("mendwell.signaling")

ROUTE = "/ws/visits/{visit_id}"
PATH = re.compile(r"/ws/visits/([^/?#]*)")
# Past the protocol's 64 KiB a message is answered with an error and the socket kept;
# this is the ceiling of a whole message, fragments included (1009 beyond it).
HARD_MAX_BYTES = 1024 * 1024
# About 256 offers of 4 KiB queued for a client that does not read.
WRITE_LIMIT_BYTES = 1024 * 1024
READ_BUFFER_BYTES = 2048
# How long a client gets to answer our close frame before the connection is closed.
CLOSE_WAIT_SECONDS = 2.0
# Shutdown: how long the sockets' workers get to finish after their sockets closed.
CLOSE_SECONDS = 5.0

_TEXT = WSMsgType.TEXT
_OPEN = object()   # the worker's first step: who is this (the session cookie)
_GONE = object()   # the socket closed: leave the room


def _code(code: int) -> WSCloseCode:
    # picows types close codes with its enum of the RFC's codes; the 4xxx range is the
    # application's own (RFC 6455, 7.4.2) and goes through as the number it is.
    return cast(WSCloseCode, code)


def _sendable(code: int) -> bool:
    return 3000 <= code <= 4999 or (1000 <= code <= 1014 and code not in (1004, 1005, 1006))


class SignalingListener:
    """The listening socket, and every visit socket it accepted (closed on shutdown)."""

    def __init__(self, hub: Hub, *, http_port: int | None = None) -> None:
        self.hub = hub
        self.services = hub.services
        self.http_port = http_port
        self.port = 0
        self.sockets: set[VisitSocket] = set()
        self._server: asyncio.Server | None = None
        settings = hub.services.settings
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: a free port); returns the port."""
        await self.hub.start()
        settings = self.services.settings
        # Heartbeats: a socket silent for a while is pinged, and dropped when the pong
        # does not come (a phone whose network went). picows waits no longer for the
        # pong than it waited before pinging; both are half of interval + timeout, so
        # a dead peer is noticed within the same time as on the HTTP app's sockets.
        heartbeat = (settings.ws_ping_interval_seconds + settings.ws_ping_timeout_seconds) / 2
        self._server = await ws_create_server(
            self._accept, host, port,
            websocket_handshake_timeout=5,
            enable_auto_ping=True,
            auto_ping_idle_timeout=heartbeat,
            auto_ping_reply_timeout=heartbeat,
            max_frame_size=HARD_MAX_BYTES,
            # Grown as a bigger message needs it; most are ICE candidates of a few
            # hundred bytes, and thousands of sockets sit idle (16 KiB each by default).
            read_buffer_init_size=READ_BUFFER_BYTES,
            # The event loop's own transports (uvloop under `mendwell serve`): measured,
            # aiofastnet's cost 5.7 kB more per idle socket for no gain in the relay.
            use_aiofastnet=False,
            logger_name="signaling",
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, request: WSUpgradeRequest) -> VisitSocket | None:
        match = PATH.fullmatch(request.path.decode("latin-1").split("?", 1)[0])
        if match is None:
            return None  # 404: the other WebSockets are the HTTP app's
        return VisitSocket(self, match.group(1))

    def same_origin(self, origin: str | None, host: str) -> bool:
        """The site's own pages, which are served on the HTTP port (server.http)."""
        return same_site_socket(origin, host, self.services.settings.base_url,
                                http_port=self.http_port)

    def client_ip(self, transport: WSTransport) -> str:
        """The peer's address, or what a trusted proxy forwarded (MENDWELL_TRUSTED_PROXIES;
        the same rule as the HTTP app's: the right-most address no trusted proxy added)."""
        peer = transport.underlying_transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "unknown"
        if not self._trusted or not self._is_trusted(ip):
            return ip[:64]
        forwarded = transport.request.headers.get("x-forwarded-for")
        if not forwarded:
            return ip[:64]
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            if not self._is_trusted(hop):
                return hop[:64]
        return ip[:64]

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    async def close(self) -> None:
        """Stop accepting, close every socket (1012: clients reconnect and resume), and
        let their workers finish, for at most ``CLOSE_SECONDS``. A client that does not
        answer the close in ``CLOSE_WAIT_SECONDS`` (one that stopped reading) is cut off."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for socket in list(self.sockets):
            socket.close(protocol.CLOSE_SERVICE_RESTART)
        transports = [s.transport for s in self.sockets
                      if s.transport is not None and not s.transport.is_disconnected]
        if transports:
            await asyncio.wait([asyncio.ensure_future(t.wait_disconnected())
                                for t in transports], timeout=CLOSE_WAIT_SECONDS + 0.5)
            for transport in transports:
                if not transport.is_disconnected:
                    transport.disconnect(graceful=False)
        workers = [s.worker for s in self.sockets if s.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=CLOSE_SECONDS)


class VisitSocket(WSListener):
    """One visit signaling socket: its reader (frames in) and its outlet (messages out)."""

    # Thousands are open at once, idle most of the time: no __dict__ each.
    __slots__ = ("_close_timer", "_connection_id", "_fragment_size", "_fragment_type",
                 "_fragments", "_hello_timer", "_limiter", "_loop", "_queue", "_stopped", "closing",
                 "identity", "ip", "listener", "member", "raw_id", "rooms", "transport",
                 "visit_id", "worker")

    def __init__(self, listener: SignalingListener, raw_id: str) -> None:
        self.listener = listener
        self.rooms = listener.hub.rooms
        self.raw_id = raw_id
        self.visit_id = 0
        self.transport: WSTransport | None = None
        self.ip = "unknown"
        self.identity: Identity | None = None
        self.member: Member | None = None
        # closing: nothing more is sent (either side began the close). _stopped: we
        # closed it, and what it sent since is not acted on; what a client sent before
        # closing itself is (a leave, then the tab closes).
        self.closing = False
        self._stopped = False
        self.worker: asyncio.Task[None] | None = None
        # What waits for the worker; created when something does (an idle socket keeps
        # no deque, 600 bytes each).
        self._queue: deque[object] | None = None
        self._limiter = RateLimiter()
        self._fragments: list[bytes] | None = None
        self._fragment_type = _TEXT
        self._fragment_size = 0
        self._hello_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._connection_id = uuid.uuid4().hex

    # --- the outlet (signaling.rooms.Outlet) -----------------------------------------

    def push(self, message: dict[str, Any]) -> None:
        transport = self.transport
        if self.closing or transport is None:
            return
        if transport.underlying_transport.get_write_buffer_size() > WRITE_LIMIT_BYTES:
            self.close(protocol.CLOSE_TOO_SLOW)
            return
        transport.send(_TEXT, orjson.dumps(message))

    def close(self, code: int) -> None:
        """Send the close frame after what was pushed; the connection closes when the
        client answers it, or after ``CLOSE_WAIT_SECONDS`` (RFC 6455, 7.1.1: a server
        that closes TCP with the client's frames still unread resets the connection,
        and the client never reads the close code)."""
        if self.closing:
            return
        self.closing = self._stopped = True
        self._stop_hello_timer()
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            transport.send_close(_code(code))
            self._close_timer = self._loop.call_later(CLOSE_WAIT_SECONDS, transport.disconnect)
        if self.member is not None:
            # The room goes on without it now, not when a client that stopped reading
            # (4408) lets the connection finish closing.
            self._later(_GONE)

    # --- picows callbacks --------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.listener.sockets.add(self)
        headers = transport.request.headers
        self.ip = self.listener.client_ip(transport)
        if not self.listener.same_origin(headers.get("origin"), headers.get("host", "")):
            self.refuse(protocol.CLOSE_FORBIDDEN, "forbidden",
                        "Connections from another site are refused.")
            return
        raw = self.raw_id
        self.visit_id = int(raw) if raw.isdigit() and len(raw) < 19 else 0
        if not 0 < self.visit_id <= MAX_ID:
            self.refuse(protocol.CLOSE_NOT_FOUND, "not_found",
                        f"There is no visit {raw[:20]}.")
            return
        self._hello_timer = self._loop.call_later(protocol.HELLO_TIMEOUT_SECONDS,
                                                  self._hello_timeout)
        self._later(_OPEN)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            self.closing = True
            if not transport.is_close_frame_sent:
                code = int(cast(int, frame.get_close_code()))  # an IntEnum, or a bare 4xxx
                # Echo the client's code (RFC 6455, 5.5.1); one that may not be sent
                # (none, 1005, 1006...) is answered with a normal closure.
                transport.send_close(_code(code if _sendable(code) else 1000))
            transport.disconnect()
            return
        if kind is WSMsgType.PING or kind is WSMsgType.PONG:
            return  # pongs are picows's (enable_auto_pong); pings answer its heartbeat
        if self.closing:
            return
        if kind is WSMsgType.CONTINUATION or not frame.fin:
            payload = self._assemble(kind, frame)
            if payload is None:
                return
            kind = self._fragment_type
        else:
            payload = frame.get_payload_as_bytes()
        if kind is not _TEXT:
            self._received(None)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self.close(1007)  # RFC 6455, 8.1: a text message must be UTF-8
            return
        self._received(text)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closing = True
        self._stop_hello_timer()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._later(_GONE)

    # --- frames in -----------------------------------------------------------------------

    def _assemble(self, kind: WSMsgType, frame: WSFrame) -> bytes | None:
        """A message sent in fragments: the whole message once its last frame is in."""
        if kind is not WSMsgType.CONTINUATION:
            if self._fragments is not None:
                self.close(1002)  # a new message before the last one ended
                return None
            self._fragments, self._fragment_type, self._fragment_size = [], kind, 0
        elif self._fragments is None:
            self.close(1002)  # a continuation of nothing
            return None
        self._fragment_size += frame.payload_size
        if self._fragment_size > HARD_MAX_BYTES:
            self.close(1009)
            return None
        self._fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return None
        payload = b"".join(self._fragments)
        self._fragments = None
        return payload

    def _received(self, text: str | None) -> None:
        """One message: acted on now when nothing of this socket is waiting, else queued."""
        if not self._limiter.allow(self._loop.time()):
            self._rate_limited()
            return
        member = self.member
        if self.worker is not None or member is None or text is None:
            self._later(text)
            return
        try:
            pending = self.rooms.handle(member, protocol.parse(text))
        except ProtocolError as exc:
            self.push(exc.to_json())
            return
        if pending is not None:
            self._later(pending)

    def _later(self, item: object) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if self.worker is None:
            self.worker = asyncio.create_task(self._work(), name="signaling-socket")

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue:
                item = queue.popleft()
                if self._stopped and item is not _GONE:
                    # Refused or closed by us: what it sent since is not acted on.
                    if isinstance(item, Coroutine):
                        item.close()
                    continue
                try:
                    if item is _GONE:
                        await self._leave()
                    elif item is _OPEN:
                        await self._open()
                    elif isinstance(item, str) or item is None:
                        await self._act(item)
                    else:
                        await cast(Awaitable[None], item)
                except ProtocolError as exc:
                    self.push(exc.to_json())
                except Exception as exc:
                    if dependency_down(exc) is None:
                        log.exception("a signaling socket failed")
                        self.close(1011)
                    else:
                        self._unavailable(exc)
        finally:
            self.worker = None
            self._queue = None

    async def _act(self, text: str | None) -> None:
        if text is None:
            raise protocol.InvalidMessage("Send JSON in text frames.", field="frame")
        parsed = protocol.parse(text)
        if self.member is not None:
            pending = self.rooms.handle(self.member, parsed)
            if pending is not None:
                await pending
            return
        if not isinstance(parsed, Hello):
            raise InvalidState("Send hello first.", field="type")
        if self.identity is None:
            self.identity = await self._guest_identity(parsed.guest_token)
            if self.identity is None:
                return
        self.member = await self.rooms.join(self.visit_id, self.identity, parsed, self,
                                            self._connection_id)
        self._stop_hello_timer()

    # --- who is on the other end ---------------------------------------------------------

    async def _open(self) -> None:
        """The signed-in user's identity, from the session cookie (none: a guest, who
        names their invitation in ``hello``)."""
        assert self.transport is not None
        cookie = cookie_value(self.transport.request.headers.getall("cookie", []), COOKIE_NAME)
        current = await load_session(self.listener.services, cookie)
        if current is None:
            return
        self.identity = await self._user_identity(current)
        if self.identity is not None and not self.closing:
            self.listener.hub.watch(self, current, idle=False)

    async def _user_identity(self, current: Current) -> Identity | None:
        services = self.listener.services
        actor = current.actor(self.ip)
        try:
            async with services.transaction() as session:
                visit = await access_visit_room(session, actor, self.visit_id)
                status = visit.status
                if status not in ENDED:
                    audit.record(session, actor, "join", "visit", visit.id,
                                 patient_id=visit.patient_id)
        except NotFound as exc:
            self.refuse(protocol.CLOSE_NOT_FOUND, "not_found", exc.message)
            return None
        except Forbidden as exc:
            await self._record_refusal(current, exc)
            self.refuse(protocol.CLOSE_FORBIDDEN, "forbidden", exc.message)
            return None
        if status in ENDED:
            self.refuse(protocol.CLOSE_ENDED, "visit_ended",
                        f'This visit is over (state "{status.value}").')
            return None
        return Identity.of_user(actor, current.session.id)

    async def _record_refusal(self, current: Current, exc: APIError) -> None:
        if exc.audit is None:
            return
        async with self.listener.services.transaction() as session:
            audit.record_refusal(session, current.actor(self.ip), exc.audit,
                                 f"/ws/visits/{self.visit_id}")

    async def _guest_identity(self, token: str | None) -> Identity | None:
        if token is None:
            self.refuse(protocol.CLOSE_UNAUTHENTICATED, "unauthenticated",
                        "Sign in, or open the invitation link again.")
            return None
        services = self.listener.services
        async with services.transaction() as session:
            guest = await guests.guest_for_token(session, self.visit_id, token,
                                                 now=services.clock.now())
            visit_over = False
            if guest is not None:
                visit = await session.get(Visit, self.visit_id)
                visit_over = visit is None or visit.status in ENDED
                if not visit_over and visit is not None:
                    audit.record(session, None, "join", "visit", self.visit_id,
                                 patient_id=visit.patient_id, ip=self.ip, guest_id=guest.id)
        if guest is None:
            self.refuse(protocol.CLOSE_UNAUTHENTICATED, "unauthenticated",
                        "This invitation is not valid any more. Ask the care team for a new one.")
            return None
        if visit_over:
            self.refuse(protocol.CLOSE_ENDED, "visit_ended", "This visit is over.")
            return None
        return Identity.of_guest(guest)

    # --- endings -------------------------------------------------------------------------

    def refuse(self, code: int, error: str, message: str) -> None:
        self.push(protocol.error(error, message))
        self.close(code)

    def _hello_timeout(self) -> None:
        self._hello_timer = None
        if self.member is None and not self.closing:
            self.refuse(protocol.CLOSE_BAD_HELLO, "hello_timeout", "Send hello first.")

    def _stop_hello_timer(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    async def _leave(self) -> None:
        """The socket closed: give its place in the room up (unless shutdown already did)."""
        self.listener.hub.unwatch(self)
        self.listener.sockets.discard(self)
        member, self.member = self.member, None
        if member is None or member.gone:
            return
        try:
            await self.rooms.drop(member, deliberate=False)
        except Exception as exc:
            if dependency_down(exc) is None:
                raise
            # Its place in Redis goes stale and is pruned (signaling/relay.py), or is
            # taken back when the client resumes with the same peer_id.
            log.warning("leaving a room: the %s is unavailable (%s)",
                        dependency_down(exc), type(exc).__name__)

    def _unavailable(self, exc: Exception) -> None:
        """Redis (the rooms) or the database went away under this socket: say so and
        close with 1013; the client comes back with backoff and resumes its place."""
        log.warning("closing a signaling socket: the %s is unavailable (%s)",
                    dependency_down(exc), type(exc).__name__)
        self.refuse(protocol.CLOSE_TRY_AGAIN_LATER, "unavailable",
                    "The server is briefly unavailable; reconnecting.")

    def _rate_limited(self) -> None:
        """Answer a message over the rate: once to say so, then by closing the socket."""
        limiter = self._limiter
        if limiter.exhausted:
            self.refuse(protocol.CLOSE_RATE_LIMITED, "rate_limited", "Too many messages; closing.")
        elif limiter.refused == 1:
            self.push(protocol.error(
                "rate_limited", f"Slow down: at most {protocol.RATE_PER_SECOND:g} "
                "messages a second. Messages are being dropped."))



