"""Real calls: aiortc peers through a real signaling server (``mendwell serve`` on a free
port), exchanging real video frames whose colour must survive the trip.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from signaling.client import Client
from signaling.peers import ColourTrack
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import LiveServer, cookie_of

GREEN = (0, 200, 0)
MAGENTA = (200, 0, 200)


def near(colour: tuple[float, float, float] | None, rgb: tuple[int, int, int],
         tolerance: float = 30.0) -> bool:
    """Video codecs and the YUV round trip shift a solid colour a little, never a lot."""
    return colour is not None and all(abs(c - e) <= tolerance for c, e in zip(colour, rgb,
                                                                             strict=True))


async def place_call(patient_url: str, prescriber_url: str, patient_cookie: str,
                     prescriber_cookie: str, *, expect_relay: bool = False,
                     **options: Any) -> dict[str, float]:
    """Patient joins and waits, the prescriber admits, both see the other's colour.
    ``expect_relay``: the media must go through TURN only (as with ``relay=True``)."""
    patient = Client(patient_url, cookie=patient_cookie, peer_id="patient-aiortc",
                     make_tracks=lambda: [ColourTrack(GREEN)], **options)
    prescriber = Client(prescriber_url, cookie=prescriber_cookie, peer_id="prescriber-aiortc",
                        make_tracks=lambda: [ColourTrack(MAGENTA)], **options)
    try:
        assert (await patient.start())["state"] == "waiting"
        assert (await prescriber.start())["state"] == "admitted"
        waiting = await prescriber.wait_for_peer(lambda p: p["state"] == "waiting")
        assert waiting["peer_id"] == "patient-aiortc"
        admitted_at = time.monotonic()
        await prescriber.admit("patient-aiortc")
        await patient.wait_connected("prescriber-aiortc", within=10)
        seen_by_patient = await patient.wait_frames("prescriber-aiortc", count=5, within=10)
        seen_by_prescriber = await prescriber.wait_frames("patient-aiortc", count=5, within=10)
        video_at = max(seen_by_patient.first_frame_at or 0, seen_by_prescriber.first_frame_at or 0)
        assert near(seen_by_patient.colour, MAGENTA), seen_by_patient.colour
        assert near(seen_by_prescriber.colour, GREEN), seen_by_prescriber.colour
        if options.get("relay") or expect_relay:
            # Relay-only: the only candidates either side offered were TURN relays.
            for client, other in ((patient, "prescriber-aiortc"),
                                  (prescriber, "patient-aiortc")):
                sdp = client.links[other].pc.localDescription.sdp
                assert "typ relay" in sdp and "typ host" not in sdp
        return {"admit_to_video": video_at - admitted_at}
    finally:
        await patient.close()
        await prescriber.close()


def test_two_aiortc_peers_call_through_the_signaling_server(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    with LiveServer(database_url, tmp_path) as server:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"
        timings = asyncio.run(asyncio.wait_for(
            place_call(url, url, patient_cookie, prescriber_cookie), 20))
    print(f"admit to video: {timings['admit_to_video']:.3f} s")
    # Loopback, two processes' worth of aiortc: well under the 1 s budget for browsers.
    assert timings["admit_to_video"] < 5.0, timings


def test_the_call_survives_a_server_restart(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    server = LiveServer(database_url, tmp_path).start()

    async def scenario() -> None:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"
        patient = Client(url, cookie=patient_cookie, peer_id="patient-aiortc",
                         make_tracks=lambda: [ColourTrack(GREEN)])
        prescriber = Client(url, cookie=prescriber_cookie, peer_id="prescriber-aiortc",
                            make_tracks=lambda: [ColourTrack(MAGENTA)])
        try:
            await patient.start()
            await prescriber.start()
            await prescriber.wait_for_peer(lambda p: p["state"] == "waiting")
            await prescriber.admit("patient-aiortc")
            received = await patient.wait_frames("prescriber-aiortc", count=3)
            await asyncio.to_thread(server.stop)
            # Media is peer-to-peer: it keeps flowing while signaling is away.
            before = received.meter.frames
            await asyncio.sleep(1.0)
            assert received.meter.frames > before + 5
            await asyncio.to_thread(server.start)
            # Both come back to their places by themselves; nobody admits again.
            await patient.wait_until(lambda: patient.welcomes == 2)
            await prescriber.wait_until(lambda: prescriber.welcomes == 2)
            assert patient.welcome is not None
            assert (patient.welcome["state"], patient.welcome["resumed"]) == ("admitted", True)
            await patient.wait_for_peer(lambda p: p["peer_id"] == "prescriber-aiortc")
            assert patient.links["prescriber-aiortc"].pc.connectionState == "connected"
            later = received.meter.frames
            await asyncio.sleep(0.5)
            assert received.meter.frames > later
        finally:
            await patient.close()
            await prescriber.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 25))
    finally:
        server.stop()
