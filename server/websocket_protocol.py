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
  the ASGI ``receive`` as usual. While a hook is set, plain text frames (the relay's
  every message) are parsed here rather than by websockets' generator-based parser,
  which cost more per frame than the relay itself (``_take_whole_frames``).

Everything else (handshake, heartbeats, close, size limits, fragmented messages, UTF-8
checks) is uvicorn's and websockets' unchanged; apps that ignore the extension (and the
test client, which has no such extension) see plain ASGI.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

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


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn's protocol uses (``put_nowait``, ``get``,
    ``empty``), for its one reader (the app's ``receive``). A Queue holds four deques
    (2.5 kB) for as long as a socket is open, which is most of a visit; this holds one
    only while something is queued."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class _Flag:
    """The part of ``asyncio.Event`` uvicorn's protocol uses for "the transport takes
    more" (``set``, ``clear``, ``is_set``, ``wait``), without a deque per socket."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class MendwellWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with the ``mendwell.direct`` extension, and
    lighter than it per idle socket (budget: 40 KiB, docs/performance.md)."""

    _text_hook: TextHook | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The scope exists only for an upgrade that was accepted; the app's task, created
        # just now, has not run yet.
        if self.response.status_code == 101:
            self.scope["extensions"][EXTENSION] = {"socket": self}

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and hasattr(self, "request"):
            # The upgrade's request and response are not read again once the answer is
            # sent, and an idle socket lives for hours (0.8 kB, measured with tracemalloc).
            del self.request, self.response

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

    def data_received(self, data: bytes) -> None:
        if self._text_hook is not None:
            data = self._take_whole_frames(data)
            if not data:
                return
        super().data_received(data)

    def _take_whole_frames(self, data: bytes) -> bytes:
        """Offer the hook the plain text frames at the front of ``data``, parsed here, and
        return the rest for websockets' parser, from the first frame it has to see.

        Only frames that need nothing of the parser's state are taken (RFC 6455, 5.2:
        final, text, no extension bits, masked as every client frame must be, length in
        7 or 16 bits, whole in this read), only at a frame boundary of websockets'
        parser, and only while nothing from the socket is queued for the app. Anything
        else (a control frame, a fragment, a frame cut by the read, invalid UTF-8, a
        frame over the size limit) and everything after it goes to websockets, which
        deals with it as before. Its generator costs more per frame than the relay does.
        """
        conn = self.conn
        if conn.reader.buffer or conn.current_size is not None:
            return data
        offset, end = 0, len(data)
        limit = conn.max_message_size
        while end - offset >= 6 and self._text_hook is not None and self.queue.empty() \
                and not self.close_sent and conn.state is State.OPEN:
            if data[offset] != 0x81:  # FIN, text, RSV1-3 clear
                break
            size = data[offset + 1] ^ 0x80  # 128 or more: not masked
            head = offset + 2
            if size == 126:
                size = int.from_bytes(data[head:head + 2], "big")
                head += 2
            elif size > 126:
                break
            start = head + 4
            stop = start + size
            if stop > end or (limit is not None and size > limit):
                break
            try:
                text = apply_mask(data[start:stop], data[head:start]).decode()
            except UnicodeDecodeError:
                break
            offset = stop
            if not self._offer(text):
                # What uvicorn does with a message for the app (send_receive_event_to_app).
                self.queue.put_nowait({"type": "websocket.receive", "text": text})
                if not self.read_paused:
                    self.read_paused = True
                    self.transport.pause_reading()
        return data[offset:] if offset else data

    def handle_text(self, event: Frame) -> None:
        """A text frame websockets parsed (see ``_take_whole_frames`` for the others)."""
        if self._text_hook is None or not event.fin or self.close_sent \
                or not self.queue.empty():
            super().handle_text(event)
            return
        try:
            text = str(event.data, "utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or not self._offer(text):
            super().handle_text(event)  # which fails the connection with 1007 if not UTF-8

    def _offer(self, text: str) -> bool:
        """Whether the hook took the message (or failed, and the socket with it)."""
        assert self._text_hook is not None
        try:
            return self._text_hook(text)
        except Exception:
            # As for an exception in an ASGI app: log it, and fail this socket alone.
            log.exception("a signaling socket's message handler failed")
            self._text_hook = None
            self.conn.fail(1011)
            self.handle_parser_exception()
            return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._text_hook = None  # the hook holds the app's state for this socket
        super().connection_lost(exc)
