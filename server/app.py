"""The composition root: assembles the Mendwell application from its parts.

Only this module imports across ``server``, ``signaling``, ``escalation`` and ``web``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope
from starlette.websockets import WebSocket

import signaling
from escalation import api as escalation_api
from escalation import deadlines, lifecycle
from escalation.triage_rules import load_default_rules
from server import audit, jobs, labs, medication_catalogue, outbox, part2, visits
from server.api import admin as admin_api
from server.api import chat as chat_api
from server.api import checkins as checkins_api
from server.api import guests as guests_api
from server.api import labs as labs_api
from server.api import notes as notes_api
from server.api import oncall as oncall_api
from server.api import openapi
from server.api import prescribing as prescribing_api
from server.api import privacy as privacy_api
from server.api import session as session_api
from server.api import substance_use as substance_use_api
from server.api import visits as visits_api
from server.api.registry import ApiOperation, to_routes
from server.bus import make_bus
from server.db import create_engine, session_factory
from server.errors import APIError, ServiceUnavailable, Unauthorized
from server.health import RETRY_AFTER_SECONDS, dependency_down, healthz
from server.http import client_ip, current_of
from server.middleware import (
    BodyLimitMiddleware,
    BodyTooLarge,
    OutageMiddleware,
    SecurityHeadersMiddleware,
    SessionMiddleware,
    security_headers,
)
from server.responses import JSONResponse
from server.services import Services
from server.settings import Settings

log = logging.getLogger("mendwell")

VERSION = "0.1.0"



def api_operations() -> list[ApiOperation]:
    return [*session_api.OPERATIONS, *visits_api.OPERATIONS, *checkins_api.OPERATIONS,
            *notes_api.OPERATIONS, *escalation_api.OPERATIONS, *guests_api.OPERATIONS,
            *admin_api.OPERATIONS, *oncall_api.OPERATIONS, *chat_api.OPERATIONS,
            *privacy_api.OPERATIONS, *labs_api.OPERATIONS, *substance_use_api.OPERATIONS,
            *prescribing_api.OPERATIONS]


def create_app(settings: Settings | None = None, *,
               signaling_at: tuple[str, int] | None = None,
               http_port: int | None = None) -> Starlette:
    """The app; ``signaling_at`` (host, port): where its lifespan starts visit
    signaling's listener (``mendwell serve``; tests start it on demand)."""
    from web import pages  # the one place server code reaches into web/

    settings = settings or Settings.from_env()
    # Reviewed data read at start: a bad medication catalogue, lab_rules.toml or
    # part2_rules.toml stops the app, not a visit, a sign or a disclosure later (the lab
    # and Part 2 rules take their medications from the catalogue).
    medication_catalogue.catalogue()
    labs.rules()
    part2.rules()
    engine = create_engine(settings.database_url.get_secret_value())
    services = Services(settings=settings, engine=engine, sessions=session_factory(engine),
                        bus=make_bus(settings.redis_url.get_secret_value(),
                                     settings.redis_namespace),
                        triage_rules=load_default_rules(),
                        checkin_hooks=[lifecycle.raise_from_checkin],
                        emergency_info_hooks=[lifecycle.emergency_info_confirmed])
    operations = api_operations()
    background = [outbox.SENDER, deadlines.TIMERS, visits.LONG_WAITS, visits.REMINDERS]

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/api/v1/openapi.json", openapi.endpoint(operations, VERSION)),
        *to_routes(operations),
        *signaling.routes(),
        *pages.routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.bus.start()
        if signaling_at is not None:
            await signaling.listen(app, *signaling_at, http_port=http_port)
        tasks = []
        if settings.run_background_tasks:
            tasks = [asyncio.create_task(jobs.run(job, services), name=job.name)
                     for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await signaling.close(app)  # its sockets and aiortc peers
            await services.close()

    async def api_error(request: HTTPConnection, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        if exc.audit is not None:
            await _audit_refusal(request, services, exc)
        headers = {}
        if "retry_after" in exc.extra:  # 429, 503
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if _wants_json(request):
            return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)
        if isinstance(exc, Unauthorized):
            # A person without a session (never signed in, or signed out when idle)
            # belongs on the sign-in page, whichever page they asked for.
            return RedirectResponse("/login", status_code=303)
        page = pages.error_page(request, exc.status, exc.message)
        page.headers.update(headers)
        return page

    async def outage(conn: HTTPConnection, exc: Exception) -> Response | None:
        """A request that failed because the database (or Redis) is down: 503 with
        Retry-After, or None for a WebSocket (OutageMiddleware closes it with 1013).
        Every such failure comes here, from a route or from the session middleware."""
        down = dependency_down(exc)
        # The kind of error only: a driver's message may quote the statement's values.
        log.warning("%s %s: the %s is unavailable (%s)", conn.scope.get("method", "WS"),
                    conn.url.path, down, type(exc).__name__)
        if isinstance(conn, WebSocket):
            return None
        return await api_error(conn, ServiceUnavailable(
            f"Mendwell cannot reach its {down} just now. Try again in "
            f"{RETRY_AFTER_SECONDS} seconds.", retry_after=RETRY_AFTER_SECONDS))

    async def http_error(request: HTTPConnection, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "There is nothing here.", 405: "That method is not allowed here."}.get(
            exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if _wants_json(request):
            return JSONResponse({"error": {"code": code, "message": message, "field": None}},
                                status_code=exc.status_code, headers=exc.headers)
        return pages.error_page(request, exc.status_code, message)

    async def too_large(request: HTTPConnection, exc: Exception) -> Response:
        return JSONResponse({"error": {"code": "payload_too_large", "message": str(exc),
                                       "field": "body"}}, status_code=413)

    async def server_error(request: HTTPConnection, exc: Exception) -> Response:
        # The trace goes to the log (which carries no request bodies), never to the user.
        log.error("unhandled error on %s %s", request.scope.get("method", "WS"),
                  request.url.path, exc_info=exc)
        if _wants_json(request):
            response: Response = JSONResponse(
                {"error": {"code": "internal", "field": None,
                           "message": "Something went wrong on our side. Try again."}},
                status_code=500)
        else:
            response = pages.error_page(request, 500,
                                        "Something went wrong on our side. Try again.")
        # Starlette sends this from outside every middleware, SecurityHeaders included.
        response.headers.update(security_headers(request.scope, hsts=settings.is_production,
                                                 connect=signaling_source))
        response.headers["Cache-Control"] = "no-store"
        return response

    def signaling_source(scope: Scope) -> str:
        """Visit signaling's origin, which pages may open sockets to (CSP connect-src)."""
        return signaling.signaling_base(app, Headers(scope=scope).get("host", ""),
                                        secure=scope.get("scheme") == "https")

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware, hsts=settings.is_production,
                       connect=signaling_source),
            Middleware(OutageMiddleware,
                       is_outage=lambda exc: dependency_down(exc) is not None,
                       answer=outage),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
            Middleware(SessionMiddleware, services=services),
        ],
        exception_handlers={
            APIError: api_error,
            HTTPException: http_error,
            BodyTooLarge: too_large,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.api_operations = operations
    return app


def _wants_json(request: HTTPConnection) -> bool:
    if request.url.path.startswith("/api/"):
        return True
    return "application/json" in request.headers.get("accept", "") and \
        "text/html" not in request.headers.get("accept", "")


async def _audit_refusal(request: HTTPConnection, services: Services, exc: APIError) -> None:
    current = current_of(request)
    if current is None or exc.audit is None:
        return
    async with services.transaction() as session:
        audit.record_refusal(session, current.actor(client_ip(request)), exc.audit,
                             request.url.path)


# Exposed for `uvicorn server.app:app`-style runs: built from the environment on import.
def app_from_env() -> Starlette:
    return create_app(Settings.from_env())


__all__ = ["VERSION", "Request", "api_operations", "app_from_env", "create_app"]
