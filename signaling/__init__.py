"""WebSocket signaling for video visits: rooms, the waiting room, ICE, aiortc peers.

``server.app`` mounts ``routes()`` (``/ws/events``, ``/ws/device-check``), starts visit
signaling's own listener (``listen``, ``/ws/visits/{id}``: signaling/listener.py), runs
``background()`` and calls ``close(app)`` on shutdown. The protocol is in docs/signaling.md.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute

from server.services import Services
from signaling.hub import close, hub_for, listen, signaling_base
from signaling.waiting import run_waiting_alerts


def routes() -> list[BaseRoute]:
    from signaling import device_check, endpoint

    return [
        WebSocketRoute("/ws/events", endpoint.events),
        WebSocketRoute("/ws/device-check", device_check.endpoint),
    ]


def background() -> list[Callable[[Services], Coroutine[Any, Any, None]]]:
    return [run_waiting_alerts]


__all__ = ["background", "close", "hub_for", "listen", "routes", "signaling_base"]
