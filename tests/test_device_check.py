"""``/ws/device-check``: the aiortc echo peer, its reports, its cap and who may use it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signaling.client import ClientError, DeviceCheckResult, device_check
from signaling.device_check import echo_size
from signaling.peers import ColourTrack
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import LiveServer, Socket, closed_on_connect, connect, cookie_of
from tests.test_webrtc import GREEN, near


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_echo_comes_back_smaller_with_reports(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    cookie = cookie_of(sign_in, clinic.patient)
    with LiveServer(database_url, tmp_path) as server:
        result = asyncio.run(asyncio.wait_for(device_check(
            f"{server.ws_url}/ws/device-check", cookie=cookie,
            track=ColourTrack(GREEN, width=640, height=480), seconds=2.0), 20))
    assert result.ready["relay"] is False
    assert result.ready["echo_width"] == 320
    assert near(result.echo.colour, GREEN)
    # Reduced resolution on the way back, aspect ratio kept.
    assert (result.echo.meter.width, result.echo.meter.height) == (320, 240)
    last = result.stats[-1]
    assert last["connection_state"] == "connected"
    assert (last["width"], last["height"]) == (640, 480)
    # What the server says it sends back is what arrived.
    assert (last["sent_width"], last["sent_height"]) == (320, 240) == echo_size(640, 480)
    assert last["frames"] > 10 and last["frames_per_second"] > 5
    assert result.done == "stopped" and result.close_code == 1000
    print(f"device check: echo after {result.connected_after:.2f} s, {last}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_checks_beyond_the_cap_are_told_to_check_locally(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    cookie = cookie_of(sign_in, clinic.patient)
    # Someone else: a second check of the patient's would take the first one's place.
    other = cookie_of(sign_in, clinic.prescriber)

    async def two_at_once(url: str) -> str:
        first = asyncio.create_task(device_check(url, cookie=cookie, seconds=3.0))
        await asyncio.sleep(1.5)
        try:
            await device_check(url, cookie=other, seconds=0.5)
        except ClientError as refused:
            return str(refused)
        finally:
            await first
        return "not refused"

    with LiveServer(database_url, tmp_path, MENDWELL_DEVICE_CHECK_LIMIT="1") as server:
        refusal = asyncio.run(asyncio.wait_for(two_at_once(f"{server.ws_url}/ws/device-check"),
                                               20))
    assert refusal.startswith("busy: ")
    assert "on this device" in refusal


def test_device_check_needs_a_session_or_an_invitation(client: TestClient, clinic: Clinic,
                                                       sign_in: SignIn) -> None:
    start = {"type": "start"}
    assert closed_on_connect(client, "/ws/device-check", hello=start) == 4401
    assert closed_on_connect(client, "/ws/device-check", cookie_of(sign_in, clinic.patient),
                             origin="https://evil.example") == 4403
    with connect(client, "/ws/device-check", cookie_of(sign_in, clinic.patient)) as ws:
        ws.send({"type": "offer", "sdp": "v=0"})
        assert ws.expect("error")["code"] == "invalid_state"
        ws.send({"type": "start", "relay": True})
        error = ws.expect("error")
        assert (error["code"], error["field"]) == ("no_turn", "relay")
        ws.send({"type": "start"})
        ready = ws.expect("ready")
        assert ready["ice_servers"] == []
        assert (ready["check_seconds"], ready["max_seconds"]) == (10, 15)
        ws.send({"type": "offer", "sdp": "this is not sdp"})
        assert ws.expect("error")["code"] == "invalid_offer"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"device_check_limit": 2}])
def test_one_person_holds_one_device_check_slot(client: TestClient, clinic: Clinic,
                                               sign_in: SignIn) -> None:
    patient = cookie_of(sign_in, clinic.patient)
    with contextlib.ExitStack() as stack:
        # Five checks from one patient (reloads, tabs, a script): each takes the place of
        # the one before, which is told and closed; one slot stays held.
        checks: list[Socket] = []
        for _ in range(5):
            ws = stack.enter_context(connect(client, "/ws/device-check", patient))
            ws.send({"type": "start"})
            ws.expect("ready")
            if checks:
                assert checks[-1].expect("done")["reason"] == "replaced"
                assert checks[-1].closed() == 4409
            checks.append(ws)
        # So the cap of two leaves one for the prescriber, and the next person is told
        # to check locally.
        prescriber = stack.enter_context(
            connect(client, "/ws/device-check", cookie_of(sign_in, clinic.prescriber)))
        prescriber.send({"type": "start"})
        prescriber.expect("ready")
        coordinator = stack.enter_context(
            connect(client, "/ws/device-check", cookie_of(sign_in, clinic.coordinator)))
        coordinator.send({"type": "start"})
        assert coordinator.expect("error")["code"] == "busy"
        assert coordinator.closed() == 4503
        # The patient's check still runs.
        checks[-1].send({"type": "ping"})
        checks[-1].expect("pong")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_check_never_stopped_is_ended_by_the_server_and_frees_its_slot(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    """A tab that never presses Stop (closed lid, a script): the server ends the echo at
    its own deadline, and the one slot of this instance is free for the next person."""
    patient = cookie_of(sign_in, clinic.patient)
    prescriber = cookie_of(sign_in, clinic.prescriber)

    async def left_running(url: str) -> tuple[float, DeviceCheckResult, DeviceCheckResult]:
        started = time.monotonic()
        # Reports for a second, then waits, sending nothing: no stop, no ping.
        kept = await device_check(url, cookie=patient, seconds=1.0, stop=False, within=20)
        ended_after = time.monotonic() - started
        after = await device_check(url, cookie=prescriber, seconds=0.5)
        return ended_after, kept, after

    with LiveServer(database_url, tmp_path, MENDWELL_DEVICE_CHECK_LIMIT="1",
                    MENDWELL_DEVICE_CHECK_SECONDS="1",
                    MENDWELL_DEVICE_CHECK_MAX_SECONDS="3") as server:
        ended_after, kept, after = asyncio.run(asyncio.wait_for(
            left_running(f"{server.ws_url}/ws/device-check"), 40))
    assert (kept.ready["check_seconds"], kept.ready["max_seconds"]) == (1, 3)
    assert (kept.done, kept.close_code) == ("time_limit", 1000)
    # Three seconds after its start, not at the end of a minutes-long limit.
    assert 3.0 <= ended_after < 6.0, ended_after
    # The echo ran until then: reports came for longer than the one second asked.
    assert len(kept.stats) >= 2
    # The only slot was given back: the next check is answered, not told "busy".
    assert after.ready["relay"] is False and after.done == "stopped"
