"""The HTTP app's WebSocket endpoint ``/ws/events`` (live dashboards), and the refusals
it shares with the device check.

Visit signaling (``/ws/visits/{visit_id}``) has a listener of its own
(signaling/listener.py). Refusals are sent after accepting the socket, as an ``error``
and then a close code (4401, 4403, ...), because a browser cannot read the reason for
an upgrade that was refused at the HTTP level.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.websockets import WebSocket

from server.http import current_of, same_site_socket, services_of
from signaling import protocol
from signaling.hub import Hub, hub_of
from signaling.outlet import SocketOutlet
from signaling.protocol import ProtocolError, RateLimiter

log = logging.getLogger("mendwell.signaling")


def same_origin(websocket: WebSocket, base_url: str) -> bool:
    return same_site_socket(websocket.headers.get("origin"),
                            websocket.headers.get("host", ""), base_url)


async def refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    outlet = SocketOutlet(websocket)
    outlet.push(protocol.error(error, message))
    outlet.close(code)
    await outlet.finish()


async def open_socket(websocket: WebSocket, hub: Hub) -> bool:
    """Start the hub and accept the socket; refuse (and say so) a cross-site one.

    The socket is accepted first because a browser cannot read why an upgrade was
    refused; it can read an ``error`` message followed by a close code.
    """
    await hub.start()
    await websocket.accept()
    if same_origin(websocket, hub.services.settings.base_url):
        return True
    await refuse(websocket, protocol.CLOSE_FORBIDDEN, "forbidden",
                 "Connections from another site are refused.")
    return False


async def events(websocket: WebSocket) -> None:
    """Live dashboard events for the signed-in user (docs/signaling.md, "/ws/events")."""
    services = services_of(websocket)
    hub = hub_of(websocket)
    if not await open_socket(websocket, hub):
        return
    current = current_of(websocket)
    if current is None:
        await refuse(websocket, protocol.CLOSE_UNAUTHENTICATED, "unauthenticated", "Sign in.")
        return
    outlet = SocketOutlet(websocket)
    hub.watch(outlet, current, idle=True)
    limiter = RateLimiter()
    loop = asyncio.get_running_loop()
    async with services.bus.subscribe(current.user.id) as queue:
        outlet.push({"type": "subscribed", "user_id": current.user.id})
        forwarder = asyncio.create_task(_forward(queue, outlet))
        try:
            while not outlet.closing:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not limiter.allow(loop.time()):
                    if limiter.exhausted:
                        outlet.close(protocol.CLOSE_RATE_LIMITED)
                    continue
                try:
                    text = message.get("text")
                    if text is None:
                        raise protocol.InvalidMessage("Send JSON in text frames.", field="frame")
                    if protocol.decode(text)["type"] != "ping":
                        raise protocol.InvalidMessage("Only ping is accepted here.", field="type")
                    outlet.push({"type": "pong"})
                except ProtocolError as exc:
                    outlet.push(exc.to_json())
        finally:
            hub.unwatch(outlet)
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
    await outlet.finish()


async def _forward(queue: asyncio.Queue[dict[str, Any]], outlet: SocketOutlet) -> None:
    while True:
        outlet.push(await queue.get())
