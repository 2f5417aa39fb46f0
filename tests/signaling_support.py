"""Helpers for the signaling tests: sockets with timeouts, signed-in cookies, live servers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from server.auth import COOKIE_NAME
from tests import app_server
from tests.clinic import Person
from tests.conftest import TEST_SECRET, SignIn
from tests.databases import require_services
from tests.log_scanner import LOG_SCAN

REDIS_URL = os.environ.get("MENDWELL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Closed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class Socket:
    """A WebSocket client on a real server whose reads time out instead of hanging the
    suite (``websockets``' synchronous client)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.connection.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.connection.send(data)

    def burst(self, messages: list[dict[str, Any]]) -> None:
        """Many frames at once, as a runaway client on a fast link would send them, until
        the server closes the socket (on a loaded machine it may read and close before
        the last frames are written; what it answered is in ``seen`` either way)."""
        for message in messages:
            try:
                self.connection.send(json.dumps(message))
            except ConnectionClosed:
                return

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        try:
            text = self.connection.recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd is not None else 1006) from None
        data: dict[str, Any] = json.loads(text)
        self.seen.append(data)
        return data

    def expect(self, kind: str, timeout: float = 5.0,
               where: Callable[[dict[str, Any]], bool] = lambda m: True) -> dict[str, Any]:
        """The next message of this type (and matching ``where``), skipping others."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            try:
                message = self.receive(max(left, 0.01))
            except TimeoutError:
                raise AssertionError(f"no {kind!r} within {timeout}s; got {skipped}") from None
            if message["type"] == kind and where(message):
                return message
            skipped.append(message)

    def presence(self, where: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 5.0) -> list[dict[str, Any]]:
        message = self.expect("presence", timeout, lambda m: where(m["participants"]))
        participants: list[dict[str, Any]] = message["participants"]
        return participants

    def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (often: nothing)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.receive(left))
            except TimeoutError:
                break
        return got

    def closed(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.receive(max(deadline - time.monotonic(), 0.01))
            except Closed as closed:
                return closed.code
            except TimeoutError:
                raise AssertionError(f"not closed within {timeout}s") from None

    def hello(self, peer_id: str, **extra: Any) -> dict[str, Any]:
        self.send({"type": "hello", "peer_id": peer_id, "polite_capable": True, **extra})
        return self.expect("welcome")


def cookie_of(sign_in: SignIn, person: Person | None, *, visit_id: int | None = None) -> str:
    """A real session cookie for ``person`` (empty for nobody); the jar is left empty."""
    sign_in(person, visit_id=visit_id)
    cookie = sign_in.client.cookies.get(COOKIE_NAME) or ""
    sign_in.client.cookies.clear()
    return cookie


@contextlib.contextmanager
def connect(client: TestClient, path: str, cookie: str = "",
            origin: str | None = None) -> Iterator[Socket]:
    headers = {}
    if cookie:
        headers["cookie"] = f"{COOKIE_NAME}={cookie}"
    if origin:
        headers["origin"] = origin
    client.cookies.clear()
    # Visit signaling has a listener of its own (signaling/listener.py), like in
    # `mendwell serve`; the other sockets are the HTTP app's, served by uvicorn.
    port = app_server.signaling_port_for(client) if path.startswith("/ws/visits/") else \
        app_server.port_for(client)
    url = f"ws://127.0.0.1:{port}{path}"
    with ws_connect(url, additional_headers=headers, compression=None, max_size=None,
                    open_timeout=10, close_timeout=2) as connection:
        yield Socket(connection)


def peer_id() -> str:
    return "p" + uuid.uuid4().hex[:15]


def closed_on_connect(client: TestClient, path: str, cookie: str = "",
                      hello: dict[str, Any] | None = None, origin: str | None = None) -> int:
    """The close code a refused connection gets (the socket is accepted, then closed)."""
    try:
        with connect(client, path, cookie, origin) as ws:
            if hello is not None:
                try:
                    ws.send(hello)
                except ConnectionClosed as exc:
                    # The server may refuse before the hello is sent (a loaded machine
                    # runs its close first): the code it closed with is the answer.
                    if exc.rcvd is None:
                        raise
                    return exc.rcvd.code
            return ws.closed()
    except InvalidStatus as exc:
        # Refused at the upgrade (the app closed before accepting): uvicorn answers 403.
        return exc.response.status_code


# --- live servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_or_skip(reason: str | None) -> None:
    """Skip when a service is missing, or fail when MENDWELL_REQUIRE_SERVICES=1."""
    if reason is None:
        return
    if require_services():
        pytest.fail(f"MENDWELL_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def redis_unavailable(url: str = REDIS_URL) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis not reachable at {url} ({type(exc).__name__})"
    return None


class LiveServer:
    """``mendwell serve`` in a subprocess on a free port, as an operator would run it."""

    def __init__(self, database_url: str, var_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.signaling_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = var_dir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "MENDWELL_ENV": "test",
            "MENDWELL_DATABASE_URL": database_url,
            "MENDWELL_SECRET_KEY": TEST_SECRET,
            "MENDWELL_BASE_URL": self.base_url,
            "MENDWELL_VAR_DIR": str(var_dir),
            "MENDWELL_RUN_BACKGROUND_TASKS": "false",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def signaling_url(self) -> str:
        """Visit signaling's own listener (``/ws/visits/{id}``)."""
        return f"ws://127.0.0.1:{self.signaling_port}"

    def start(self, timeout: float = 15.0) -> LiveServer:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--signaling-port", str(self.signaling_port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(  # noqa: S310 (our own http:// URL)
                        f"{self.base_url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        LOG_SCAN.scan_output("mendwell serve (signaling)",
                             self.log.read_text(errors="replace"))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentSocket:
    """A WebSocket client that says hello and then never answers anything, not even a
    ping: what the server sees of a phone whose network vanished."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        import base64

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nCookie: {COOKIE_NAME}={cookie}\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 101"), response
        # Anything the server wrote right after its answer (frames already).
        self.leftover = response.split(b"\r\n\r\n", 1)[1]

    def send_text(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        self.sock.close()


class FrameSocket(SilentSocket):
    """A raw WebSocket client that writes many frames in one ``send`` (so the server reads
    them in one go, as from a fast client), framed and parsed by websockets' own
    sans-I/O codec."""

    def __init__(self, port: int, path: str, cookie: str = "") -> None:
        from websockets.client import ClientProtocol
        from websockets.protocol import State
        from websockets.uri import parse_uri

        super().__init__(port, path, cookie)
        self.codec = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"),
                                    state=State.OPEN, max_size=2**24)
        self._unread: list[Any] = []
        if self.leftover:
            self.codec.receive_data(self.leftover)

    def write(self, *texts: str | bytes) -> None:
        """Each text as one message, all in one write."""
        for text in texts:
            self.codec.send_text(text.encode() if isinstance(text, str) else text)
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(b"".join(self.codec.data_to_send()))

    def frames(self, until: Callable[[Any], bool], timeout: float = 5.0,
               kinds: tuple[Any, ...] = ()) -> list[Any]:
        """Frames received (text and close, and ``kinds``) up to and including the first
        ``until`` holds for, or all of them when the server closes the connection."""
        from websockets.frames import Opcode

        deadline = time.monotonic() + timeout
        got: list[Any] = []
        while True:
            self._unread.extend(f for f in self.codec.events_received()
                                if f.opcode in (Opcode.TEXT, Opcode.CLOSE, *kinds))
            while self._unread:
                frame = self._unread.pop(0)
                got.append(frame)
                if until(frame):
                    return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"after {len(got)} frames: {got[-3:]}")
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 20)
            if not data:
                return got
            self.codec.receive_data(data)

    def messages(self, until: Callable[[dict[str, Any]], bool],
                 timeout: float = 5.0) -> list[dict[str, Any] | int]:
        """JSON messages up to the first ``until`` holds for; a close is its code."""
        from websockets.frames import Close, Opcode

        def decoded(frame: Any) -> dict[str, Any] | int:
            if frame.opcode is Opcode.CLOSE:
                return Close.parse(frame.data).code
            message: dict[str, Any] = json.loads(frame.data)
            return message

        return [decoded(f) for f in self.frames(
            lambda f: f.opcode is Opcode.CLOSE or until(decoded(f)), timeout)]
