"""ASGI middleware: security headers, outages, body size limit, session loading and CSRF.

Each is a small pure-ASGI class so it also sees WebSocket connections.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from server.auth import COOKIE_NAME, csrf_ok, load_session
from server.services import Services

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths that never need the session (and must stay cheap).
SESSIONLESS_PREFIXES = ("/static/", "/healthz", "/favicon.ico")


def _error(status: int, code: str, message: str, field: str | None = None) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "field": field}}).encode()


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _content_security_policy(scope: Scope, connect: str) -> str:
    host = Headers(scope=scope).get("host", "")
    # 'self' covers ws:/wss: on the same host in CSP Level 3 browsers; naming them
    # keeps older Safari on phones working too. ``connect``: visit signaling's origin
    # when it is another (its own port).
    ws = f"ws://{host} wss://{host}" if host else ""
    if connect:
        ws = f"{ws} {connect}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
        f"connect-src 'self' {ws}; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(scope: Scope, *, hsts: bool,
                     connect: Callable[[Scope], str] | None = None) -> dict[str, str]:
    """The headers every response carries; also applied by the 500 handler, whose
    responses are sent from outside this middleware. ``connect``: another origin pages
    may open sockets to (visit signaling's listener)."""
    headers = {
        "Content-Security-Policy": _content_security_policy(
            scope, connect(scope) if connect is not None else ""),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": (
            "camera=(self), microphone=(self), display-capture=(self), geolocation=(), "
            "payment=(), usb=(), interest-cohort=()"
        ),
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool,
                 connect: Callable[[Scope], str] | None = None) -> None:
        self.app = app
        self.hsts = hsts
        self.connect = connect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = security_headers(scope, hsts=self.hsts, connect=self.connect)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(added)
                if "cache-control" not in headers and not scope["path"].startswith("/static/"):
                    # Pages and API answers hold patient information: keep them out of
                    # shared and browser caches.
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


# "Try again later" (RFC 6455, 7.4.1; IANA registry): the server cannot serve now.
CLOSE_TRY_AGAIN_LATER = 1013


class OutageMiddleware:
    """Hands a request that failed because a dependency is down (``is_outage``) to
    ``answer``, which returns the response (503 with Retry-After), or None for a
    WebSocket, which is then closed with 1013. Any other error goes on to the 500 handler:
    a bug stays a bug.

    It sits outside the session middleware, which reads the database for nearly every
    request: a request that fails there is answered like one that fails in its route.
    """

    def __init__(self, app: ASGIApp, *, is_outage: Callable[[BaseException], bool],
                 answer: Callable[[HTTPConnection, Exception], Awaitable[Response | None]],
                 ) -> None:
        self.app = app
        self.is_outage = is_outage
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Not wrapped: a socket's frames are the signaling relay's hot path, and one
            # more hop per frame is measurable.
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                if not self.is_outage(exc):
                    raise
                await self.answer(WebSocket(scope, receive, send), exc)
                await _close_try_again_later(send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started or not self.is_outage(exc):
                raise
            response = await self.answer(Request(scope, receive), exc)
            assert response is not None
            await response(scope, receive, send)


async def _close_try_again_later(send: Send) -> None:
    """Close a socket with 1013, accepting it first if it was not (a browser cannot read
    why an upgrade was refused: it sees 1006). Whether it was is not tracked (see above):
    the server refuses a second accept, and a close of a socket already closed."""
    with contextlib.suppress(RuntimeError, OSError):
        await send({"type": "websocket.accept"})
    with contextlib.suppress(RuntimeError, OSError):
        await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER,
                    "reason": "unavailable"})


class BodyLimitMiddleware:
    """Refuse request bodies over the limit with 413, before anyone parses them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, _error(413, "payload_too_large",
                                               f"The request body is over {self.max_bytes} bytes."))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is over {limit} bytes.")


def _same_origin(headers: Headers, base_url: str) -> bool:
    origin = headers.get("origin") or headers.get("referer")
    if origin == "null":
        # Our own Referrer-Policy (no-referrer) makes browsers send `Origin: null` on
        # same-origin form posts (Fetch standard, "append a request Origin header"), as
        # they do for sandboxed frames and cross-site redirects. Sec-Fetch-Site, which
        # no page can set, tells them apart; a browser without it stays refused.
        return headers.get("sec-fetch-site") == "same-origin"
    if not origin:
        # Browsers send Origin on every cross-site POST; a missing one is a non-browser
        # client, which cookies do not ride along with by accident.
        return True
    netloc = urlsplit(origin).netloc
    return netloc in (headers.get("host", ""), urlsplit(base_url).netloc)


class SessionMiddleware:
    """Load the signed-in session into ``scope["state"]`` and enforce CSRF for the API.

    Forms check their own ``csrf_token`` field (see ``web.forms``); the JSON API checks
    the ``X-CSRF-Token`` header here. Anonymous state-changing requests must come from
    our own origin.
    """

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(
            SESSIONLESS_PREFIXES
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookie = cookie_value(headers.getlist("cookie"), COOKIE_NAME)
        # Automatic refreshes (a live queue re-reading itself) say so, and do not count
        # as activity: otherwise a screen left open would never be logged off.
        background = headers.get("x-mendwell-background") == "1"
        current = await load_session(self.services, cookie, touch=not background)
        scope.setdefault("state", {})["current"] = current
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            if not _same_origin(headers, self.services.settings.base_url):
                await _send_json(send, 403, _error(403, "csrf_failed",
                                                   "The request came from another site."))
                return
            is_api = scope["path"].startswith("/api/")
            if is_api and current is not None and not csrf_ok(
                current, headers.get("x-csrf-token")
            ):
                await _send_json(send, 403, _error(
                    403, "csrf_failed", "Send the X-CSRF-Token header from the session.",
                    "X-CSRF-Token"))
                return
        # Not held in this frame for the life of a WebSocket: the endpoint takes what it
        # needs from the scope and lets the session's rows go.
        del current
        await self.app(scope, receive, send)


def cookie_value(headers: list[str], name: str) -> str | None:
    """The value of cookie ``name`` in these ``Cookie`` headers (None: not sent)."""
    for raw in headers:
        for part in raw.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
    return None
