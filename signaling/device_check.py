"""``/ws/device-check``: the pre-call check with an aiortc echo peer on the server.

The browser offers its camera and microphone; the server answers and sends the video
back at reduced resolution (and the audio as it came), so the patient sees their own
camera come back through the server over the real network path, TURN included when
``relay`` is asked for. Every second the server reports what it receives, what it sends
back and the round-trip time. The page ends its check by itself after
``device_check_seconds``; the server ends the echo ``device_check_max_seconds`` after
``start`` whatever the page does, so a tab left open (or a script) never holds a slot for
long. The protocol is in docs/signaling.md ("Device check").

An echoed stream costs a real share of a core, so checks are capped per instance
(``MENDWELL_DEVICE_CHECK_LIMIT``); beyond the cap the page is told to check locally.
One person (a user, or a guest's invitation) holds at most one of those slots: a new
check of theirs takes the place of the one already running, so reloading the page, or
a script opening many, never takes a second slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import anyio
import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.stats import RTCRemoteInboundRtpStreamStats
from starlette.websockets import WebSocket

from server import guests
from server.guests import Guest
from server.http import MAX_ID, current_of, services_of
from server.services import Services
from signaling import protocol
from signaling.endpoint import open_socket, refuse
from signaling.hub import Hub, hub_of
from signaling.ice import ice_config
from signaling.outlet import SocketOutlet
from signaling.peers import FrameMeter, add_candidate, rtc_configuration
from signaling.protocol import InvalidMessage, InvalidState, ProtocolError, RateLimiter

log = logging.getLogger("mendwell.signaling.device_check")

ECHO_WIDTH = 320
STATS_SECONDS = 1.0
START_TIMEOUT_SECONDS = 30.0
CLOSE_SECONDS = 5.0
MEDIA_LINE = re.compile(r"^m=(audio|video) ", re.MULTILINE)


def echo_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame comes back at: ``ECHO_WIDTH`` wide at most,
    aspect ratio kept, even sides (what the encoder takes)."""
    if width <= ECHO_WIDTH:
        return width, height
    return ECHO_WIDTH, max(2, round(height * ECHO_WIDTH / width / 2) * 2)


class ReducedEcho(MediaStreamTrack):
    """The received video, scaled down to ``ECHO_WIDTH`` and sent back."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, meter: FrameMeter) -> None:
        super().__init__()
        self.source = source
        self.meter = meter
        self.sent: tuple[int, int] | None = None  # the size of the last frame sent back

    async def recv(self) -> av.VideoFrame:
        frame = await self.source.recv()
        assert isinstance(frame, av.VideoFrame)
        self.meter.tick(frame)
        width, height = echo_size(frame.width, frame.height)
        self.sent = (width, height)
        if width == frame.width:
            return frame
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        scaled.pts, scaled.time_base = frame.pts, frame.time_base
        return scaled


class AudioEcho(MediaStreamTrack):
    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source

    async def recv(self) -> Any:
        return await self.source.recv()


class EchoPeer:
    """One device check's peer connection."""

    def __init__(self, hub: Hub, outlet: SocketOutlet, ice_servers: list[dict[str, Any]], *,
                 relay: bool, user: str) -> None:
        self.hub = hub
        self.outlet = outlet
        self.user = user  # whose slot this is: a user id, or guest-<id>
        # The server side uses every path it has; the browser decides whether its side
        # must go through TURN (``relay``), which is what proves TURN works for it.
        self.pc = RTCPeerConnection(rtc_configuration([], relay=False))
        self.meter = FrameMeter()
        self.echo: ReducedEcho | None = None
        self.relay = relay
        self.ice_servers = ice_servers
        self._closed = False

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.echo = ReducedEcho(track, self.meter)
                self.pc.addTrack(self.echo)
            else:
                self.pc.addTrack(AudioEcho(track))

    async def answer(self, offer_sdp: str) -> str:
        if not MEDIA_LINE.search(offer_sdp):
            raise ValueError("it has no camera or microphone in it")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def stats(self) -> dict[str, Any]:
        rtt = None
        with contextlib.suppress(Exception):
            for stat in (await self.pc.getStats()).values():
                if isinstance(stat, RTCRemoteInboundRtpStreamStats) and stat.kind == "video":
                    rtt = round(stat.roundTripTime * 1000, 1)
        sent = self.echo.sent if self.echo is not None else None
        return {"type": "stats", "connection_state": self.pc.connectionState,
                "frames_per_second": round(self.meter.fps(), 1), "frames": self.meter.frames,
                "width": self.meter.width, "height": self.meter.height,
                "sent_width": sent[0] if sent else None,
                "sent_height": sent[1] if sent else None, "round_trip_ms": rtt}

    async def replaced(self) -> None:
        """The same person started another check: this one ends and frees its slot."""
        self.hub.device_checks.discard(self)
        self.outlet.push({"type": "done", "reason": "replaced"})
        self.outlet.close(protocol.CLOSE_REPLACED)
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.hub.peers.discard(self)
        self.hub.device_checks.discard(self)
        # Closing releases the peer's ICE sockets. It runs when the client has gone, often
        # inside a task being cancelled (the socket's task torn down on disconnect), and a
        # close cancelled half-way leaves UDP sockets bound for good: it is shielded from
        # cancellation, and bounded so that a stuck close cannot hold the task forever.
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            await self.pc.close()


