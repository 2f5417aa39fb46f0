"""The service worker behind the visit room's offline page (``static/offline-worker.js``).

A worker may only answer for pages under the path it is served from, so this one is
served from ``/visits/`` rather than ``/static/``. It needs no session: it is the same
file for everyone and holds no data.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from web.rendering import STATIC

WORKER = STATIC / "offline-worker.js"


async def offline_worker(request: Request) -> Response:
    # no-cache: the browser checks for a new worker on every visit (a stale worker would
    # keep serving an old offline page).
    return FileResponse(WORKER, media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})


ROUTES = [Route("/visits/offline-worker.js", offline_worker, methods=["GET"])]
