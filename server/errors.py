"""Small, specific exceptions that the one error handler turns into responses.

Domain code raises these; ``server.app`` maps them to JSON for ``/api`` and to an
HTML page for people. Messages name the offending state or field so a client can act
on them; they never carry clinical content or stack traces.
"""

from __future__ import annotations

from typing import TypedDict

from server.results import JsonObject


class Refusal(TypedDict):
    """What a refused access was to (set by ``server.access``), for its 'denied' entry in
    the audit log (``audit.record_refusal``)."""

    action: str
    resource_type: str
    resource_id: object
    patient_id: int | None


class APIError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: JsonObject | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.extra = extra or {}
        # Set by access helpers on a refusal; written to the audit log by the handler.
        self.audit: Refusal | None = None

    def to_json(self) -> JsonObject:
        body: JsonObject = {"code": self.code, "message": self.message, "field": self.field}
        body.update(self.extra)
        return {"error": body}


class BadRequest(APIError):
    status = 400
    code = "bad_request"


class Unauthorized(APIError):
    status = 401
    code = "unauthenticated"


class Forbidden(APIError):
    status = 403
    code = "forbidden"


class NotFound(APIError):
    status = 404
    code = "not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class ValidationFailed(APIError):
    """A request body or parameter that is well-formed JSON but wrong: HTTP 422."""

    status = 422
    code = "invalid"


class TooManyRequests(APIError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(APIError):
    """Something this instance depends on (the database) cannot be reached now: HTTP 503
    with ``Retry-After``. Domain code never raises it; ``server.app`` answers outages
    with it (docs/reliability.md, "Outages")."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, extra={"retry_after": retry_after})
        self.retry_after = retry_after
