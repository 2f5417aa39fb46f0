"""The signaling side of one running app: relay, rooms, aiortc peers, watched sessions.

Created on first use and kept on ``app.state``; ``close`` (from the app's lifespan)
closes every socket and peer connection of this instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from server.auth import Current, idle_timeout
from server.models import AuthSession, User
from server.services import Services
from signaling import protocol
from signaling.relay import Relay, make_relay
from signaling.rooms import Outlet, Rooms

if TYPE_CHECKING:
    from signaling.listener import SignalingListener

log = logging.getLogger("mendwell.signaling")


class Closable(Protocol):
    async def close(self) -> None: ...


@dataclass(slots=True)
class _Watched:
    session_id: int
    idle: bool


class Hub:
    # How often long-lived sockets are checked against their sessions: a socket must
    # not outlive a sign-out or an expired session by more than this.
    session_check_seconds = 30.0

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.relay: Relay = make_relay(settings.redis_url.get_secret_value(),
                                       settings.redis_namespace)
        self.rooms = Rooms(services, self.relay)
        self.peers: set[Closable] = set()      # aiortc peers, closed on shutdown
        self.device_checks: set[Closable] = set()
        self._watched: dict[Outlet, _Watched] = {}
        self.listener: SignalingListener | None = None  # visit signaling (signaling.listener)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            await self.relay.start(self.rooms.on_envelope)
            self._tasks.append(asyncio.create_task(self._check_sessions(),
                                                   name="signaling-sessions"))
            self._started = True

    async def listen(self, host: str, port: int, *, http_port: int | None = None) -> int:
        """Serve visit signaling on ``host``:``port`` (0: any free port); returns the port.
        ``http_port``: where the pages are served, whose origin is this listener's too."""
        from signaling.listener import SignalingListener

        if self.listener is None:
            self.listener = SignalingListener(self, http_port=http_port)
            await self.listener.start(host, port)
        return self.listener.port

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for peer in list(self.peers):
            await peer.close()
        self.peers.clear()
        if self._started:
            await self.rooms.close()
            await self.relay.close()
        self._started = False

    # --- sessions behind long-lived sockets --------------------------------------------

    def watch(self, outlet: Outlet, current: Current, *, idle: bool) -> None:
        """Close ``outlet`` when its session ends (``idle``: also on idle logoff).

        A visit in progress is activity even when nobody clicks, so signaling sockets
        are not held to the idle timeout; dashboards (``/ws/events``) are, because a
        screen of patients left open must go dark with the idle logoff.
        """
        self._watched[outlet] = _Watched(current.session.id, idle)

    def unwatch(self, outlet: Outlet) -> None:
        self._watched.pop(outlet, None)

    async def _check_sessions(self) -> None:
        while True:
            await asyncio.sleep(self.session_check_seconds)
            try:
                await self.check_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking the sessions of open sockets failed")

    async def check_sessions(self) -> None:
        if not self._watched:
            return
        # Only the sockets watched now are judged: one that opens while the query runs
        # has a session this query did not read, and must not be closed for that.
        judged = list(self._watched.items())
        ids = {w.session_id for _o, w in judged}
        now = self.services.clock.now()
        live, live_busy = set(), set()
        async with self.services.transaction() as session:
            rows = await session.execute(
                select(AuthSession.id, AuthSession.ended_at, AuthSession.expires_at,
                       AuthSession.last_seen_at, User.role, User.is_active)
                .join(User, User.id == AuthSession.user_id).where(AuthSession.id.in_(ids)))
            for sid, ended, expires, seen, role, active in rows:
                if ended is not None or not active or now >= expires:
                    continue
                live_busy.add(sid)
                if now - seen < idle_timeout(self.services, role):
                    live.add(sid)
        for outlet, watched in judged:
            if watched.session_id in (live if watched.idle else live_busy) or \
                    self._watched.get(outlet) is not watched:
                continue
            del self._watched[outlet]
            outlet.push(protocol.error("session_ended", "Your session has ended. Sign in again."))
            outlet.close(protocol.CLOSE_UNAUTHENTICATED)


def hub_of(conn: HTTPConnection) -> Hub:
    return hub_for(conn.app)


def hub_for(app: Starlette) -> Hub:
    state = app.state
    hub: Hub | None = getattr(state, "signaling", None)
    if hub is None:
        hub = Hub(state.services)
        state.signaling = hub
    return hub


def signaling_base(app: Starlette, host: str, *, secure: bool) -> str:
    """Where a browser that loaded a page from ``host`` opens visit signaling:
    MENDWELL_SIGNALING_URL (behind a proxy that routes ``/ws/visits/``), else the same
    host name at the listener's port; empty when this app has no listener (tests that
    render pages without serving sockets)."""
    public: str = app.state.services.settings.signaling_url
    if public:
        return public.rstrip("/")
    hub: Hub | None = getattr(app.state, "signaling", None)
    if hub is None or hub.listener is None:
        return ""
    hostname = urlsplit(f"//{host}").hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6
    return f"{'wss' if secure else 'ws'}://{hostname}:{hub.listener.port}"


async def listen(app: Starlette, host: str, port: int, *, http_port: int | None = None) -> int:
    """Serve ``app``'s visit signaling on its own listener; returns the port."""
    return await hub_for(app).listen(host, port, http_port=http_port)


async def close(app: Starlette) -> None:
    """Close this instance's signaling (the app's lifespan calls this on shutdown)."""
    hub: Hub | None = getattr(app.state, "signaling", None)
    if hub is not None:
        await hub.close()


__all__ = ["Hub", "close", "hub_for", "hub_of", "listen", "signaling_base"]
