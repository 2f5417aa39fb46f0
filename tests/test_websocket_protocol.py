"""The WebSocket protocol Mendwell runs under uvicorn: its direct path (``mendwell.direct``)
keeps ASGI's order, backpressure and failure handling.

A real uvicorn server (in a thread, on loopback) runs a small ASGI app that uses the
extension; the client is a raw socket that writes several frames in one go, so the
server reads them in one ``data_received`` as from a fast client.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
from websockets.frames import Close, Opcode

from server.websocket_protocol import MendwellWebSocketProtocol, direct_socket, text_frame
from tests.signaling_support import FrameSocket, free_port

Connect = Callable[[], FrameSocket]

# What the app saw, for the assertions (the server runs in this process).
hook_calls: list[str] = []
refusals: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    direct = direct_socket(scope)
    assert direct is not None

    def hook(text: str) -> bool:
        hook_calls.append(text)
        if text == "boom":
            raise RuntimeError("a bug in the handler")
        if text.startswith("take:"):
            assert direct.write_text("took:" + text)
            return True
        return False

    direct.set_text_hook(hook)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await send({"type": "websocket.send", "text": f"bytes:{len(message['bytes'])}"})
            continue
        if text.startswith("slow:"):
            await asyncio.sleep(0.2)
        elif text == "flood":
            # Write until the transport pushes back (the client is not reading).
            written = 0
            while written < 10_000 and direct.write_text("x" * 65536):
                written += 1
            await send({"type": "websocket.send", "text": f"refused after {written}"})
        elif text == "sizes":
            for size in (0, 125, 126, 65535, 65536, 70000):
                assert direct.write_text("s" * size)
        elif text == "close":
            await send({"type": "websocket.close", "code": 4000})
            refusals.append(f"after close: {direct.write_text('late')}")
            continue
        await send({"type": "websocket.send", "text": "queued:" + text})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           ws=MendwellWebSocketProtocol, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def connect(port: int) -> Iterator[Connect]:
    hook_calls.clear()
    refusals.clear()
    opened: list[FrameSocket] = []

    def new() -> FrameSocket:
        opened.append(FrameSocket(port, "/"))
        return opened[-1]

    yield new
    for client in opened:
        client.close()


def texts(frames: list[Any]) -> list[str]:
    return [bytes(f.data).decode() for f in frames if f.opcode is Opcode.TEXT]


def test_the_hook_takes_a_message_and_write_text_answers_in_place(connect: Connect) -> None:
    client = connect()
    client.write("take:1")
    assert texts(client.frames(lambda f: True)) == ["took:take:1"]
    assert hook_calls == ["take:1"]


def test_a_declined_message_reaches_receive_and_nothing_overtakes_it(connect: Connect) -> None:
    client = connect()
    # One write: the first is taken at once; the second is declined and queued; the
    # third, behind it, must wait its turn (the hook is not even asked) although the
    # hook would take it.
    client.write("take:1", "slow:2", "take:3")
    got = texts(client.frames(lambda f: bytes(f.data) == b"queued:take:3"))
    assert got == ["took:take:1", "queued:slow:2", "queued:take:3"]
    assert hook_calls == ["take:1", "slow:2"]


def test_a_fragmented_message_goes_through_receive_whole(connect: Connect) -> None:
    client = connect()
    client.codec.send_text(b"take:frag", fin=False)
    client.codec.send_continuation(b"ment", fin=True)
    client.flush()
    assert texts(client.frames(lambda f: True)) == ["queued:take:fragment"]
    assert hook_calls == []


def test_text_frames_of_every_length_encoding(connect: Connect) -> None:
    client = connect()
    client.write("sizes")
    got = texts(client.frames(lambda f: bytes(f.data) == b"queued:sizes"))
    assert [len(t) for t in got[:-1]] == [0, 125, 126, 65535, 65536, 70000]
    assert all(set(t) == {"s"} for t in got[:-1] if t)
    assert text_frame(b"") == b"\x81\x00"


def test_write_text_refuses_under_backpressure_and_asgi_send_waits(connect: Connect) -> None:
    client = connect()
    client.write("flood")
    time.sleep(0.5)  # not reading: the kernel's buffers fill, then uvicorn's
    got = texts(client.frames(lambda f: bytes(f.data).startswith(b"queued:"), timeout=20))
    written = int(got[-2].removeprefix("refused after "))
    # It stopped well before its own cap, everything it wrote arrived whole and in order,
    # and the ASGI send after it waited for the buffer to drain instead of failing.
    assert 0 < written < 10_000
    assert got[:written] == ["x" * 65536] * written
    assert got[written:] == [f"refused after {written}", "queued:flood"]


def test_write_text_refuses_after_the_close(connect: Connect) -> None:
    client = connect()
    client.write("close")
    frames = client.frames(lambda f: f.opcode is Opcode.CLOSE)
    assert Close.parse(frames[-1].data).code == 4000
    deadline = time.monotonic() + 5
    while not refusals and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refusals == ["after close: False"]


def test_a_failing_hook_fails_its_socket_alone(connect: Connect) -> None:
    client = connect()
    client.write("boom")
    frames = client.frames(lambda f: f.opcode is Opcode.CLOSE)
    assert Close.parse(frames[-1].data).code == 1011
    other = connect()
    other.write("take:2")
    assert texts(other.frames(lambda f: True)) == ["took:take:2"]


def test_invalid_utf8_still_fails_the_connection_with_1007(connect: Connect) -> None:
    client = connect()
    client.write(b"take:\xff\xfe")
    frames = client.frames(lambda f: f.opcode is Opcode.CLOSE)
    assert Close.parse(frames[-1].data).code == 1007
    assert hook_calls == []


def test_other_servers_offer_no_direct_path() -> None:
    seen: list[object] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        seen.append(direct_socket(websocket.scope))
        await websocket.accept()
        await websocket.close()

    with TestClient(endpoint).websocket_connect("/"):
        pass
    assert seen == [None]


def test_the_inbox_keeps_order_and_survives_a_cancelled_get() -> None:
    from server.websocket_protocol import _Inbox

    async def scenario() -> list[Any]:
        inbox = _Inbox()
        assert inbox.empty()
        waiting = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        waiting.cancel()  # as asyncio.timeout does to a receive for the hello
        await asyncio.gather(waiting, return_exceptions=True)
        inbox.put_nowait(1)
        inbox.put_nowait(2)
        assert not inbox.empty()
        got = [await inbox.get(), await inbox.get()]
        later = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait(3)
        got.append(await asyncio.wait_for(later, 1))
        assert inbox.empty()
        return got

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_the_writable_flag_wakes_every_waiter_and_forgets_cancelled_ones() -> None:
    from server.websocket_protocol import _Flag

    async def scenario() -> None:
        flag = _Flag()
        assert flag.is_set()
        await asyncio.wait_for(flag.wait(), 1)  # set: no waiting
        flag.clear()
        first, second, gone = (asyncio.ensure_future(flag.wait()) for _ in range(3))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        await asyncio.sleep(0.01)
        assert not first.done() and not second.done()
        flag.set()
        await asyncio.wait_for(asyncio.gather(first, second), 1)
        assert flag._waiters is None

    asyncio.run(scenario())


def test_frames_of_every_length_and_kind_read_in_one_go(connect: Connect) -> None:
    client = connect()
    # Payload lengths in 7, 16 and 64 bits, and a ping among them (a control frame,
    # which websockets answers): every text is offered once, in order.
    sizes = (0, 120, 121, 1000, 65530, 70000, 3)
    for n, size in enumerate(sizes):
        client.codec.send_text(f"take:{'a' * size}".encode())
        if n == 2:
            client.codec.send_ping(b"are you there")
    client.flush()
    frames = client.frames(lambda f: bytes(f.data) == b"took:take:aaa", timeout=10,
                           kinds=(Opcode.PONG,))
    assert [len(t) - len("took:take:") for t in texts(frames)] == list(sizes)
    assert hook_calls == [f"take:{'a' * size}" for size in sizes]
    # Answered in its place: after the third reply, before the fourth.
    assert [f.opcode for f in frames].index(Opcode.PONG) == 3


def test_a_frame_cut_between_two_reads(connect: Connect) -> None:
    client = connect()
    for n in range(3):
        client.codec.send_text(f"take:{n}".encode() + b"x" * 500)
    data = b"".join(client.codec.data_to_send())
    cut = len(data) // 2  # inside the second frame
    client.sock.sendall(data[:cut])
    time.sleep(0.2)
    client.sock.sendall(data[cut:])
    got = texts(client.frames(lambda f: bytes(f.data).startswith(b"took:take:2"), timeout=5))
    assert [t[:11] for t in got] == ["took:take:0", "took:take:1", "took:take:2"]
    assert [c[:6] for c in hook_calls] == ["take:0", "take:1", "take:2"]


# Messages a client may send, as the frames that carry them: a plain text (taken by the
# hook), a text the hook declines, a text in fragments, a binary message, a ping.
_message = st.one_of(
    st.tuples(st.just("take"), st.sampled_from([0, 1, 60, 119, 120, 121, 500, 65529, 65530,
                                                 65531, 70000])),
    st.tuples(st.just("other"), st.integers(0, 300)),
    st.tuples(st.just("fragments"), st.integers(2, 4)),
    st.tuples(st.just("binary"), st.integers(0, 300)),
    st.tuples(st.just("ping"), st.just(0)),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_message, min_size=1, max_size=8),
       cuts=st.lists(st.floats(0, 1), max_size=6))
def test_any_mix_of_frames_cut_anywhere_is_answered_in_order(
    connect: Connect, messages: list[tuple[str, int]], cuts: list[float]
) -> None:
    """The frames parsed in ``data_received`` and those left to websockets, however the
    stream is cut into reads, reach the app once each and in order."""
    hook_calls.clear()
    client = connect()
    expected = []  # what each reply says after "took:" or "queued:"
    for n, (kind, size) in enumerate([*messages, ("take", 0)]):
        body = f"{n}:" + "a" * size
        if kind == "take":
            client.codec.send_text(f"take:{body}".encode())
            expected.append(f"take:{body}")
        elif kind == "other":
            client.codec.send_text(f"other:{body}".encode())
            expected.append(f"other:{body}")
        elif kind == "fragments":
            client.codec.send_text(f"frag:{n}:".encode(), fin=False)
            for part in range(1, size):
                client.codec.send_continuation(b"x", fin=part == size - 1)
            expected.append(f"frag:{n}:" + "x" * (size - 1))
        elif kind == "binary":
            client.codec.send_binary(b"b" * size)
            expected.append(f"bytes:{size}")
        else:
            client.codec.send_ping(f"{n}".encode())
    data = b"".join(client.codec.data_to_send())
    offsets = sorted({int(c * len(data)) for c in cuts} | {0, len(data)})
    for start, stop in itertools.pairwise(offsets):
        client.sock.sendall(data[start:stop])
        time.sleep(0.002)
    replies = 0

    def all_answered(frame: Any) -> bool:
        nonlocal replies
        replies += frame.opcode is Opcode.TEXT
        return replies == len(expected)

    got = texts(client.frames(all_answered, timeout=10))
    assert [g.removeprefix("took:").removeprefix("queued:") for g in got] == expected
    # The hook took only what it takes, was offered each message at most once, and never
    # a message in fragments.
    assert all(g.startswith("took:take:") for g in got if g.startswith("took:"))
    assert len(hook_calls) == len(set(hook_calls))
    assert {g.removeprefix("took:") for g in got if g.startswith("took:")} <= set(hook_calls)
    assert not any(c.startswith("frag:") for c in hook_calls)


def test_a_cut_frame_is_not_read_from_its_middle(connect: Connect) -> None:
    """A read that starts inside a frame is websockets' to finish, even when what follows
    the cut looks like a whole frame: here a valid masked text frame, "take:evil", sits
    inside the payload of the real one (masking key zero, which a client may send)."""
    client = connect()
    payload = b"take:" + b"\xe1" + b"\x81\x89" + b"\x00" * 4 + b"take:evil" + b" tail"
    payload.decode()  # the whole payload is valid UTF-8 (U+1049, NULs, ASCII)
    frame = bytes((0x81, 0x80 | len(payload))) + b"\x00" * 4 + payload
    cut = 2 + 4 + len(b"take:\xe1")  # right before the frame-like bytes
    client.sock.sendall(frame[:cut])
    time.sleep(0.2)
    client.sock.sendall(frame[cut:])
    assert texts(client.frames(lambda f: True)) == ["took:" + payload.decode()]
    assert hook_calls == [payload.decode()]


def test_a_text_frame_inside_a_fragmented_message_is_still_a_protocol_error(
    connect: Connect,
) -> None:
    client = connect()

    def frame(first: int, payload: bytes) -> bytes:
        return bytes((first, 0x80 | len(payload))) + b"\x00" * 4 + payload

    client.sock.sendall(frame(0x01, b"frag:"))  # text, more to come
    time.sleep(0.2)
    client.sock.sendall(frame(0x81, b"take:x"))  # a new message: not allowed here
    frames = client.frames(lambda f: f.opcode is Opcode.CLOSE)
    assert Close.parse(frames[-1].data).code == 1002
    assert hook_calls == []
