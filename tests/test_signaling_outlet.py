"""A socket's outgoing side (signaling.outlet): written by a task that exists only while
something is queued, in order behind a send that has to wait, closed at the queue limit,
closed after what was queued.

The live tests go through a real ``mendwell serve``; the others give the outlet an ASGI
``send`` whose waiting the test controls, which is the one edge a server decides.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from signaling.outlet import QUEUE_LIMIT, SocketOutlet
from signaling.protocol import CLOSE_NORMAL, CLOSE_TOO_SLOW
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import LiveServer, cookie_of


class Wire:
    """An ASGI send that records frames; it waits while ``stalled`` is set, and on every
    ``wait_every``-th frame it yields to the loop once (a server applying backpressure)."""

    def __init__(self, *, wait_every: int = 0) -> None:
        self.sent: list[Message] = []
        self.wait_every = wait_every
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message: Message) -> None:
        await self.open.wait()
        if self.wait_every and (len(self.sent) + 1) % self.wait_every == 0:
            await asyncio.sleep(0)
        self.sent.append(message)

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]

    def closes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


async def outlet_on(wire: Wire) -> SocketOutlet:
    async def receive() -> Message:
        return {"type": "websocket.connect"}  # read once, by accept

    websocket = WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, wire.send)
    await websocket.accept()
    return SocketOutlet(websocket)


def test_an_idle_socket_keeps_no_task_and_a_push_is_written_by_one_that_then_goes() -> None:
    async def scenario() -> list[tuple[bool, int]]:
        wire = Wire()
        outlet = await outlet_on(wire)
        seen = [(outlet.writing, len(wire.texts()))]
        outlet.push({"type": "pong"})
        outlet.push({"type": "pong"})
        seen.append((outlet.writing, len(wire.texts())))  # queued, not yet written
        await outlet.finish()
        seen.append((outlet.writing, len(wire.texts())))
        return seen

    assert asyncio.run(scenario()) == [(False, 0), (True, 0), (False, 2)]


def test_messages_stay_in_order_when_some_sends_wait() -> None:
    async def scenario() -> list[int]:
        wire = Wire(wait_every=3)
        outlet = await outlet_on(wire)
        for n in range(200):
            outlet.push({"type": "signal", "n": n})
            if n % 17 == 0:
                await asyncio.sleep(0)  # let the flusher run part of the way
        await outlet.finish()
        return [m["n"] for m in wire.texts()]

    assert asyncio.run(scenario()) == list(range(200))


def test_a_client_that_stops_reading_is_closed_at_the_queue_limit() -> None:
    async def scenario() -> tuple[Wire, SocketOutlet, int]:
        wire = Wire()
        outlet = await outlet_on(wire)
        outlet.push({"type": "signal", "n": 0})
        await outlet.finish()  # written
        wire.open.clear()  # the client stops reading: every send from now on waits
        n = 1
        while not outlet.closing:
            outlet.push({"type": "signal", "n": n})
            n += 1
        outlet.push({"type": "signal", "n": n})  # after the close: dropped
        wire.open.set()
        await outlet.finish()
        return wire, outlet, n

    wire, outlet, after_close = asyncio.run(scenario())
    # One written, QUEUE_LIMIT queued behind the send that waits (the first of them in
    # flight); the next one closed the socket instead of queueing.
    assert after_close == 1 + QUEUE_LIMIT + 1
    assert [m["n"] for m in wire.texts()] == list(range(1 + QUEUE_LIMIT))
    assert wire.closes() == [CLOSE_TOO_SLOW]
    assert wire.sent[-1]["type"] == "websocket.close"
    assert outlet.closed


def test_close_sends_what_is_queued_first_then_nothing_more() -> None:
    async def scenario() -> Wire:
        wire = Wire(wait_every=2)
        outlet = await outlet_on(wire)
        for n in range(5):
            outlet.push({"type": "signal", "n": n})
        outlet.close(CLOSE_NORMAL)
        outlet.push({"type": "signal", "n": 99})
        outlet.close(CLOSE_TOO_SLOW)
        await outlet.finish()
        return wire

    wire = asyncio.run(scenario())
    assert [m["n"] for m in wire.texts()] == [0, 1, 2, 3, 4]
    assert wire.closes() == [CLOSE_NORMAL]
    assert wire.sent[-1]["type"] == "websocket.close"


def test_abort_cancels_a_send_that_waits() -> None:
    async def scenario() -> tuple[SocketOutlet, Wire]:
        wire = Wire()
        outlet = await outlet_on(wire)
        wire.open.clear()
        outlet.push({"type": "pong"})
        await asyncio.sleep(0)  # the writer starts, and waits in its send
        assert outlet.writing
        outlet.abort()
        await asyncio.sleep(0)
        return outlet, wire

    outlet, wire = asyncio.run(scenario())
    assert not outlet.writing and outlet.closed
    assert wire.texts() == []


# --- through a real server ------------------------------------------------------------


async def _join(url: str, cookie: str, peer: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await ws_connect(url, additional_headers={"Cookie": f"mendwell_session={cookie}"},
                          max_size=2**20)
    await ws.send(json.dumps({"type": "hello", "peer_id": peer}))
    while (message := json.loads(await ws.recv()))["type"] != "welcome":
        pass
    return ws, message


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_burst_of_signals_arrives_in_order_through_the_real_server(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    burst = 50  # within the rate limit's burst of 60

    with LiveServer(database_url, tmp_path) as server:
        url = f"{server.signaling_url}/ws/visits/{clinic.visit_id}"

        async def scenario() -> tuple[list[int], list[str]]:
            doctor, _ = await _join(url, prescriber_cookie, "prescriber-peer-1")
            patient, welcome = await _join(url, patient_cookie, "patient-peer-01")
            if welcome["state"] != "admitted":
                await doctor.send(json.dumps({"type": "admit", "peer_id": "patient-peer-01"}))
                while json.loads(await patient.recv())["type"] != "admitted":
                    pass
            sdp = "v=0\r\n" + "a=x-pad:" + "f" * 4000 + "\r\n"
            # Offers (4 kB) and candidates, written back to back without waiting.
            for n in range(burst):
                if n % 5 == 0:
                    body: dict[str, Any] = {"description": {"type": "offer",
                                                            "sdp": f"{sdp}a=n:{n}\r\n"}}
                else:
                    body = {"candidate": {"candidate": f"candidate:{n} 1 udp 1 1.2.3.4 5 typ host",
                                          "sdpMid": "0", "sdpMLineIndex": 0}}
                await patient.send(json.dumps({"type": "signal", "to": "prescriber-peer-1",
                                               **body}))
            got: list[int] = []
            other: list[str] = []
            while len(got) < burst:
                message = json.loads(await doctor.recv())
                if message["type"] != "signal":
                    other.append(message.get("code", message["type"]))
                    continue
                assert message["from"] == "patient-peer-01"
                if "description" in message:
                    got.append(int(message["description"]["sdp"].rsplit("a=n:", 1)[1].strip()))
                else:
                    got.append(int(message["candidate"]["candidate"].split()[0][10:]))
            await patient.close()
            await doctor.close()
            return got, other

        got, other = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert got == list(range(burst))
    assert "error" not in other and "rate_limited" not in other
