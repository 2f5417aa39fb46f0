"""Hypothesis against every WebSocket protocol: ``/ws/visits/{id}``, ``/ws/events`` and
``/ws/device-check`` (docs/signaling.md).

Each socket gets arbitrary JSON, near-valid messages (a real message with a field
dropped, replaced by any JSON value, or one added) and hostile frames (NaN, Infinity,
1e999, huge integers, lone surrogates, NUL, deep nesting, non-objects, broken JSON, binary
frames, frames over the size limit). After every frame a ``ping`` must be answered with
``pong`` on the same socket: the socket never crashes (1011) or closes. A frame the
protocol refuses is answered with an ``error`` before that ``pong``, with the code of the
refusal; hostile frames with the code that names what is wrong (``invalid_text``,
``invalid_number``, ``too_deep``, ...), the same as the HTTP API's.

Bounded for CI: a fixed number of frames per socket, derandomized. A socket is replaced
every ``FRAMES_PER_SOCKET`` frames, so the rate limit (a burst of 60) never answers in
place of the protocol. The database does not matter to these messages except for the
guest's device check, which has its own test on both databases.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from signaling import protocol
from signaling.protocol import End, Leave, ProtocolError
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import Closed, Socket, connect, cookie_of

FRAMES_PER_SOCKET = 24  # two frames each (the frame and the ping): under the burst of 60
PATIENT_PEER = "fuzz-patient-1"
PRESCRIBER_PEER = "fuzz-prescriber-1"


def bounded(examples: int) -> settings:
    # Derandomized (the same frames on every run, so CI cannot fail by chance), no
    # example database, no shrinking: a failure prints the frame that broke it.
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


# --- frames ----------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**31), 2**31)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=10)
peer_ids = st.sampled_from([PATIENT_PEER, PRESCRIBER_PEER, "fuzz-nobody-here", "x", "",
                            "../../etc", "a" * 65, "peer id with spaces"])
SDP = ("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
       "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\n"
       "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
       "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=sendrecv\r\n"
       "a=rtpmap:111 opus/48000/2\r\n")
sdps = st.sampled_from(["", "v=0", SDP, SDP.replace("a=rtcp-mux\r\n", ""), "m=audio x",
                        "m=video \r\nc=IN", SDP[:120]]) | st.text(max_size=40)
candidates = st.fixed_dictionaries(
    {"candidate": st.sampled_from([
        "", "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
        "candidate:1 1 udp 1 192.0.2.1 5 typ", "x", "1 1 udp x 1.2.3.4 5 typ host"])
     | st.text(max_size=30)},
    optional={"sdpMid": st.none() | st.sampled_from(["0", "1"]) | json_values,
              "sdpMLineIndex": st.none() | st.integers(-2, 2000) | json_values,
              "usernameFragment": st.text(max_size=8)})

SIGNALING_MESSAGES = [
    st.fixed_dictionaries({"type": st.just("hello"), "peer_id": peer_ids},
                          optional={"polite_capable": st.booleans(),
                                    "guest_token": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("signal"), "to": peer_ids, "description":
                           st.fixed_dictionaries({"type": st.sampled_from(
                               ["offer", "answer", "rollback", "pranswer"]), "sdp": sdps})}),
    st.fixed_dictionaries({"type": st.just("signal"), "to": peer_ids,
                           "candidate": st.none() | candidates}),
    st.fixed_dictionaries({"type": st.sampled_from(["admit", "remove"]), "peer_id": peer_ids}),
    st.fixed_dictionaries({"type": st.sampled_from(["ice-refresh", "ping", "teleport"])}),
]
DEVICE_CHECK_MESSAGES = [
    st.fixed_dictionaries({"type": st.just("start")},
                          optional={"relay": st.booleans(), "visit_id": json_values,
                                    "guest_token": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("offer"), "sdp": sdps}),
    st.fixed_dictionaries({"type": st.just("candidate"), "candidate": st.none() | candidates}),
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "stats", "answer"])}),
]


@st.composite
def near_valid(draw: st.DrawFn, messages: list[st.SearchStrategy[dict[str, Any]]]
               ) -> dict[str, Any]:
    """A message of the protocol, maybe with one field dropped, replaced or added."""
    message = dict(draw(st.one_of(messages)))
    how = draw(st.sampled_from(["as is", "drop", "replace", "add"]))
    keys = sorted(message)
    if how == "drop":
        message.pop(draw(st.sampled_from(keys)))
    elif how == "replace":
        message[draw(st.sampled_from(keys))] = draw(json_values)
    elif how == "add":
        message[draw(st.text(max_size=10))] = draw(json_values)
    return message


# Hostile values spliced into a message as raw JSON text, with the error they must get.
HOSTILE: list[tuple[str, str]] = [
    ("NaN", "invalid_number"), ("Infinity", "invalid_number"),
    ("-Infinity", "invalid_number"), ("1e999", "invalid_number"),
    ("-1e999", "invalid_number"), ("18446744073709551616", "invalid_number"),
    (str(2**53 + 1), "invalid_number"), ("-" + "9" * 400, "invalid_number"),
    ('"\\ud800"', "invalid_text"), ('"a\\udfffb"', "invalid_text"),
    ('"\\ud800\\u0041"', "invalid_text"), ('"\\u0000"', "invalid_text"),
    ('"tail\\u0000"', "invalid_text"), ('{"\\u0000": 1}', "invalid_text"),
    ("[" * 40 + "]" * 40, "too_deep"), ("[" * 2000 + "]" * 2000, "too_deep"),
    ('{"a":' * 300 + "1" + "}" * 300, "too_deep"),
]


def clean(message: dict[str, Any]) -> bool:
    try:
        protocol.check_values(message)
    except ProtocolError:
        return False
    return True


@st.composite
def hostile(draw: st.DrawFn, messages: list[st.SearchStrategy[dict[str, Any]]]
            ) -> tuple[str, str]:
    """A message with one value (or an added key's value) replaced by a hostile one;
    the rest of the message is clean, so the hostile value is what must be named."""
    message = dict(draw(st.one_of(messages).filter(clean)))
    value, code = draw(st.sampled_from(HOSTILE))
    key = draw(st.sampled_from([*sorted(k for k in message if k != "type"), "extra"]))
    message[key] = "\x01HOSTILE\x01"
    return json.dumps(message).replace('"\\u0001HOSTILE\\u0001"', value), code


BROKEN = ["", " ", "{", '{"type": "ping"', "null", "[]", '"ping"', "5", "true",
          '{"type": null}', '{"type": ["ping"]}', "{'type': 'ping'}",
          '{"type": "ping"}{"type": "ping"}', '{"type": "ping",}', "\ufeff{}",
          '{"type": "ping", "a": "\\ud800"}']
# (A lone surrogate itself has no UTF-8 form, so no client can put one in a text frame;
# bytes that are not UTF-8 close the socket with 1007: tests/test_signaling.py.)


def frames(messages: list[st.SearchStrategy[dict[str, Any]]]
           ) -> st.SearchStrategy[tuple[str | bytes, str | None]]:
    """(frame, the error code it must get or None when the parser decides)."""
    plain = st.one_of(json_values, near_valid(messages), near_valid(messages)).map(
        lambda v: (json.dumps(v), None))
    return st.one_of(
        plain, plain,
        hostile(messages),
        st.sampled_from(BROKEN).map(lambda t: (t, None)),
        st.text(max_size=30).map(lambda t: (t, None)),
        st.binary(max_size=20).map(lambda b: (b, "invalid_message")),
        st.just(('{"type": "ping", "pad": "' + "x" * protocol.MAX_FRAME_BYTES + '"}',
                 "too_large")),
    )


def expected_code(frame: str | bytes, given_code: str | None,
                  parse: Callable[[str], Any]) -> str | None:
    """The error code the frame must be answered with (None: any answer, or none)."""
    if given_code is not None or isinstance(frame, bytes):
        return given_code
    try:
        parse(frame)
    except ProtocolError as refused:
        return refused.code
    return None


# --- sockets ---------------------------------------------------------------------------


class Rotating:
    """The current socket, replaced by a fresh one every ``FRAMES_PER_SOCKET`` frames."""

    def __init__(self, opener: Callable[[contextlib.ExitStack], Socket]) -> None:
        self.opener = opener
        self.stack = contextlib.ExitStack()
        self.socket: Socket | None = None
        self.sent = 0
        self.frames = 0
        self.codes: Counter[str] = Counter()   # error codes received
        self.kinds: Counter[str] = Counter()   # other messages received

    def __call__(self) -> Socket:
        if self.socket is None or self.sent >= FRAMES_PER_SOCKET:
            self.stack.close()
            self.stack = contextlib.ExitStack()
            self.socket = self.opener(self.stack)
            self.sent = 0
        self.sent += 1
        self.frames += 1
        return self.socket

    def close(self) -> None:
        self.stack.close()


def is_ping(frame: str | bytes) -> bool:
    if isinstance(frame, bytes):
        return False
    try:
        return bool(protocol.decode(frame)["type"] == "ping")
    except ProtocolError:
        return False


def exchange(ws: Socket, frame: str | bytes) -> list[dict[str, Any]]:
    """Send ``frame`` then a ping; everything received up to the pong (the socket must
    answer and stay open). A frame that is a ping itself gets a pong of its own first."""
    if isinstance(frame, bytes):
        ws.send_bytes(frame)
    else:
        ws.send_text(frame)
    ws.send({"type": "ping"})
    got: list[dict[str, Any]] = []
    pongs = 2 if is_ping(frame) else 1
    while True:
        try:
            message = ws.receive(timeout=10.0)
        except Closed as closed:
            raise AssertionError(f"closed with {closed.code} after {frame!r:.200}; "
                                 f"got {got}") from None
        if message["type"] == "pong":
            pongs -= 1
            if not pongs:
                return got
        else:
            got.append(message)


def check_answer(sockets: Rotating, frame: str | bytes, code: str | None,
                 got: list[dict[str, Any]]) -> None:
    errors = [m for m in got if m["type"] == "error"]
    sockets.codes.update(e["code"] for e in errors)
    sockets.kinds.update(m["type"] for m in got if m["type"] != "error")
    if code is not None:
        assert any(e["code"] == code for e in errors), \
            f"{frame!r:.200} must get error {code}; got {got}"
    for error in errors:
        assert set(error) == {"type", "code", "message", "field"}, error


def sweep(sockets: Rotating) -> None:
    """Every hostile value once in a ping, and the frames that are wrong as frames: the
    fuzzing above draws them by chance, this makes sure each is sent."""
    fixed: list[tuple[str | bytes, str]] = [
        (f'{{"type": "ping", "x": {value}}}', code) for value, code in HOSTILE]
    fixed += [(b'{"type": "ping"}', "invalid_message"), ("[]", "invalid_message"),
              ('{"type": "ping", "pad": "' + "x" * protocol.MAX_FRAME_BYTES + '"}',
               "too_large")]
    for frame, code in fixed:
        check_answer(sockets, frame, code, exchange(sockets(), frame))


# What the fuzzing must have reached, so that a change of the strategies that stops
# sending some kind of frame fails here rather than testing less without a word.
EVERY_REFUSAL = {"invalid_message", "invalid_text", "invalid_number", "too_deep", "too_large"}


def report(name: str, sockets: Rotating, must_see: set[str]) -> None:
    print(f"{name}: {sockets.frames} frames, errors {dict(sockets.codes)}, "
          f"other answers {dict(sockets.kinds)}")
    seen = set(sockets.codes) | set(sockets.kinds)
    assert must_see <= seen, must_see - seen


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_visit_socket_answers_every_frame_and_stays_open(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    """The prescriber's socket is fuzzed (admitted, it may signal, admit and remove);
    the patient waits in the same room as the target of admit, remove and signal."""
    patient = cookie_of(sign_in, clinic.patient)
    prescriber = cookie_of(sign_in, clinic.prescriber)
    room = f"/ws/visits/{clinic.visit_id}"
    with contextlib.ExitStack() as stack:
        patient_ws = stack.enter_context(connect(client, room, patient))
        assert patient_ws.hello(PATIENT_PEER)["state"] == "waiting"

        def open_prescriber(sockets: contextlib.ExitStack) -> Socket:
            # Everything the patient's socket was sent meanwhile is read, so its queue
            # never fills (4408).
            patient_ws.quiet(0.05)
            ws = sockets.enter_context(connect(client, room, prescriber))
            assert ws.hello(PRESCRIBER_PEER)["state"] == "admitted"
            return ws

        sockets = Rotating(open_prescriber)
        stack.callback(sockets.close)

        @bounded(300)
        @given(item=frames(SIGNALING_MESSAGES))
        def one(item: tuple[str | bytes, str | None]) -> None:
            frame, given_code = item
            if isinstance(frame, str):
                with contextlib.suppress(ProtocolError):
                    if isinstance(protocol.parse(frame), Leave | End):
                        return  # would close the socket or end the visit, as it should
            code = expected_code(frame, given_code, protocol.parse)
            check_answer(sockets, frame, code, exchange(sockets(), frame))

        one()
        sweep(sockets)
        # The patient's socket, never fuzzed, is still open and answers too.
        patient_ws.quiet(0.05)
        assert exchange(patient_ws, '{"type": "ping"}') is not None
    report("visit socket", sockets,
           EVERY_REFUSAL | {"invalid_state", "unknown_peer", "ice-servers"})


@SQLITE_ONLY
def test_events_socket_answers_every_frame_and_stays_open(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    coordinator = cookie_of(sign_in, clinic.coordinator)

    def open_events(sockets: contextlib.ExitStack) -> Socket:
        ws = sockets.enter_context(connect(client, "/ws/events", coordinator))
        ws.expect("subscribed")
        return ws

    def parse(text: str) -> None:
        if protocol.decode(text)["type"] != "ping":
            raise protocol.InvalidMessage("Only ping is accepted here.", field="type")

    sockets = Rotating(open_events)
    try:
        @bounded(200)
        @given(item=frames(SIGNALING_MESSAGES))
        def one(item: tuple[str | bytes, str | None]) -> None:
            frame, given_code = item
            code = expected_code(frame, given_code, parse)
            check_answer(sockets, frame, code, exchange(sockets(), frame))

        one()
        sweep(sockets)
    finally:
        sockets.close()
    report("events socket", sockets, EVERY_REFUSAL)


@SQLITE_ONLY
def test_device_check_socket_answers_every_frame_and_stays_open(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    """A signed-in patient's check, started (an aiortc peer is waiting for the offer):
    offers and candidates that aiortc cannot read are refused, never a crash."""
    patient = cookie_of(sign_in, clinic.patient)

    def open_check(sockets: contextlib.ExitStack) -> Socket:
        ws = sockets.enter_context(connect(client, "/ws/device-check", patient))
        ws.send({"type": "start"})
        ws.expect("ready")
        return ws

    sockets = Rotating(open_check)
    try:
        @bounded(200)
        @given(item=frames(DEVICE_CHECK_MESSAGES))
        def one(item: tuple[str | bytes, str | None]) -> None:
            frame, given_code = item
            if isinstance(frame, str):
                with contextlib.suppress(ProtocolError):
                    if protocol.decode(frame)["type"] == "stop":
                        return  # ends the check, as it should
            code = expected_code(frame, given_code, protocol.decode)
            got = exchange(sockets(), frame)
            check_answer(sockets, frame, code, got)
            errors = [m for m in got if m["type"] == "error"]
            if isinstance(frame, str) and code is None and errors:
                # Refused by the check itself: only the codes it documents.
                assert {e["code"] for e in errors} <= {
                    "invalid_message", "invalid_state", "invalid_offer", "no_turn"}, got

        one()
        sweep(sockets)
        # And on fresh checks: an offer aiortc can only assert on, then a good one.
        for sdp, code in [("m=audio x", "invalid_offer"), ("m=video \r\nc=IN", "invalid_offer"),
                          (SDP, None)]:
            sockets.sent = FRAMES_PER_SOCKET
            got = exchange(sockets(), json.dumps({"type": "offer", "sdp": sdp}))
            check_answer(sockets, sdp, code, got)
            assert code is not None or [m["type"] for m in got] == ["answer"], got
    finally:
        sockets.close()
    report("device-check socket", sockets,
           EVERY_REFUSAL | {"invalid_state", "invalid_offer", "answer"})


@pytest.mark.parametrize("visit_id", [2**31, 2**53, -1, True])
def test_a_guest_device_check_with_an_id_out_of_range_is_refused(
    client: TestClient, visit_id: Any
) -> None:
    """An id beyond the database's integer column reached the driver and crashed the
    socket (1011 on PostgreSQL); now it is no visit, so: unauthenticated (4401)."""
    with connect(client, "/ws/device-check") as ws:
        ws.send({"type": "start", "visit_id": visit_id, "guest_token": "t" * 32})
        error = ws.expect("error")
        assert error["code"] == "unauthenticated", error
        assert ws.closed() == 4401
