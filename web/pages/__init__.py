"""Page routes: one module per page type."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from web.pages import (
    admin,
    checkin,
    coordinator,
    credentials,
    escalations,
    guest,
    home,
    labs,
    offline,
    patient,
    privacy,
    progress,
    scheduling,
    signin,
    summary,
    time_zone,
    visit_room,
    vocabulary,
    where,
)
from web.rendering import STATIC, render

TITLES = {400: "Something is not right", 401: "Please sign in", 403: "Not allowed",
          404: "Not found", 409: "Not possible right now", 413: "Too large",
          422: "Please check what you entered", 429: "Please wait", 500: "Sorry",
          503: "Back in a moment"}


def routes() -> list[BaseRoute]:
    return [
        *signin.ROUTES,
        *home.ROUTES,
        *coordinator.ROUTES,
        *escalations.ROUTES,
        *admin.ROUTES,
        *credentials.ROUTES,
        # Before the visit room: `/visits/{visit_id}` would take the worker's path too.
        *offline.ROUTES,
        *scheduling.ROUTES,
        *guest.ROUTES,
        *visit_room.ROUTES,
        *where.ROUTES,
        *summary.ROUTES,
        *checkin.ROUTES,
        *patient.ROUTES,
        *privacy.ROUTES,
        *labs.ROUTES,
        *progress.ROUTES,
        *time_zone.ROUTES,
        # Before the static files: a module generated from the server's vocabularies.
        *vocabulary.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def error_page(request: HTTPConnection, status: int, message: str) -> Response:
    return render(request, "error.html", status=status, title=TITLES.get(status, "Error"),
                  message=message, status_code=status)
