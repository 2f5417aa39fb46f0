"""A WebSocket's outgoing side: queued, in order, never blocking whoever sends to it.

Rooms deliver to many sockets from one task; a slow or stalled client must not hold that
task up. A message to a socket with nothing queued is written at once: framed and handed
to the transport by Mendwell's server (``write_text``, server/websocket_protocol.py),
or, under another server, by stepping the ASGI send in place (with uvicorn it finishes
there). Only when a send has to wait (the server applies backpressure) do messages
queue, drained in order by a task that exists only while there is something queued, so
an idle socket costs no task and a steady stream of signals costs no task per message. A
client that lets the queue grow past its limit is too slow to take part in a call and is
closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Generator
from typing import Any

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.websocket_protocol import direct_socket
from signaling.protocol import CLOSE_TOO_SLOW, dumps

log = logging.getLogger("mendwell.signaling")

QUEUE_LIMIT = 256

# The socket is gone: the reader sees the disconnect and cleans up.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class SocketOutlet:
    __slots__ = ("_direct", "_flusher", "_pending", "_send", "closed", "closing")

    def __init__(self, websocket: WebSocket) -> None:
        # The ASGI send under Starlette's WebSocket (which adds only state checks that
        # this class makes itself: nothing is sent after the close).
        self._send: Send = websocket._send
        # Mendwell's server frames and writes a message in place when it can
        # (server/websocket_protocol.py); under any other server every message is stepped
        # through the ASGI send.
        self._direct = direct_socket(websocket.scope)
        # Created when a send has to wait: an idle socket keeps no queue (a deque costs
        # 600 bytes).
        self._pending: deque[str | int] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.closing = False
        self.closed = False

    def push(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        if self._pending is None:
            if not self.closed:
                text = dumps(message)
                if self._direct is None or not self._direct.write_text(text):
                    self._write_now({"type": "websocket.send", "text": text})
            return
        if len(self._pending) >= QUEUE_LIMIT:
            self.close(CLOSE_TOO_SLOW)
            return
        self._pending.append(dumps(message))

    def close(self, code: int) -> None:
        """Send what is queued, then close with ``code``."""
        if self.closing:
            return
        self.closing = True
        if self._pending is None:
            if not self.closed:
                self.closed = True
                self._write_now({"type": "websocket.close", "code": code, "reason": ""})
            return
        self._pending.append(code)

    def _write_now(self, message: dict[str, Any]) -> None:
        """Step the send in place; if it has to wait, finish it in the flusher task."""
        send = self._send(message).__await__()
        try:
            waiting_on = send.send(None)
        except StopIteration:
            return
        except _GONE:
            self.closed = True
            return
        except Exception:
            # Raised in whoever pushed (another member's task) it would fail the wrong
            # socket: this one is closed instead.
            log.exception("sending on a signaling socket failed")
            self.closed = True
            return
        # Whatever is pushed from now on queues behind this send.
        self._pending = deque()
        self._flusher = asyncio.create_task(self._flush(_Resumed(send, waiting_on)))

    async def _flush(self, first: _Resumed) -> None:
        pending = self._pending
        assert pending is not None
        try:
            await first
            while pending:
                item = pending.popleft()
                if isinstance(item, int):
                    self.closed = True
                    await self._send({"type": "websocket.close", "code": item, "reason": ""})
                    break
                await self._send({"type": "websocket.send", "text": item})
        except _GONE:
            self.closed = True
        finally:
            # Drained (or closed): let the queue go until a send has to wait again.
            self._pending = None
            self._flusher = None

    async def finish(self) -> None:
        """Wait until everything queued has been written (before the endpoint returns)."""
        while self._flusher is not None:
            await self._flusher

    def abort(self) -> None:
        self.closing = self.closed = True
        self._pending = None
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None


class _Resumed:
    """The rest of a coroutine that was stepped once outside any task, to be awaited.

    What the coroutine yielded (the future it waits on) is handed to the awaiting task,
    which resumes it when that future is done, exactly as if the task had started it.
    """

    __slots__ = ("_steps", "_yielded")

    def __init__(self, steps: Generator[Any, Any, None], yielded: Any) -> None:
        self._steps = steps
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self._steps, self._yielded
        while True:
            try:
                value = yield yielded
            except BaseException as exc:  # cancellation: let the send clean up
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                yielded = coro.send(value)
            except StopIteration:
                return
