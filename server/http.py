"""Request helpers shared by API routes and pages: who is asking, and what they sent."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import HTTPConnection, Request

from server.actors import Actor
from server.auth import Current
from server.errors import BadRequest, Unauthorized, ValidationFailed
from server.freetext import readable, unstorable_at
from server.responses import JSONResponse
from server.results import JsonObject
from server.services import Services

M = TypeVar("M", bound=BaseModel)

# Ids are 32-bit integer columns on PostgreSQL: a larger number would reach the database
# driver and fail there as a server error instead of a 422.
MAX_ID = 2**31 - 1
# No body of the API nests more than a few levels; a limit far above them keeps every
# later walk of a body (ours, pydantic's, the database driver's) well inside the stack.
MAX_JSON_DEPTH: Final = 64
# The years a date-time given to the API may fall in (see ``in_range``).
YEARS: Final = (1900, 2200)


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def client_ip(conn: HTTPConnection) -> str:
    """The client's address: the connection's peer, or what a trusted proxy forwarded
    (``mendwell serve`` lets uvicorn believe X-Forwarded-For from
    MENDWELL_TRUSTED_PROXIES only). Sign-in throttling counts by this, so it is the one
    place the address is read. Cut to the width of the columns that keep it."""
    return conn.client.host[:64] if conn.client else "unknown"


def same_site_socket(origin: str | None, host: str, base_url: str, *,
                     http_port: int | None = None) -> bool:
    """Whether a WebSocket's ``Origin`` is our own site: the configured base URL, the
    host it was opened on, or (``http_port``: a listener of its own, on another port)
    that host's name at the HTTP port.

    Browsers always send ``Origin`` on a WebSocket, and cookies ride along on
    cross-site upgrades (CSRF does not protect them): without this check any page on
    the web could open a socket as its visitor. No ``Origin``: not a browser, which had
    to hold the cookie itself.
    """
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc
    if not netloc:
        return False
    if netloc in (host, urlsplit(base_url).netloc):
        return True
    if http_port is None:
        return False
    hostname = urlsplit(f"//{host}").hostname
    return netloc == f"{hostname}:{http_port}" or (http_port == 80 and netloc == hostname)


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
    return error_refusal(exc.errors(include_url=False)[0])


def error_refusal(error: ErrorDetails) -> ValidationFailed:
    """One of pydantic's errors as the API's 422, naming the field."""
    field = _field(tuple(error["loc"]))
    kind = error["type"]
    if kind == "missing":
        message = f"{field} is required."
    elif kind == "extra_forbidden":
        message = f"{field} is not a known field."
    else:
        message = f"{field}: {error['msg']}."
    return ValidationFailed(message, field=field)


class _NonFinite:
    """What ``json.loads`` makes of NaN, Infinity and -Infinity, which Python's parser
    accepts though they are not JSON (RFC 8259) and PostgreSQL's json type refuses
    them: kept as a marker so that the walk of the body can name the field."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


# A field's place in the body, innermost first: (key or index, the enclosing place).
_Place = tuple[str | int, "_Place"] | None


def _field_at(place: _Place) -> str:
    parts: list[str] = []
    while place is not None:
        key, place = place
        parts.append(readable(key) if isinstance(key, str) else str(key))
    return ".".join(reversed(parts)) or "body"


def refuse_unstorable(text: str, field: str) -> str:
    """``text``, or 422 ``invalid_text`` naming ``field`` when it holds a character no
    database can store faithfully (a lone surrogate or NUL): refused before anything is
    written, so a record is never stored half-way nor unreadable later."""
    index = unstorable_at(text)
    if index is not None:
        raise ValidationFailed(
            f"{field} holds a character that cannot be stored (a lone surrogate or NUL, "
            f"character {index + 1}). Remove it and send again.",
            code="invalid_text", field=field)
    return text


def _too_deep() -> BadRequest:
    return BadRequest(f"The body is nested more than {MAX_JSON_DEPTH} levels deep.",
                      code="too_deep", field="body")


