"""``/api/v1/session``: sign in, who am I, sign out."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.accounts import Account, change_password
from server.api.registry import ApiOperation
from server.auth import COOKIE_NAME, Current, SignedIn
from server.http import actor_of, client_ip, json_body, require_current, services_of
from server.responses import JSONResponse
from server.services import Services


class Credentials(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class PasswordChange(BaseModel):
    current_password: str | None = Field(default=None, max_length=200)
    new_password: str = Field(max_length=200)


def session_json(services: Services, current: Current | SignedIn) -> dict[str, object]:
    if isinstance(current, SignedIn):
        idle = auth.idle_timeout(services, current.user.role)
        idle_expires_at = min(current.session.last_seen_at + idle, current.session.expires_at)
    else:
        idle_expires_at = current.idle_expires_at
    return {
        "user": Account.of(current.user).to_json(exclude={"is_active"}),
        "csrf_token": current.session.csrf_token,
        "visit_id": current.session.visit_id,
        "idle_expires_at": idle_expires_at.isoformat(),
        "expires_at": current.session.expires_at.isoformat(),
        "idle_warning_seconds": services.settings.idle_warning_seconds,
    }


def set_session_cookie(response: Response, services: Services, signed_in: SignedIn) -> None:
    response.set_cookie(
        COOKIE_NAME, signed_in.cookie,
        max_age=services.settings.session_max_hours * 3600,
        httponly=True, samesite="lax", secure=services.settings.secure_cookies, path="/",
    )


async def create_session(request: Request) -> Response:
    body = await json_body(request, Credentials)
    services = services_of(request)
    signed_in = await auth.authenticate(
        services, email=body.email, password=body.password, ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    response = JSONResponse(session_json(services, signed_in))
    set_session_cookie(response, services, signed_in)
    return response


async def get_session(request: Request) -> Response:
    services = services_of(request)
    current = await auth.touch(services, require_current(request))
    return JSONResponse(session_json(services, current))


async def delete_session(request: Request) -> Response:
    services = services_of(request)
    current = require_current(request)
    await auth.end_session(services, current, ip=client_ip(request))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


async def put_password(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, PasswordChange)
    services = services_of(request)
    async with services.transaction() as session:
        await change_password(session, actor, current=body.current_password,
                              new=body.new_password)
    return Response(status_code=204)


OPERATIONS = [
    ApiOperation("POST", "/api/v1/session", create_session, "Sign in with email and password",
                 body=Credentials, tag="session", anonymous=True),
    ApiOperation("GET", "/api/v1/session", get_session,
                 "The current session and its CSRF token (also keeps it alive)", tag="session"),
    ApiOperation("DELETE", "/api/v1/session", delete_session, "Sign out", success=204,
                 tag="session"),
    ApiOperation("PUT", "/api/v1/account/password", put_password, "Set or change my password",
                 body=PasswordChange, success=204, tag="session"),
]
