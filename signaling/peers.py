"""What the aiortc peers (device-check echo, Python client) share: configuration,
trickled candidates, and tracks that make or measure frames.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

VIDEO_CLOCK = 90_000


def rtc_configuration(
    ice_servers: list[dict[str, Any]], *, relay: bool = False
) -> RTCConfiguration:
    """An aiortc configuration from the RTCIceServer dicts the server hands out."""
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                            credential=s.get("credential")) for s in ice_servers]
    policy = RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers or None, iceTransportPolicy=policy)


async def add_candidate(pc: RTCPeerConnection, candidate: dict[str, Any] | None) -> None:
    """Add a trickled candidate (the browser's ``RTCIceCandidate.toJSON()``) or its end."""
    if candidate is None or not candidate.get("candidate"):
        await pc.addIceCandidate(None)
        return
    text = str(candidate["candidate"])
    if text.startswith("candidate:"):
        text = text[len("candidate:"):]
    parsed = candidate_from_sdp(text)
    parsed.sdpMid = candidate.get("sdpMid")
    parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
    if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
        parsed.sdpMLineIndex = 0
    await pc.addIceCandidate(parsed)


class ColourTrack(MediaStreamTrack):
    """A synthetic camera: solid frames of one colour (RGB), at a steady rate."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int] = (0, 200, 0), *, width: int = 320,
                 height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self.rgb = rgb
        self.width, self.height, self.fps = width, height, fps
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame(width=self.width, height=self.height, format="rgb24")
        r, g, b = self.rgb
        plane = frame.planes[0]
        row = bytes((r, g, b)) * self.width
        stride = plane.line_size
        plane.update((row + bytes(stride - len(row))) * self.height)
        frame.pts = self._count * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


def mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    """The average colour of a frame, sampled on a coarse grid (cheap enough per frame)."""
    small = frame.reformat(width=16, height=12, format="rgb24")
    plane = small.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    totals = [0, 0, 0]
    for y in range(small.height):
        row = data[y * stride:y * stride + small.width * 3]
        for i in range(3):
            totals[i] += sum(row[i::3])
    n = small.width * small.height
    return (totals[0] / n, totals[1] / n, totals[2] / n)


class FrameMeter:
    """Counts frames of a track as they pass, for frame rate and size."""

    __slots__ = ("_marks", "frames", "height", "width")

    def __init__(self) -> None:
        self.frames = 0
        self.width = 0
        self.height = 0
        self._marks: list[float] = []

    def tick(self, frame: av.VideoFrame) -> None:
        self.frames += 1
        self.width, self.height = frame.width, frame.height
        now = time.monotonic()
        self._marks.append(now)
        if len(self._marks) > 120:
            del self._marks[:60]

    def fps(self, window: float = 2.0) -> float:
        now = time.monotonic()
        recent = [m for m in self._marks if m >= now - window]
        if len(recent) < 2:
            return 0.0
        span = recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0
