"""Sign in, sign out, join by link, and setting a password."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import audit, auth, password_reset
from server.accounts import change_password
from server.api.session import set_session_cookie
from server.auth import COOKIE_NAME, JoinLinkError
from server.errors import APIError, TooManyRequests
from server.http import client_ip, current_of, path_id, require_current, services_of
from server.locks import lock_visit
from server.models import Role, User, Visit
from server.timezones import patient_zone
from server.visits import ENDED
from web.forms import checked_form, posted_form
from web.pages import where
from web.rendering import render

HOMES = {Role.patient: "/home", Role.prescriber: "/day", Role.coordinator: "/coordinator",
         Role.admin: "/admin"}


def home_for(current: auth.Current) -> str:
    if current.session.visit_id is not None:
        return f"/visits/{current.session.visit_id}"
    return HOMES[current.user.role]


async def root(request: Request) -> Response:
    current = current_of(request)
    return RedirectResponse(home_for(current) if current else "/login", status_code=303)


async def login_page(request: Request) -> Response:
    current = current_of(request)
    if current is not None and current.session.visit_id is None:
        return RedirectResponse(home_for(current), status_code=303)
    notice = {"idle": "You were signed out after a period of inactivity.",
              "out": "You have signed out.",
              "reset": "Your new password is set. Sign in with it."}.get(
                  request.query_params.get("reason", ""))
    return render(request, "login.html", notice=notice, email="")


async def login_submit(request: Request) -> Response:
    form = await posted_form(request)
    email = str(form.get("email") or "")[:254]
    password = str(form.get("password") or "")[:200]
    services = services_of(request)
    try:
        signed_in = await auth.authenticate(
            services, email=email, password=password, ip=client_ip(request),
            user_agent=request.headers.get("user-agent"))
    except TooManyRequests as exc:
        return render(request, "login.html", status=429, error=exc.message, email=email)
    except APIError as exc:
        return render(request, "login.html", status=401, error=exc.message, email=email)
    response = RedirectResponse(HOMES[signed_in.user.role], status_code=303)
    set_session_cookie(response, services, signed_in)
    return response


async def logout(request: Request) -> Response:
    current = current_of(request)
    if current is not None:
        await checked_form(request)
        await auth.end_session(services_of(request), current, ip=client_ip(request))
    response = RedirectResponse("/login?reason=out", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


async def _join_target(request: Request,
                       token: str) -> tuple[Visit, User, str, auth.JoinLink] | str:
    """The visit and patient a join link admits to, or the reason it cannot."""
    services = services_of(request)
    visit_id = path_id(request, "visit_id")
    try:
        link = auth.read_join_token(services, token, visit_id)
    except JoinLinkError as exc:
        return str(exc)
    async with services.transaction() as session:
        visit = await session.get(Visit, visit_id)
        patient = await session.get(User, link.patient_id)
        if visit is None or patient is None or visit.patient_id != patient.id or \
                not patient.is_active:
            return "This link is not valid."
        if visit.status in ENDED:
            return "This visit has ended. If you need to talk to your care team, call the clinic."
        try:
            auth.check_join_link(services, link, visit)
        except JoinLinkError as exc:
            return str(exc)
        return visit, patient, await patient_zone(session, services.settings, patient.id), link


async def join_page(request: Request) -> Response:
    # A GET only shows a button: mail scanners that open links must not start sessions.
    token = request.query_params.get("t", "")
    target = await _join_target(request, token)
    if isinstance(target, str):
        return render(request, "join_invalid.html", status=400, message=target)
    visit, patient, tz, _link = target
    return render(request, "join.html", visit=visit, patient_name=patient.name, token=token,
                  tz=tz)


async def join_submit(request: Request) -> Response:
    form = await posted_form(request)
    token = str(form.get("t") or "")
    target = await _join_target(request, token)
    if isinstance(target, str):
        return render(request, "join_invalid.html", status=400, message=target)
    visit, patient, _zone, link = target
    services = services_of(request)
    async with services.transaction() as session:
        # Checked again under the visit's lock: links revoked since (server/auth.py,
        # ``invalidate_join_links``, which holds the lock) start no session.
        await lock_visit(session, visit.id)
        visit = await session.get(Visit, visit.id) or visit
        try:
            auth.check_join_link(services, link, visit)
        except JoinLinkError as exc:
            return render(request, "join_invalid.html", status=400, message=str(exc))
        patient = await session.get(User, patient.id) or patient
        signed_in = await auth.start_session(
            session, services, patient, ip=client_ip(request),
            user_agent=request.headers.get("user-agent"), visit_id=visit.id)
        auth_actor = auth.Current(signed_in.session, patient, signed_in.session.expires_at)
        audit.record(session, auth_actor.actor(client_ip(request)), "join_link", "visit",
                     visit.id, patient_id=patient.id)
        # Invariant 10: the check-in (which asks where they are on the way) or the
        # location step before the room, never straight in.
        visit = await session.get(Visit, visit.id) or visit
        first = await where.first_stop(session, services, visit)
    response = RedirectResponse(first, status_code=303)
    set_session_cookie(response, services, signed_in)
    return response


async def password_page(request: Request) -> Response:
    current = require_current(request)
    return render(request, "password.html", has_password=current.user.password_hash is not None)


async def password_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    services = services_of(request)
    try:
        async with services.transaction() as session:
            await change_password(
                session, current.actor(client_ip(request)),
                current=str(form.get("current_password") or "") or None,
                new=str(form.get("new_password") or ""))
    except APIError as exc:
        return render(request, "password.html", status=exc.status, error=exc.message,
                      has_password=current.user.password_hash is not None)
    return render(request, "password.html", done=True, has_password=True)


async def reset_page(request: Request) -> Response:
    return render(request, "password_reset.html", email="")


async def reset_submit(request: Request) -> Response:
    form = await posted_form(request)
    email = str(form.get("email") or "")[:254]
    services = services_of(request)
    try:
        await password_reset.request_reset(services, email=email, ip=client_ip(request))
    except TooManyRequests as exc:
        return render(request, "password_reset.html", status=429, error=exc.message,
                      email=email)
    # The same answer whether or not an account uses the address.
    return render(request, "password_reset.html", email="", sent=password_reset.SENT.format(
        minutes=services.settings.password_reset_minutes))


async def reset_new_page(request: Request) -> Response:
    token = request.query_params.get("t", "")[:1000]
    try:
        await password_reset.check_link(services_of(request), token)
    except APIError as exc:
        return render(request, "password_new.html", status=400, error=exc.message,
                      link_ok=False)
    return render(request, "password_new.html", token=token, link_ok=True)


async def reset_new_submit(request: Request) -> Response:
    form = await posted_form(request)
    token = str(form.get("t") or "")[:1000]
    password = str(form.get("new_password") or "")[:200]
    if password != str(form.get("confirm_password") or "")[:200]:
        return render(request, "password_new.html", status=422, token=token, link_ok=True,
                      error="The two passwords are not the same.")
    try:
        await password_reset.complete_reset(services_of(request), token=token,
                                            password=password, ip=client_ip(request))
    except password_reset.LinkNotValid as exc:
        return render(request, "password_new.html", status=400, error=exc.message,
                      link_ok=False)
    except APIError as exc:
        return render(request, "password_new.html", status=exc.status, token=token,
                      link_ok=True, error=exc.message)
    response = RedirectResponse("/login?reason=reset", status_code=303)
    # Whatever session this browser had is over with the others.
    response.delete_cookie(COOKIE_NAME)
    return response


ROUTES = [
    Route("/", root),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/visits/{visit_id}/join", join_page, methods=["GET"]),
    Route("/visits/{visit_id}/join", join_submit, methods=["POST"]),
    Route("/account/password", password_page, methods=["GET"]),
    Route("/account/password", password_submit, methods=["POST"]),
    Route("/password-reset", reset_page, methods=["GET"]),
    Route("/password-reset", reset_submit, methods=["POST"]),
    Route("/password-reset/new", reset_new_page, methods=["GET"]),
    Route("/password-reset/new", reset_new_submit, methods=["POST"]),
]
