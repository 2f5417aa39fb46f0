"""A Python participant in a visit's room: the signaling protocol plus aiortc peers.

Used by the tests, by ``bench/`` and by ``mendwell probe``. aiortc cannot roll back an
offer or restart ICE, so this client says ``polite_capable: false``: it is the impolite
side of every pair with a browser and makes the first offer; between two such clients
the ``peer_id`` decides (docs/signaling.md, "Negotiation"). It ignores an offer that
collides with its own, answers every other one, and recovers from a failed connection
by building a new peer connection, never by restarting ICE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from signaling.peers import FrameMeter, add_candidate, mean_rgb, rtc_configuration

log = logging.getLogger("mendwell.signaling.client")

TrackFactory = Callable[[], list[MediaStreamTrack]]
# Closes after which reconnecting cannot help.
FINAL_CLOSE_CODES = frozenset({1000, 4401, 4403, 4404, 4409, 4410})


class ClientError(Exception):
    """The server refused or closed; the message says what and why."""


def sign_in(base_url: str, email: str, password: str, timeout: float = 10.0) -> str:
    """A session cookie value from ``POST /api/v1/session`` (blocking; run in a thread)."""
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise ClientError(f"the base URL must be http:// or https://, not {base_url!r}")
    body = json.dumps({"email": email, "password": password}).encode()
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        f"{base_url}/api/v1/session", data=body, method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            cookies = response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as exc:
        raise ClientError(f"sign-in refused ({exc.code}): {exc.read()[:200]!r}") from None
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        if name.strip() == "mendwell_session":
            return str(rest).split(";", 1)[0]
    raise ClientError("sign-in answered without a session cookie")


_SIGNALING_ATTRIBUTE = re.compile(r'data-signaling="([^"]+)"')


def signaling_base(base_url: str, cookie: str, visit_id: int, timeout: float = 10.0) -> str:
    """Where the visit's page opens signaling (its ``data-signaling``: the listener of
    its own, docs/signaling.md), read from the page as a browser would (blocking)."""
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise ClientError(f"the base URL must be http:// or https://, not {base_url!r}")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        f"{base_url}/visits/{visit_id}", headers={"Cookie": f"mendwell_session={cookie}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            page = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise ClientError(f"the visit page answered {exc.code}") from None
    found = _SIGNALING_ATTRIBUTE.search(page)
    if found is None:
        raise ClientError("the visit page does not say where its signaling is")
    return found.group(1)


@dataclass
class Received:
    """What arrived from one remote peer."""

    meter: FrameMeter = field(default_factory=FrameMeter)
    colour: tuple[float, float, float] | None = None
    first_frame_at: float | None = None
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)


class Link:
    """The peer connection with one other participant."""

    def __init__(self, client: Client, remote: str, polite: bool) -> None:
        self.client = client
        self.remote = remote
        self.polite = polite
        self.pc = RTCPeerConnection(rtc_configuration(client.ice_servers, relay=client.relay))
        self.pending: list[dict[str, Any] | None] = []
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        for track in client.make_tracks():
            self.pc.addTrack(track)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._spawn(self._consume(track))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            state = self.pc.connectionState
            if state == "connected":
                self.client.connected_at.setdefault(self.remote, time.monotonic())
                self.connected.set()
            elif state == "failed":
                self.failed.set()
                self._spawn(self.client._rebuild(self))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        await self._consume_into(track, self.client.received.setdefault(self.remote, Received()))

    @staticmethod
    async def _consume_into(track: MediaStreamTrack, received: Received) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                received.meter.tick(frame)
                if received.meter.frames % 5 == 1:
                    received.colour = mean_rgb(frame)
                if received.first_frame_at is None:
                    received.first_frame_at = time.monotonic()
                    received.first_frame.set()

    async def offer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        # aiortc gathers every candidate before this returns: they are in the SDP.
        await self.client.send_signal(self.remote, description={
            "type": "offer", "sdp": self.pc.localDescription.sdp})

    async def on_description(self, description: dict[str, Any]) -> None:
        kind = description["type"]
        if kind == "offer":
            if self.pc.signalingState == "have-local-offer":
                # A collision. The impolite side keeps its offer; a polite aiortc
                # cannot roll back, so it starts over from the remote offer.
                if not self.polite:
                    return
                await self.client._replace(self, description)
                return
            await self.pc.setRemoteDescription(RTCSessionDescription(**description))
            await self._flush_candidates()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.client.send_signal(self.remote, description={
                "type": "answer", "sdp": self.pc.localDescription.sdp})
        elif kind == "answer" and self.pc.signalingState == "have-local-offer":
            await self.pc.setRemoteDescription(RTCSessionDescription(**description))
            await self._flush_candidates()

    async def on_candidate(self, candidate: dict[str, Any] | None) -> None:
        if self.pc.remoteDescription is None:
            self.pending.append(candidate)
            return
        with contextlib.suppress(ValueError):
            await add_candidate(self.pc, candidate)

    async def _flush_candidates(self) -> None:
        pending, self.pending = self.pending, []
        for candidate in pending:
            with contextlib.suppress(ValueError):
                await add_candidate(self.pc, candidate)

    async def close(self) -> None:
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        # Shielded: a second close() waits on the first's future inside aiortc, and a
        # task cancelled while waiting there cancels that future, so the first close then
        # fails with InvalidStateError ("Task exception was never retrieved" at exit).
        await asyncio.shield(self.pc.close())


_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


class Client:
    """One participant: a signaling socket and a peer connection per other participant."""

    def __init__(self, url: str, *, cookie: str | None = None, guest_token: str | None = None,
                 peer_id: str | None = None, make_tracks: TrackFactory | None = None,
                 relay: bool = False, reconnect: bool = True,
                 ice_servers: list[dict[str, Any]] | None = None) -> None:
        self.url = url
        self.cookie = cookie
        self.guest_token = guest_token
        self.peer_id = peer_id or "py-" + secrets.token_hex(8)
        self.make_tracks: TrackFactory = make_tracks or list
        self.relay = relay
        self.reconnect = reconnect
        # From ``welcome`` unless given (a test may hand out deliberately bad ones).
        self._fixed_ice = ice_servers
        self.ice_servers: list[dict[str, Any]] = ice_servers or []
        self.welcome: dict[str, Any] | None = None
        self.welcomes = 0
        self.participants: list[dict[str, Any]] = []
        self.state = "new"
        self.links: dict[str, Link] = {}
        self.received: dict[str, Received] = {}
        self.connected_at: dict[str, float] = {}
        self.errors: list[dict[str, Any]] = []
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.admitted = asyncio.Event()
        self.joined = asyncio.Event()
        self.closed_code: int | None = None
        self.started_at = time.monotonic()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._presence_changed = asyncio.Event()
        self._changed = asyncio.Event()

    # --- connecting ------------------------------------------------------------------

    async def start(self, within: float = 10.0) -> dict[str, Any]:
        """Connect, say hello, and return ``welcome``; keeps running in the background."""
        self._task = asyncio.create_task(self._run(), name=f"client-{self.peer_id}")
        joined = asyncio.ensure_future(self.joined.wait())
        try:
            await asyncio.wait({self._task, joined}, timeout=within,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self.welcome is not None:
            return self.welcome
        if self._task.done():
            self._task.result()
            raise ClientError(f"closed before welcome (code {self.closed_code}, "
                              f"errors {self.errors})")
        raise TimeoutError(f"no welcome within {within}s")

    def _origin(self) -> str:
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return f"{scheme}://{parts.netloc}"

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopping:
            headers = {"Cookie": f"mendwell_session={self.cookie}"} if self.cookie else {}
            try:
                async with connect(self.url, additional_headers=headers, compression=None,
                                   origin=self._origin(),  # type: ignore[arg-type]
                                   max_size=2**20, open_timeout=10) as ws:
                    self._ws = ws
                    hello: dict[str, Any] = {"type": "hello", "peer_id": self.peer_id,
                                             "polite_capable": False}
                    if self.guest_token:
                        hello["guest_token"] = self.guest_token
                    await ws.send(json.dumps(hello))
                    delay = 0.5
                    async for raw in ws:
                        await self._on_message(json.loads(raw))
                    self.closed_code = ws.close_code
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                log.info("signaling socket lost: %s", exc)
                if self._ws is not None:
                    self.closed_code = self._ws.close_code
            finally:
                self._ws = None
            if self._stopping or not self.reconnect or self.closed_code in FINAL_CLOSE_CODES:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise ClientError("the signaling socket is not connected")
        await self._ws.send(json.dumps(message))

    async def send_signal(self, to: str, **body: Any) -> None:
        await self.send({"type": "signal", "to": to, **body})

    # --- what the server says --------------------------------------------------------

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        self.messages.put_nowait(message)
        self._changed.set()
        if kind == "welcome":
            self.welcome = message
            self.welcomes += 1
            self.state = message["state"]
            if self._fixed_ice is None:
                self.ice_servers = message["ice_servers"]
            if message.get("ice_transport_policy") == "relay":
                self.relay = True  # the clinic allows media through TURN only
            if self.state == "admitted":
                self.admitted.set()
            self.joined.set()
        elif kind == "presence":
            self.participants = message["participants"]
            self._presence_changed.set()
            await self._negotiate()
        elif kind == "admitted":
            self.state = "admitted"
            self.admitted.set()
        elif kind == "removed":
            self.state = "waiting"
            self.admitted.clear()
            await self._close_links()
        elif kind == "signal":
            await self._on_signal(message)
        elif kind == "ice-servers":
            if self._fixed_ice is None:
                self.ice_servers = message["ice_servers"]
        elif kind == "error":
            self.errors.append(message)
            log.info("server refused a message: %s", message)
        elif kind == "ended":
            self._stopping = True
            await self._close_links()

    def _others(self) -> dict[str, dict[str, Any]]:
        return {p["peer_id"]: p for p in self.participants if p["peer_id"] != self.peer_id}

    async def _negotiate(self) -> None:
        others = self._others()
        for gone in [peer for peer in self.links if peer not in others]:
            # A peer missing from presence may only be reconnecting its socket (a
            # network change, a server restart) while media still flows: keep a live
            # connection; it fails by itself if they are really gone.
            if self.links[gone].pc.connectionState != "connected":
                await self.links.pop(gone).close()
        if self.state != "admitted":
            return
        for peer, other in others.items():
            if other["state"] != "admitted" or peer in self.links:
                continue
            if other["polite"]:
                continue  # we are the polite side: the other makes the offer
            link = self.links[peer] = Link(self, peer, polite=False)
            await link.offer()

    async def _on_signal(self, message: dict[str, Any]) -> None:
        sender = message["from"]
        link = self.links.get(sender)
        description = message.get("description")
        if description is not None:
            if description["type"] == "rollback":
                return
            if link is not None and description["type"] == "offer" and \
                    self._ice_restart(link, description):
                # aiortc cannot restart ICE: answer from a new peer connection.
                await self.links.pop(sender).close()
                link = None
            if link is None:
                if description["type"] != "offer":
                    return
                other = self._others().get(sender)
                polite = bool(other["polite"]) if other else True
                link = self.links[sender] = Link(self, sender, polite=polite)
            await link.on_description(description)
        elif link is not None and "candidate" in message:
            # A `media` state (a browser's screen share, "Sound only") changes nothing
            # this peer sends or shows.
            await link.on_candidate(message.get("candidate"))

    @staticmethod
    def _ice_restart(link: Link, offer: dict[str, Any]) -> bool:
        current = link.pc.remoteDescription
        if current is None:
            return False
        before, after = _UFRAG.search(current.sdp), _UFRAG.search(offer["sdp"])
        return bool(before and after and before.group(1) != after.group(1))

    async def _rebuild(self, link: Link) -> None:
        """A failed connection is built again from scratch by the offering side."""
        if self.links.get(link.remote) is not link:
            return
        await self.links.pop(link.remote).close()
        if link.polite or self.state != "admitted" or self._stopping:
            return
        await asyncio.sleep(0.5)
        if link.remote in self._others() and link.remote not in self.links:
            fresh = self.links[link.remote] = Link(self, link.remote, polite=False)
            with contextlib.suppress(ClientError, ConnectionClosed):
                await fresh.offer()

    async def _replace(self, link: Link, offer: dict[str, Any]) -> None:
        await link.close()
        fresh = self.links[link.remote] = Link(self, link.remote, polite=True)
        await fresh.on_description(offer)

    async def _close_links(self) -> None:
        links, self.links = self.links, {}
        for link in links.values():
            await link.close()

    # --- for callers -----------------------------------------------------------------

    async def admit(self, peer_id: str) -> None:
        await self.send({"type": "admit", "peer_id": peer_id})

    async def wait_for_peer(self, where: Callable[[dict[str, Any]], bool],
                            within: float = 10.0) -> dict[str, Any]:
        """The first other participant matching ``where``, as presence shows them."""
        async with asyncio.timeout(within):
            while True:
                for other in self._others().values():
                    if where(other):
                        return other
                self._presence_changed.clear()
                await self._presence_changed.wait()

    async def wait_until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``condition()`` holds, checking after every message from the server."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_connected(self, peer_id: str, within: float = 10.0) -> float:
        """Seconds from start to the peer connection with ``peer_id`` being connected."""
        async with asyncio.timeout(within):
            while True:
                link = self.links.get(peer_id)
                if link is not None and link.connected.is_set():
                    return self.connected_at[peer_id] - self.started_at
                await asyncio.sleep(0.02)

    async def wait_frames(self, peer_id: str, count: int = 1, within: float = 10.0) -> Received:
        async with asyncio.timeout(within):
            while True:
                received = self.received.get(peer_id)
                if received is not None and received.meter.frames >= count and \
                        received.colour is not None:
                    return received
                await asyncio.sleep(0.02)

    async def leave(self) -> None:
        with contextlib.suppress(ClientError, ConnectionClosed):
            await self.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        self._stopping = True
        await self._close_links()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# --- the device check (``/ws/device-check``) ---------------------------------------------


@dataclass
class DeviceCheckResult:
    ready: dict[str, Any]
    stats: list[dict[str, Any]]
    echo: Received
    connected_after: float
    done: str | None = None  # the reason of the server's `done`, when waited for
    close_code: int | None = None


async def device_check(url: str, *, cookie: str | None = None, relay: bool = False,
                       track: MediaStreamTrack | None = None, seconds: float = 2.0,
                       within: float = 10.0, stop: bool = True) -> DeviceCheckResult:
    """Run a device check as a browser would: offer, get the echo, read the reports.
    With ``stop=False`` it never stops the check, as a tab left open would not, and
    waits for the server to end it."""
    from signaling.peers import ColourTrack

    started = time.monotonic()
    headers = {"Cookie": f"mendwell_session={cookie}"} if cookie else {}
    parts = urlsplit(url)
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    echo = Received()
    stats: list[dict[str, Any]] = []
    async with connect(url, additional_headers=headers, compression=None,
                       origin=origin) as ws:  # type: ignore[arg-type]
        async def next_message(kind: str) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(await ws.recv())
                if message["type"] == "error":
                    raise ClientError(f"{message['code']}: {message['message']}")
                if message["type"] == "stats":
                    stats.append(message)
                if message["type"] == kind:
                    return message

        async with asyncio.timeout(within):
            await ws.send(json.dumps({"type": "start", "relay": relay}))
            ready = await next_message("ready")
            pc = RTCPeerConnection(rtc_configuration(ready["ice_servers"], relay=relay))
            try:
                pc.addTrack(track or ColourTrack(width=640, height=480))

                @pc.on("track")
                def on_track(remote: MediaStreamTrack) -> None:
                    if remote.kind == "video":
                        consumer = Link._consume_into(remote, echo)
                        tasks.add(asyncio.ensure_future(consumer))

                tasks: set[asyncio.Future[None]] = set()
                await pc.setLocalDescription(await pc.createOffer())
                await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
                answer = await next_message("answer")
                await pc.setRemoteDescription(RTCSessionDescription(**answer))
                await echo.first_frame.wait()
                connected_after = time.monotonic() - started
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline or not stats:
                    await next_message("stats")
                if stop:
                    await ws.send(json.dumps({"type": "stop"}))
                done = await next_message("done")
                await ws.wait_closed()
            finally:
                for task in tasks:
                    task.cancel()
                await pc.close()
    return DeviceCheckResult(ready, stats, echo, connected_after, done["reason"],
                             ws.close_code)