async def endpoint(websocket: WebSocket) -> None:
    services = services_of(websocket)
    hub = hub_of(websocket)
    if not await open_socket(websocket, hub):
        return
    current = current_of(websocket)
    outlet = SocketOutlet(websocket)
    if current is not None:
        hub.watch(outlet, current, idle=False)
    limiter = RateLimiter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    peer: EchoPeer | None = None
    reporter: asyncio.Task[None] | None = None
    try:
        while not outlet.closing:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await websocket.receive()
            except TimeoutError:
                if peer is None:
                    outlet.push(protocol.error("timeout", "Send start and an offer first."))
                else:
                    outlet.push({"type": "done", "reason": "time_limit"})
                outlet.close(protocol.CLOSE_NORMAL)
                break
            if message["type"] == "websocket.disconnect":
                break
            if not limiter.allow(loop.time()):
                if limiter.exhausted:
                    outlet.close(protocol.CLOSE_RATE_LIMITED)
                continue
            try:
                text = message.get("text")
                if text is None:
                    raise InvalidMessage("Send JSON in text frames.", field="frame")
                data = protocol.decode(text)
                kind = data["type"]
                if kind == "ping":
                    outlet.push({"type": "pong"})
                elif kind == "start":
                    if peer is not None:
                        raise InvalidState("The check has already started.", field="type")
                    peer = await _start(websocket, hub, outlet, data, current is not None)
                    if peer is None:
                        break
                    deadline = loop.time() + services.settings.device_check_max_seconds
                elif peer is None:
                    raise InvalidState("Send start first.", field="type")
                elif kind == "offer":
                    sdp = data.get("sdp")
                    if not isinstance(sdp, str) or not sdp:
                        raise InvalidMessage("An offer needs its sdp.", field="sdp")
                    if peer.pc.remoteDescription is not None:
                        raise InvalidState("The check has an offer already.", field="type")
                    outlet.push({"type": "answer", "sdp": await _answer(peer, sdp)})
                    reporter = asyncio.create_task(_report(peer, outlet))
                elif kind == "candidate":
                    candidate = data.get("candidate")
                    if candidate is not None and not isinstance(candidate, dict):
                        raise InvalidMessage("candidate must be an object or null.",
                                             field="candidate")
                    try:
                        await add_candidate(peer.pc, candidate)
                    except Exception:
                        # aiortc's candidate parser refuses with ValueError, KeyError,
                        # IndexError or a bare assert: all of them mean "unreadable".
                        raise InvalidMessage("The candidate could not be read.",
                                             field="candidate") from None
                elif kind == "stop":
                    outlet.push({"type": "done", "reason": "stopped"})
                    outlet.close(protocol.CLOSE_NORMAL)
                else:
                    raise InvalidMessage(f'Unknown message type "{kind[:40]}".', field="type")
            except ProtocolError as exc:
                outlet.push(exc.to_json())
    finally:
        hub.unwatch(outlet)
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        if peer is not None:
            await peer.close()
    await outlet.finish()


