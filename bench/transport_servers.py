"""The same bare relay on three Python WebSocket stacks, for ``python -m bench transports``.

Each speaks the part of the PeerJS protocol the load generator uses (``OPEN`` on
connect; ``OFFER``/``ANSWER``/``CANDIDATE`` relayed to ``dst`` with ``src`` added), and
does nothing else: no rooms, no checks, no rate limit. They measure the floor each
stack puts under a relay, to choose the transport; Mendwell's own relay is measured by
``bench relay``. Run as ``python -m bench.transport_servers STACK PORT``.

- ``uvicorn``: plain ASGI under uvicorn's ``websockets-sansio`` protocol (what
  ``mendwell serve`` runs), each message sent from the sender's task.
- ``websockets``: the websockets library's own asyncio server, sends by ``broadcast``.
- ``picows``: picows' callback API, where a frame is handled inside ``data_received``.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop

OPEN = b'{"type":"OPEN"}'


def peer_of(target: str) -> str:
    return parse_qs(urlsplit(target).query)["id"][0]


def relayed(text: bytes | str, src: str) -> tuple[str | None, bytes]:
    message = orjson.loads(text)
    message["src"] = src
    return message.get("dst"), orjson.dumps(message)


async def serve_uvicorn(port: int) -> None:
    import uvicorn

    peers: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        peer = peer_of("?" + scope["query_string"].decode())
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": OPEN.decode()})
        peers[peer] = send
        try:
            while (message := await receive())["type"] == "websocket.receive":
                dst, out = relayed(message["text"], peer)
                if (target := peers.get(dst or "")) is not None:
                    await target({"type": "websocket.send", "text": out.decode()})
        finally:
            peers.pop(peer, None)

    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio",
                            ws_per_message_deflate=False, log_level="warning",
                            http="httptools")
    await uvicorn.Server(config).serve()


async def serve_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    peers: dict[str, ServerConnection] = {}

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        peer = peer_of(connection.request.path)
        peers[peer] = connection
        await connection.send(OPEN.decode())
        try:
            async for text in connection:
                dst, out = relayed(text, peer)
                if (target := peers.get(dst or "")) is not None:
                    broadcast([target], out.decode())
        finally:
            peers.pop(peer, None)

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20) as server:
        await server.serve_forever()


async def serve_picows(port: int) -> None:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    peers: dict[str, WSTransport] = {}

    class Peer(WSListener):
        def __init__(self, peer: str) -> None:
            self.peer = peer

        def on_ws_connected(self, transport: WSTransport) -> None:
            peers[self.peer] = transport
            transport.send(WSMsgType.TEXT, OPEN)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                dst, out = relayed(frame.get_payload_as_bytes(), self.peer)
                if (target := peers.get(dst or "")) is not None:
                    target.send(WSMsgType.TEXT, out)
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            peers.pop(self.peer, None)

    def listener(request: WSUpgradeRequest) -> Peer:
        return Peer(peer_of(request.path.decode()))

    server = await ws_create_server(listener, "127.0.0.1", port, max_frame_size=2**20)
    await server.serve_forever()


STACKS = {"uvicorn": serve_uvicorn, "websockets": serve_websockets, "picows": serve_picows}

if __name__ == "__main__":
    uvloop.run(STACKS[sys.argv[1]](int(sys.argv[2])))
