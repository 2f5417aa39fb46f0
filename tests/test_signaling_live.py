"""Signaling against a real server process: heartbeats and the uvicorn frame ceiling."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from signaling import protocol
from signaling.client import Client
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import FrameSocket, LiveServer, SilentSocket, cookie_of


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
            watcher = Client(server.signaling_url + path, cookie=prescriber_cookie)
            await watcher.start()
            silent = SilentSocket(server.signaling_port, path, patient_cookie)
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
            async with ws_connect(f"{server.signaling_url}/ws/visits/{clinic.visit_id}",
                                  additional_headers={"Cookie": f"mendwell_session={cookie}"},
                                  max_size=2**20) as ws:
                await ws.send(json.dumps({"type": "hello", "peer_id": "prescriber-peer-1"}))
                got = [json.loads(await ws.recv())["type"]]  # welcome
                await ws.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
                await ws.send(json.dumps({"type": "ping"}))
                # The join's own messages (presence, the chat so far) come in between.
                while "pong" not in got:
                    message = json.loads(await ws.recv())
                    if message["type"] not in ("presence", "chat-history"):
                        got.append(message.get("code", message["type"]))
                return got

        got = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert got == ["welcome", "too_large", "pong"]


def _joined(server: LiveServer, visit_id: int, cookie: str, peer_id: str) -> tuple[
        FrameSocket, dict[str, Any]]:
    sock = FrameSocket(server.signaling_port, f"/ws/visits/{visit_id}", cookie)
    sock.write(json.dumps({"type": "hello", "peer_id": peer_id}))
    got = sock.messages(lambda m: m["type"] == "welcome")
    welcome = got[-1]
    assert isinstance(welcome, dict)
    if welcome.get("state") == "admitted":
        # Joined once the chat so far has come too (sent after the welcome, admitted).
        sock.messages(lambda m: m["type"] == "chat-history")
    return sock, welcome


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("writes", ["one write", "two writes"])
def test_a_signal_right_behind_an_admit_waits_for_it(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path, writes: str
) -> None:
    """Signals are relayed straight from the socket's reader while nothing else from that
    socket is in hand; an admit (which writes to the database) is not, and a signal sent
    right behind it must not overtake it, whether read with it or while it is handled."""
    with LiveServer(database_url, tmp_path) as server:
        doctor, _ = _joined(server, clinic.visit_id, cookie_of(sign_in, clinic.prescriber),
                            "prescriber-peer-1")
        patient, welcome = _joined(server, clinic.visit_id, cookie_of(sign_in, clinic.patient),
                                   "patient-peer-01")
        try:
            assert welcome["state"] == "waiting"
            doctor.messages(lambda m: m["type"] == "presence" and any(
                p["peer_id"] == "patient-peer-01" for p in m["participants"]))
            admit = json.dumps({"type": "admit", "peer_id": "patient-peer-01"})
            offer = json.dumps({"type": "signal", "to": "patient-peer-01",
                                "description": {"type": "offer", "sdp": "v=0\r\n"}})
            if writes == "one write":
                doctor.write(admit, offer)
            else:
                # Read apart: the signal arrives while the admit waits on the database
                # (held by this test's write lock for a moment).
                blocker = sqlite3.connect(database_url.split(":///", 1)[1],
                                          isolation_level=None)
                try:
                    blocker.execute("BEGIN IMMEDIATE")
                    doctor.write(admit)
                    time.sleep(0.3)
                    doctor.write(offer)
                    time.sleep(0.2)
                    blocker.execute("COMMIT")
                finally:
                    blocker.close()
            got = patient.messages(lambda m: m["type"] == "signal")
            kinds = [m["type"] for m in got if isinstance(m, dict)]
            assert "admitted" in kinds and kinds[-1] == "signal", kinds
            doctor.write(json.dumps({"type": "ping"}))
            answers = doctor.messages(lambda m: m["type"] == "pong")
            assert [m for m in answers if isinstance(m, dict) and m["type"] == "error"] == []
        finally:
            doctor.close()
            patient.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_rate_limit_holds_for_messages_read_in_one_go(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    with LiveServer(database_url, tmp_path) as server:
        doctor, _ = _joined(server, clinic.visit_id, cookie_of(sign_in, clinic.prescriber),
                            "prescriber-peer-1")
        try:
            doctor.write(*[json.dumps({"type": "ping"})] * 200)
            got = doctor.messages(lambda m: False, timeout=10)
        finally:
            doctor.close()
    pongs = sum(1 for m in got if isinstance(m, dict) and m["type"] == "pong")
    errors = [m["message"] for m in got if isinstance(m, dict) and m["type"] == "error"]
    # The burst of 60 less the hello's (and the odd token refilled while they are read),
    # one warning, then, after as many again, the close.
    assert protocol.RATE_BURST - 1 <= pongs <= protocol.RATE_BURST + 1, pongs
    assert len(errors) == 2 and errors[0].startswith("Slow down"), errors
    assert errors[1] == "Too many messages; closing."
    assert got[-1] == protocol.CLOSE_RATE_LIMITED
