"""A WebSocket's outgoing side: queued, in order, never blocking whoever sends to it.

Rooms deliver to many sockets from one task (the sender's, or the relay's subscriber);
a slow or stalled client must not hold that task up. ``push`` only queues the message;
a writer task, which exists only while something is queued, sends it through the
socket's public ``send_text`` and drains what was queued behind it in order. An idle
socket costs no task. A client that lets the queue grow past its limit is too slow to
take part in a call and is closed (4408).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from signaling.protocol import CLOSE_TOO_SLOW, dumps

log = logging.getLogger("mendwell.signaling")

QUEUE_LIMIT = 256

# The socket is gone: the reader sees the disconnect and cleans up.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class SocketOutlet:
    __slots__ = ("_pending", "_websocket", "_writer", "closed", "closing")

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        # Texts to send, and at most one close code at the end. Created when something
        # is queued: an idle socket keeps no deque (600 bytes each).
        self._pending: deque[str | int] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.closing = False
        self.closed = False

    @property
    def writing(self) -> bool:
        """Whether a writer task is sending what was queued."""
        return self._writer is not None

    def push(self, message: dict[str, Any]) -> None:
        if self.closing or self.closed:
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
        if self.closed:
            return
        if self._pending is None:
            self._pending = deque()
        self._pending.append(code)
        self._start()

    def _start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="signaling-outlet")

    async def _write(self) -> None:
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
        except _GONE:
            self.closed = True
        except Exception:
            # Raised here it would be lost with the task: log it and stop writing; the
            # socket's reader sees the disconnect and cleans up.
            log.exception("sending on a signaling socket failed")
            self.closed = True
        finally:
            # Drained (or closed): the queue goes until something is pushed again.
            self._pending = None
            self._writer = None

    async def finish(self) -> None:
        """Wait until everything queued has been written (before the endpoint returns)."""
        while self._writer is not None:
            await self._writer

    def abort(self) -> None:
        self.closing = self.closed = True
        self._pending = None
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
