"""Visit signaling's own listener (signaling/listener.py) at the edges its transport
decides: a message sent in fragments, a member that stops reading, a shutdown, the page
saying where signaling is, and the Content-Security-Policy letting it connect there."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from signaling.listener import WRITE_LIMIT_BYTES
from signaling.protocol import CLOSE_TOO_SLOW, MAX_FRAME_BYTES
from tests import app_server
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import FrameSocket, LiveServer, connect, cookie_of


def room(visit_id: int) -> str:
    return f"/ws/visits/{visit_id}"


def test_a_message_sent_in_fragments_is_put_together(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as ws:
        hello = json.dumps({"type": "hello", "peer_id": "fragmented-peer"})
        # websockets sends an iterable as one message in several frames (RFC 6455, 5.4).
        ws.connection.send([hello[:10], hello[10:25], hello[25:]])
        assert ws.expect("welcome")["peer_id"] == "fragmented-peer"
        ws.connection.send(['{"type":', ' "ping"}'])
        assert ws.expect("pong")["type"] == "pong"


def test_a_member_that_stops_reading_is_closed_as_too_slow(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    """Messages to a member are written straight into its connection; one that reads
    nothing lets the write buffer grow until it is closed (4408), and the room goes on
    without it."""
    port = app_server.signaling_port_for(client)
    patient_cookie = cookie_of(sign_in, clinic.patient)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doctor:
        doctor.hello("prescriber-peer-1")
        stalled = FrameSocket(port, room(clinic.visit_id), patient_cookie)
        try:
            stalled.write(json.dumps({"type": "hello", "peer_id": "stalled-patient"}))
            doctor.presence(lambda ps: any(p["peer_id"] == "stalled-patient" for p in ps))
            doctor.send({"type": "admit", "peer_id": "stalled-patient"})
            doctor.presence(lambda ps: any(p["peer_id"] == "stalled-patient" and
                                           p["state"] == "admitted" for p in ps))
            sdp = "v=0\r\na=x-pad:" + "f" * (MAX_FRAME_BYTES - 200) + "\r\n"
            offer = {"type": "signal", "to": "stalled-patient",
                     "description": {"type": "offer", "sdp": sdp}}
            sent = 0
            started = time.monotonic()
            deadline = started + 20
            gone = False
            # Within the rate limit (30 a second after a burst of 60), until the room
            # says the stalled member has gone.
            while not gone and time.monotonic() < deadline:
                doctor.send(offer)
                sent += 1
                for message in doctor.quiet(0.04):
                    gone = gone or (message["type"] == "presence" and all(
                        p["peer_id"] != "stalled-patient" for p in message["participants"]))
                    assert message.get("code") != "rate_limited", message
            assert gone, f"still in the room after {sent} offers"
            # Closed for being slow, not by the heartbeat (15 s of silence).
            assert time.monotonic() - started < 10
            # More than the limit was offered before it went: it was not closed early.
            assert sent * MAX_FRAME_BYTES > WRITE_LIMIT_BYTES
            # What it had been sent is still there to read, then the close code.
            codes = [m for m in stalled.messages(lambda m: False, timeout=10)
                     if isinstance(m, int)]
            assert codes == [CLOSE_TOO_SLOW]
        finally:
            stalled.close()
        doctor.send({"type": "ping"})
        assert doctor.expect("pong")["type"] == "pong"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_shutdown_closes_visit_sockets_with_1012_and_the_page_says_where_signaling_is(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    import urllib.request

    cookie = cookie_of(sign_in, clinic.prescriber)
    with LiveServer(database_url, tmp_path) as server:
        request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
            f"{server.base_url}/visits/{clinic.visit_id}",
            headers={"Cookie": f"mendwell_session={cookie}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            page = response.read().decode()
            policy = response.headers["Content-Security-Policy"]
        assert f'data-signaling="{server.signaling_url}"' in page
        # The page may open it: its own origin is another port.
        connect_src = next(d for d in policy.split(";") if d.strip().startswith("connect-src"))
        assert server.signaling_url in connect_src.split()
        with ws_connect(f"{server.signaling_url}{room(clinic.visit_id)}",
                        additional_headers={"Cookie": f"mendwell_session={cookie}",
                                            "Origin": server.base_url},
                        open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "peer_id": "prescriber-peer-1"}))
            while json.loads(ws.recv(timeout=5))["type"] != "welcome":
                pass
            server.stop()

            def read_to_the_end() -> None:
                while True:
                    ws.recv(timeout=10)

            with pytest.raises(ConnectionClosed) as closed:
                read_to_the_end()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012


def test_origins_of_other_sites_and_ports_are_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    port = app_server.signaling_port_for(client)
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 7}", "null"):
        with connect(client, room(clinic.visit_id), cookie, origin=origin) as ws:
            assert ws.expect("error")["code"] == "forbidden", origin
            assert ws.closed() == 4403
    # The site itself (the configured base URL) is welcome.
    with connect(client, room(clinic.visit_id), cookie, origin="http://testserver") as ws:
        assert ws.hello("prescriber-peer-1")["state"] == "admitted"


def test_a_flood_stays_one_episode_while_the_bucket_lets_a_few_through() -> None:
    """The rate limit's episodes (signaling.protocol.RateLimiter): a client flooding at
    three times the rate has every 30th-or-so message let through by the refilling
    bucket, and is still told once and then closed; after a quiet second it starts
    afresh."""
    from signaling.protocol import RATE_BURST, RATE_PER_SECOND, RateLimiter

    limiter = RateLimiter()
    now = 100.0
    allowed = told = 0
    while not limiter.exhausted:
        now += 1 / (3 * RATE_PER_SECOND)
        if limiter.allow(now):
            allowed += 1
        elif limiter.refused == 1:
            told += 1
        assert now < 110, "never closed"
    assert told == 1
    assert allowed > RATE_BURST  # some got through after the burst, and did not reset it
    quiet = RateLimiter()
    for _ in range(RATE_BURST + 1):
        quiet.allow(200.0)
    assert quiet.refused == 1
    assert quiet.allow(201.5) and quiet.refused == 0  # a quiet second ends the episode
