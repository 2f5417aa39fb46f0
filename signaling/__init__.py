"""WebSocket signaling for video visits: rooms, the waiting room, ICE, aiortc peers.

``server.app`` mounts ``routes()`` (``/ws/events``, ``/ws/device-check``), starts visit
signaling's own listener (``listen``, ``/ws/visits/{id}``: signaling/listener.py) and
calls ``close(app)`` on shutdown. The protocol is in docs/signaling.md.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, WebSocketRoute

from signaling.hub import close, hub_for, listen, signaling_base


def routes() -> list[BaseRoute]:
    from signaling import device_check, endpoint

    return [
        WebSocketRoute("/ws/events", endpoint.events),
        WebSocketRoute("/ws/device-check", device_check.endpoint),
    ]


__all__ = ["close", "hub_for", "listen", "routes", "signaling_base"]
