"""``GET /healthz``: is this instance able to serve, and what does it depend on.

Also which dependency an error says is down (``dependency_down``): the app answers
those requests 503 with ``Retry-After`` instead of 500 (docs/reliability.md, "Outages").
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from server import bus, db
from server.http import services_of
from server.responses import JSONResponse

# What a client is told to wait before trying again while a dependency is down: about
# as long as PostgreSQL or Redis take to restart.
RETRY_AFTER_SECONDS = 5


def dependency_down(exc: BaseException) -> str | None:
    """``"database"`` or ``"redis"`` when ``exc`` says that one cannot be reached now;
    None for anything else (a bug stays a bug)."""
    if bus.is_unavailable(exc):
        return "redis"
    if db.is_unavailable(exc):
        return "database"
    return None


async def healthz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3):
            async with services.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "down"
    body: dict[str, object] = {}
    if services.settings.redis_url:
        # Bounded by the bus's socket timeouts: a dead Redis shows within seconds.
        checks["redis"] = "ok" if await services.bus.healthy() else "down"
        if isinstance(services.bus, bus.RedisBus):
            body["events_waiting"] = services.bus.backlog
    else:
        checks["bus"] = "in-process"
    checks["smtp"] = "configured" if services.settings.smtp_url else "outbox-only"
    healthy = all(value != "down" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks,
         "database": services.engine.dialect.name, **body},
        status_code=200 if healthy else 503,
    )
