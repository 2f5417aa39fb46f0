"""``/ws/device-check``: the aiortc echo peer, its reports, its cap and who may use it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signaling.client import ClientError, device_check
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
    assert last["frames"] > 10 and last["frames_per_second"] > 5
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
        assert ready["ice_servers"] == [] and ready["max_seconds"] == 120
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