def check_json(data: Any) -> None:
    """Refuse a decoded body holding unstorable text (in a value or a key) or a number
    that is not finite, naming the first such field in document order, or nested over
    ``MAX_JSON_DEPTH``. Iterative: the body's depth never becomes the stack's."""
    stack: list[tuple[Any, _Place, int]] = [(data, None, 0)]
    while stack:
        value, place, depth = stack.pop()
        if isinstance(value, str):
            refuse_unstorable(value, _field_at(place))
        elif isinstance(value, _NonFinite) or (isinstance(value, float)
                                               and not math.isfinite(value)):
            # 1e999 is valid JSON syntax that Python reads as infinity: refused alike.
            field = _field_at(place)
            raise ValidationFailed(f"{field} must be a finite number.",
                                   code="invalid_number", field=field)
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            items = list(value.items() if isinstance(value, dict) else enumerate(value))
            for key, item in reversed(items):
                if isinstance(key, str):
                    refuse_unstorable(key, _field_at((key, place)))
                stack.append((item, (key, place), depth + 1))


async def json_object(request: Request) -> Any:
    """The decoded JSON body (requires ``Content-Type: application/json``), refused
    (see ``check_json``) unless every part of it can be stored and read back."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        # Also a CSRF defence: a cross-site form cannot send application/json.
        raise BadRequest("Send the body as JSON with Content-Type: application/json.",
                         code="unsupported_media_type", field="Content-Type")
    raw = await request.body()
    try:
        data = json.loads(raw or b"null", parse_constant=_NonFinite)
    except RecursionError:
        # The C parser recurses per level; far past MAX_JSON_DEPTH it runs out of stack.
        raise _too_deep() from None
    except ValueError:
        # JSONDecodeError, UnicodeDecodeError, and an integer over Python's 4300 digits.
        raise BadRequest("The body is not valid JSON.", code="invalid_json", field="body") \
            from None
    check_json(data)
    return data


async def json_body(request: Request, model: type[M]) -> M:
    data = await json_object(request)
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def int_param(value: str, field: str) -> int:
    # ASCII digits only: int() also reads "١" (Arabic-Indic one), " 1", "+1" and "1_0",
    # and an id must have one spelling. Over ten digits cannot be in range.
    if not (value.isascii() and value.isdigit()):
        raise ValidationFailed(f"{field} must be a whole number.", field=field)
    number = int(value) if len(value) <= 10 else MAX_ID + 1
    if not 0 < number <= MAX_ID:
        raise ValidationFailed(f"{field} is out of range.", field=field)
    return number


def in_range(value: datetime, field: str) -> datetime:
    """``value``, or 422 naming ``field`` when its year is outside ``YEARS``: Python's
    datetime ends at 9999-12-31, so a time near either end cannot be converted to UTC
    (``9999-12-31T23:59:59-14:00``), which the database columns need; and no visit,
    shift or audit entry is dated in the year 1 or 9999."""
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise ValidationFailed(f"{field} must be a date from the year {YEARS[0]} to "
                               f"{YEARS[1]}.", code="out_of_range", field=field)
    return value


def parse_datetime(raw: str, field: str) -> datetime:
    """An ISO 8601 date-time with its UTC offset and within ``YEARS``; 422 naming
    ``field`` else."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{field} must be an ISO 8601 date-time.", field=field) from None
    if value.tzinfo is None:
        raise ValidationFailed(f"{field} must include a UTC offset.", field=field)
    return in_range(value, field)


def datetime_param(request: HTTPConnection, name: str) -> datetime | None:
    """An optional ISO 8601 date-time query parameter (``parse_datetime``)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    return parse_datetime(raw, name)


def _instant(value: datetime) -> datetime:
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise ValueError(f"must be a date from the year {YEARS[0]} to {YEARS[1]}")
    return value


# A date-time field of a JSON body: with its UTC offset, within YEARS (see ``in_range``).
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]


def path_id(request: HTTPConnection, name: str) -> int:
    return int_param(str(request.path_params[name]), name)


def ok(data: JsonObject, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