async def _answer(peer: EchoPeer, sdp: str) -> str:
    try:
        return await peer.answer(sdp)
    except Exception as exc:
        # aiortc refuses an offer it cannot answer (no usable media, bad SDP) with a
        # ValueError, and a malformed line ("m=audio x") with a bare assert: an offer the
        # browser sent wrong is the client's error, never a crashed socket (1011).
        reason = str(exc) or "its SDP could not be read"
        raise ProtocolError(f"The offer was refused: {reason}", field="sdp",
                            code="invalid_offer") from None


async def _start(websocket: WebSocket, hub: Hub, outlet: SocketOutlet, data: dict[str, Any],
                 signed_in: bool) -> EchoPeer | None:
    services = hub.services
    relay = data.get("relay", False)
    if not isinstance(relay, bool):
        raise InvalidMessage("relay must be true or false.", field="relay")
    if signed_in:
        current = current_of(websocket)
        assert current is not None
        user = str(current.user.id)
    else:
        guest = await _guest(services, data)
        if guest is None:
            await refuse(websocket, protocol.CLOSE_UNAUTHENTICATED, "unauthenticated",
                         "Sign in, or open the invitation link again.")
            return None
        user = f"guest-{guest.id}"
    ice = ice_config(services.settings, user, services.clock.now())
    if relay and ice.expires_at is None:
        raise ProtocolError("No TURN server is configured, so the relay path cannot be "
                            "checked.", field="relay", code="no_turn")
    # Nothing awaits from counting the slots to taking one: two starts cannot both
    # take the last.
    previous = next((p for p in hub.device_checks
                     if isinstance(p, EchoPeer) and p.user == user), None)
    if len(hub.device_checks) - (previous is not None) >= services.settings.device_check_limit:
        await refuse(websocket, protocol.CLOSE_BUSY, "busy",
                     "The server's camera check is busy right now. Your camera and "
                     "microphone can still be checked on this device.")
        return None
    peer = EchoPeer(hub, outlet, ice.servers, relay=relay, user=user)
    if previous is not None:
        hub.device_checks.discard(previous)
    hub.device_checks.add(peer)
    hub.peers.add(peer)
    if previous is not None:
        await previous.replaced()
    outlet.push({"type": "ready", **ice.to_json(), "relay": relay,
                 "check_seconds": services.settings.device_check_seconds,
                 "max_seconds": services.settings.device_check_max_seconds,
                 "echo_width": ECHO_WIDTH})
    return peer


async def _report(peer: EchoPeer, outlet: SocketOutlet) -> None:
    with contextlib.suppress(MediaStreamError):
        while not outlet.closing:
            await asyncio.sleep(STATS_SECONDS)
            outlet.push(await peer.stats())


async def _guest(services: Services, data: dict[str, Any]) -> Guest | None:
    """An invited guest checks their devices with the token from their link."""
    visit_id, token = data.get("visit_id"), data.get("guest_token")
    # An id out of the column's range failed in the database driver and crashed the
    # socket (1011); it is no visit, so the guest is refused like any wrong link.
    if not isinstance(visit_id, int) or isinstance(visit_id, bool) or \
            not 0 < visit_id <= MAX_ID or not isinstance(token, str) or \
            not protocol.GUEST_TOKEN.fullmatch(token):
        return None
    async with services.transaction() as session:
        return await guests.guest_for_token(session, visit_id, token, now=services.clock.now())
