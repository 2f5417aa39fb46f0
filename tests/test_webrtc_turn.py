"""TURN: coturn on loopback with ``use-auth-secret``; a relay-only aiortc call connects
with the credentials the server hands out, and does not with expired ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signaling.client import Client, device_check
from signaling.ice import turn_credentials
from signaling.peers import ColourTrack
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import LiveServer, cookie_of
from tests.test_webrtc import GREEN, MAGENTA, near, place_call
from tests.turn_support import Coturn, run_coturn


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    with run_coturn(tmp_path) as started:
        yield started


@pytest.mark.coturn
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_relay_only_call_connects_with_fresh_credentials(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    with LiveServer(database_url, tmp_path, MENDWELL_TURN_URLS=coturn.url,
                    MENDWELL_TURN_SECRET=coturn.secret) as server:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"
        timings = asyncio.run(asyncio.wait_for(
            place_call(url, url, patient_cookie, prescriber_cookie, relay=True), 20))
    print(f"admit to video through TURN: {timings['admit_to_video']:.3f} s")


@pytest.mark.coturn
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_relay_only_clinic_puts_python_peers_on_turn_too(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    """MENDWELL_ICE_TRANSPORT_POLICY=relay reaches aiortc clients (tests, bench, probe)
    through `welcome`: they offer relay candidates only without being told to."""
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    with LiveServer(database_url, tmp_path, MENDWELL_TURN_URLS=coturn.url,
                    MENDWELL_TURN_SECRET=coturn.secret,
                    MENDWELL_ICE_TRANSPORT_POLICY="relay") as server:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"
        asyncio.run(asyncio.wait_for(
            place_call(url, url, patient_cookie, prescriber_cookie, expect_relay=True), 20))


@pytest.mark.coturn
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_relay_only_call_fails_with_expired_credentials(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)

    def expired(user: int) -> list[dict[str, object]]:
        username, credential = turn_credentials(
            coturn.secret, str(user), datetime.now(UTC) - timedelta(minutes=1))
        return [{"urls": [coturn.url], "username": username, "credential": credential}]

    async def call(url: str) -> None:
        patient = Client(url, cookie=patient_cookie, peer_id="patient-aiortc", relay=True,
                         ice_servers=expired(clinic.patient.id),
                         make_tracks=lambda: [ColourTrack(GREEN)])
        prescriber = Client(url, cookie=prescriber_cookie, peer_id="prescriber-aiortc",
                            relay=True, ice_servers=expired(clinic.prescriber.id),
                            make_tracks=lambda: [ColourTrack(MAGENTA)])
        try:
            await patient.start()
            await prescriber.start()
            await prescriber.wait_for_peer(lambda p: p["state"] == "waiting")
            await prescriber.admit("patient-aiortc")
            # aiortc reports no error for a refused TURN allocation: the call just never
            # connects.
            with pytest.raises(TimeoutError):
                await patient.wait_connected("prescriber-aiortc", within=5)
        finally:
            await patient.close()
            await prescriber.close()

    with LiveServer(database_url, tmp_path, MENDWELL_TURN_URLS=coturn.url,
                    MENDWELL_TURN_SECRET=coturn.secret) as server:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"
        asyncio.run(asyncio.wait_for(call(url), 20))


@pytest.mark.coturn
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_device_check_can_force_the_relay_path(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    cookie = cookie_of(sign_in, clinic.patient)
    with LiveServer(database_url, tmp_path, MENDWELL_TURN_URLS=coturn.url,
                    MENDWELL_TURN_SECRET=coturn.secret) as server:
        result = asyncio.run(asyncio.wait_for(device_check(
            f"{server.ws_url}/ws/device-check", cookie=cookie, relay=True,
            track=ColourTrack(GREEN), seconds=1.0), 20))
    assert result.ready["relay"] is True
    turn = result.ready["ice_servers"][-1]
    assert turn["username"].endswith(f":{clinic.patient.id}")
    assert near(result.echo.colour, GREEN)
