"""The TestClient's app served by a real uvicorn on loopback, for tests that open sockets.

It runs in the app's own event loop (the client's portal), so tests keep reaching the
app's services through ``run(...)``, and it is configured as ``mendwell serve`` configures
uvicorn (``server.cli.uvicorn_config``): a socket opened here takes the path production
takes, from the HTTP upgrade to the last frame. Started on a client's first socket,
stopped before the client (the ``client`` fixture calls :func:`stop_for`).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import signaling
from server.cli import uvicorn_config
from server.settings import Settings

_servers: dict[int, tuple[uvicorn.Server, Any]] = {}


def port_for(client: TestClient) -> int:
    """The loopback port where ``client``'s app is served (started on first use)."""
    found = _servers.get(id(client))
    if found is not None:
        return int(found[0].config.port)
    portal = client.portal
    assert portal is not None, "use the client inside its context"
    app = client.app
    assert isinstance(app, Starlette)
    settings: Settings = app.state.services.settings
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port,
                            configure_logging=False)
    # The TestClient already ran the app's lifespan, in this same loop.
    config.lifespan = "off"
    # A socket's task stuck at the end of a test (an outage test's Redis call, say) must
    # not hold the shutdown, and with it the client's portal, for ever: uvicorn cancels
    # what is still running after this many seconds.
    config.timeout_graceful_shutdown = 5
    server = uvicorn.Server(config)
    future = portal.start_task_soon(server.serve, [listener])
    deadline = time.monotonic() + 10
    while not server.started:
        if future.done():
            future.result()  # raises what stopped it
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start within 10 s")
        time.sleep(0.002)
    _servers[id(client)] = (server, future)
    return port


def signaling_port_for(client: TestClient) -> int:
    """The loopback port of ``client``'s app's visit signaling listener (started on first
    use, in the app's loop, as ``mendwell serve`` starts it; closed with the app)."""
    portal = client.portal
    assert portal is not None, "use the client inside its context"
    app = client.app
    assert isinstance(app, Starlette)
    return portal.call(lambda: signaling.listen(app, "127.0.0.1", 0))


def stop_for(client: TestClient) -> None:
    found = _servers.pop(id(client), None)
    if found is None:
        return
    server, future = found
    server.should_exit = True
    future.result(timeout=30)


@contextlib.contextmanager
def test_client(app: ASGIApp, **kwargs: Any) -> Iterator[TestClient]:
    """``TestClient(app)`` as a context, stopping the real server of its sockets first."""
    kwargs.setdefault("base_url", "http://testserver")
    with TestClient(app, **kwargs) as client:
        try:
            yield client
        finally:
            stop_for(client)
