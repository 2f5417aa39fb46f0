"""A WebSocket's outgoing side: queued, in order, never blocking whoever sends to it.

Rooms deliver to many sockets from one task; a slow or stalled client must not hold that
task up. Messages wait in a short queue drained by a task that exists only while there
is something to send, so an idle socket costs no task. A client that lets the queue
grow past its limit is too slow to take part in a call and is closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from signaling.protocol import CLOSE_TOO_SLOW, dumps

QUEUE_LIMIT = 256


class SocketOutlet:
    __slots__ = ("_flusher", "_pending", "_websocket", "closed", "closing")

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        # Created on first use: an idle socket keeps no queue (a deque costs 600 bytes).
        self._pending: deque[str | int] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.closing = False
        self.closed = False

    def push(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        if self._pending is None:
            self._pending = deque()
        elif len(self._pending) >= QUEUE_LIMIT:
            self.close(CLOSE_TOO_SLOW)
            return
        self._pending.append(dumps(message))
        self._start()

    def close(self, code: int) -> None:
        """Send what is queued, then close with ``code``."""
        if self.closing:
            return
        self.closing = True
        if self._pending is None:
            self._pending = deque()
        self._pending.append(code)
        self._start()

    def _start(self) -> None:
        if self._flusher is None and not self.closed:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        pending = self._pending
        assert pending is not None
        try:
            while pending:
                item = pending.popleft()
                if isinstance(item, int):
                    self.closed = True
                    await self._websocket.close(item)
                    break
                await self._websocket.send_text(item)
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The client is gone; the reader sees the disconnect and cleans up.
            self.closed = True
        finally:
            # Drained (or closed): let the queue go until there is something to send.
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
