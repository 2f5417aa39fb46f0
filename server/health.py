"""``GET /healthz``: is this instance able to serve, and what does it depend on."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from server.http import services_of
from server.responses import JSONResponse


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
    if services.settings.redis_url:
        checks["redis"] = "ok" if await services.bus.healthy() else "down"
    else:
        checks["bus"] = "in-process"
    checks["smtp"] = "configured" if services.settings.smtp_url else "outbox-only"
    healthy = all(value != "down" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks,
         "database": services.engine.dialect.name},
        status_code=200 if healthy else 503,
    )
