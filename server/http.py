"""Request helpers shared by API routes and pages: who is asking, and what they sent."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from server.actors import Actor
from server.auth import Current
from server.errors import BadRequest, Unauthorized, ValidationFailed
from server.services import Services

M = TypeVar("M", bound=BaseModel)

# Ids are 32-bit integer columns on PostgreSQL: a larger number would reach the database
# driver and fail there as a server error instead of a 422.
MAX_ID = 2**31 - 1


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def current_of(conn: HTTPConnection) -> Current | None:
    current: Current | None = conn.scope.get("state", {}).get("current")
    return current


def require_current(conn: HTTPConnection) -> Current:
    current = current_of(conn)
    if current is None:
        raise Unauthorized("Sign in first.")
    return current


def actor_of(conn: HTTPConnection) -> Actor:
    """The signed-in actor, or 401."""
    return require_current(conn).actor(client_ip(conn))


# Pydantic puts the member of a union it tried into the error location
# ("sleep.hours.float"); the client wants the field it sent.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "none", "list", "dict"})


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc
             if not (isinstance(part, str) and (part in _UNION_TAGS or "[" in part))]
    return ".".join(parts) or "body"


def validation_error(exc: ValidationError) -> ValidationFailed:
    first = exc.errors(include_url=False)[0]
    field = _field(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        message = f"{field} is required."
    elif kind == "extra_forbidden":
        message = f"{field} is not a known field."
    else:
        message = f"{field}: {first['msg']}."
    return ValidationFailed(message, field=field)


async def json_object(request: Request) -> Any:
    """The decoded JSON body (requires ``Content-Type: application/json``)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        # Also a CSRF defence: a cross-site form cannot send application/json.
        raise BadRequest("Send the body as JSON with Content-Type: application/json.",
                         code="unsupported_media_type", field="Content-Type")
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.", code="invalid_json", field="body") \
            from None


async def json_body(request: Request, model: type[M]) -> M:
    data = await json_object(request)
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def int_param(value: str, field: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number.", field=field) from None
    if not 0 < number <= MAX_ID:
        raise ValidationFailed(f"{field} is out of range.", field=field)
    return number


def path_id(request: HTTPConnection, name: str) -> int:
    return int_param(str(request.path_params[name]), name)


def ok(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
