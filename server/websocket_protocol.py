"""The WebSocket protocol uvicorn runs for Mendwell: uvicorn's own, plus a direct path.

Under plain ASGI every frame in and out is a hop through an ``asyncio.Queue``, a task
wake-up and a chain of ``send`` coroutines (Starlette wraps it twice). For the signaling
relay, where one frame in becomes one frame out, that hop cost a third of the CPU per
relayed message and put Mendwell's p99 behind the PeerJS server (docs/performance.md,
"Profile"). This subclass offers the app, through the scope extension ``mendwell.direct``,
two shortcuts that keep ASGI's order and backpressure:

- ``write_text(text)`` frames and writes a text message at once, and says ``False``
  instead when it cannot (the transport is applying backpressure, or the socket is
  closing): the caller then goes through the ASGI ``send``, which waits.
- ``set_text_hook(hook)`` lets the app take a text message inside ``data_received``,
  before it is queued. The hook is only asked when nothing from this socket is queued
  for the app (so nothing is overtaken) and it answers ``False`` to leave a message to
  the ASGI ``receive`` as usual.

Everything else (handshake, heartbeats, close, size limits, fragmented messages, UTF-8
checks) is uvicorn's and websockets' unchanged; apps that ignore the extension (and the
test client, which has no such extension) see plain ASGI.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

EXTENSION = "mendwell.direct"

log = logging.getLogger("mendwell.signaling")

TextHook = Callable[[str], bool]


class DirectSocket(Protocol):
    def write_text(self, text: str) -> bool: ...
    def set_text_hook(self, hook: TextHook | None) -> None: ...


def direct_socket(scope: MutableMapping[str, Any]) -> DirectSocket | None:
    """The direct path of this WebSocket, when the server offers one."""
    extension = scope.get("extensions", {}).get(EXTENSION)
    return None if extension is None else cast(DirectSocket, extension["socket"])


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455, 5.2): what a server sends."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 0x10000:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class MendwellWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with the ``mendwell.direct`` extension."""

    _text_hook: TextHook | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The scope exists only for an upgrade that was accepted; the app's task, created
        # just now, has not run yet.
        if self.response.status_code == 101:
            self.scope["extensions"][EXTENSION] = {"socket": self}

    def write_text(self, text: str) -> bool:
        if (self.close_sent or self.disconnected or not self.handshake_complete
                or self.initial_response is not None or not self.writable.is_set()
                or self.conn.state is not State.OPEN):
            return False
        # Frames are never fragmented here, and per-message compression (when enabled)
        # leaves a frame without RSV1 uncompressed: the connection's state is untouched.
        self.transport.write(text_frame(text.encode()))
        return True

    def set_text_hook(self, hook: TextHook | None) -> None:
        self._text_hook = hook

    def handle_text(self, event: Frame) -> None:
        hook = self._text_hook
        if hook is None or not event.fin or self.close_sent or not self.queue.empty():
            super().handle_text(event)
            return
        try:
            text = str(event.data, "utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None:
            super().handle_text(event)  # which fails the connection with 1007
            return
        try:
            taken = hook(text)
        except Exception:
            # As for an exception in an ASGI app: log it, and fail this socket alone.
            log.exception("a signaling socket's message handler failed")
            self._text_hook = None
            self.conn.fail(1011)
            self.handle_parser_exception()
            return
        if not taken:
            super().handle_text(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._text_hook = None  # the hook holds the app's state for this socket
        super().connection_lost(exc)
