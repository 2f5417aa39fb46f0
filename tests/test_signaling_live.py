"""Signaling against a real server process: heartbeats and the uvicorn frame ceiling."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from signaling.client import Client
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import LiveServer, SilentSocket, cookie_of


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_silent_socket_is_dropped_by_the_heartbeat(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    # The production heartbeat is a ping every 5 s and 10 s to answer; scaled down here.
    with LiveServer(database_url, tmp_path, MENDWELL_WS_PING_INTERVAL_SECONDS="0.5",
                    MENDWELL_WS_PING_TIMEOUT_SECONDS="1.0") as server:
        path = f"/ws/visits/{clinic.visit_id}"

        async def scenario() -> float:
            watcher = Client(server.ws_url + path, cookie=prescriber_cookie)
            await watcher.start()
            silent = SilentSocket(server.port, path, patient_cookie)
            try:
                silent.send_text(json.dumps({"type": "hello", "peer_id": "silent-patient"}))
                await watcher.wait_for_peer(lambda p: p["peer_id"] == "silent-patient")
                went_silent = time.monotonic()
                await watcher.wait_until(lambda: all(
                    p["peer_id"] != "silent-patient" for p in watcher.participants), within=6)
                return time.monotonic() - went_silent
            finally:
                silent.close()
                await watcher.close()

        dropped_after = asyncio.run(asyncio.wait_for(scenario(), 15))
    # interval + timeout, and a little for the presence to travel.
    assert dropped_after < 3.0, dropped_after


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_frames_over_64_kib_get_an_error_from_the_real_server(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    with LiveServer(database_url, tmp_path) as server:
        async def scenario() -> list[str]:
            async with ws_connect(f"{server.ws_url}/ws/visits/{clinic.visit_id}",
                                  additional_headers={"Cookie": f"mendwell_session={cookie}"},
                                  max_size=2**20) as ws:
                await ws.send(json.dumps({"type": "hello", "peer_id": "prescriber-peer-1"}))
                got = [json.loads(await ws.recv())["type"]]  # welcome
                await ws.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
                await ws.send(json.dumps({"type": "ping"}))
                while len(got) < 4:
                    message = json.loads(await ws.recv())
                    got.append(message.get("code", message["type"]))
                return got

        got = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert got[0] == "welcome"
    assert got[1:].count("too_large") == 1 and got[1:].count("pong") == 1
