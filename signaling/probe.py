"""``mendwell probe``: a synthetic call through a running deployment, timed.

The check an operator runs after a deploy. It signs in as a (staff) probe account, then

1. runs a device check against the server's aiortc echo peer (``/ws/device-check``):
   signaling, ICE and media end to end, through TURN with ``--relay``;
2. with ``--visit``, places a call between two aiortc peers of the probe account in that
   visit's room (``/ws/visits/{id}``): the real signaling relay, admission included.
   Use a visit kept for probing: the probe appears in the room's presence.

and prints how long each took to connect.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from signaling.client import Client, ClientError, device_check, sign_in, signaling_base
from signaling.peers import ColourTrack

PROBE_COLOUR = (0, 200, 0)


@dataclass
class ProbeReport:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def say(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"FAILED: {line}")


def websocket_base(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ClientError(f"the base URL must be http:// or https://, not {base_url!r}")
    return f"{scheme}://{parts.netloc}"


async def probe(base_url: str, email: str, password: str, *, visit_id: int | None = None,
                relay: bool = False, within: float = 20.0) -> ProbeReport:
    report = ProbeReport()
    base_url = base_url.rstrip("/")
    ws_base = websocket_base(base_url)
    started = time.monotonic()
    try:
        cookie = await asyncio.to_thread(sign_in, base_url, email, password)
    except (ClientError, OSError) as exc:
        report.fail(f"sign-in: {exc}")
        return report
    report.say(f"signed in as {email} in {time.monotonic() - started:.2f} s")

    try:
        check = await asyncio.wait_for(device_check(
            f"{ws_base}/ws/device-check", cookie=cookie, relay=relay,
            track=ColourTrack(PROBE_COLOUR, width=640, height=480), seconds=2.0,
            within=within), within + 5)
        last = check.stats[-1]
        path = "through TURN (relay only)" if relay else "direct or TURN"
        report.say(f"device check {path}: echo after {check.connected_after:.2f} s, "
                   f"{last['frames_per_second']} frames/s received, "
                   f"round trip {last['round_trip_ms']} ms")
    except (ClientError, OSError, TimeoutError) as exc:
        report.fail(f"device check: {exc or type(exc).__name__}")

    if visit_id is not None:
        try:
            signaling = await asyncio.to_thread(signaling_base, base_url, cookie, visit_id)
        except (ClientError, OSError) as exc:
            report.fail(f"visit page: {exc}")
            return report
        await _call(report, f"{signaling}/ws/visits/{visit_id}", cookie, relay, within)
    return report


async def _call(report: ProbeReport, url: str, cookie: str, relay: bool,
                within: float) -> None:
    peers = [Client(url, cookie=cookie, peer_id=f"probe-{side}-{int(time.time())}",
                    relay=relay, reconnect=False,
                    make_tracks=lambda: [ColourTrack(PROBE_COLOUR)])
             for side in ("a", "b")]
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            for peer in peers:
                welcome = await peer.start()
                if welcome["state"] != "admitted":
                    raise ClientError("the probe account must be staff on the visit's care "
                                      "team (it was put in the waiting room)")
            first, second = peers
            await first.wait_connected(second.peer_id, within=within)
            await first.wait_frames(second.peer_id, count=3, within=within)
        report.say(f"visit call between two probe peers: video after "
                   f"{time.monotonic() - started:.2f} s")
    except (ClientError, OSError, TimeoutError) as exc:
        report.fail(f"visit call: {exc or 'no connection within the time limit'}")
    finally:
        for peer in peers:
            await peer.leave()
