"""Jinja2 rendering with what every page needs: the user, CSRF token, session timing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse

from server.http import current_of, services_of

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def local_time(value: datetime, tz: str = "UTC", fmt: str = "%H:%M") -> str:
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return value.astimezone(zone).strftime(fmt)


environment.filters["local_time"] = local_time
environment.globals["status_label"] = {
    "scheduled": "Scheduled", "checked_in": "Checked in", "waiting": "Waiting",
    "in_progress": "In visit", "completed": "Completed", "no_show": "No show",
    "cancelled": "Cancelled",
}


def render(
    request: HTTPConnection, template: str, status: int = 200, **context: Any
) -> HTMLResponse:
    current = current_of(request)
    services = services_of(request)
    context.setdefault("user", current.user if current else None)
    context.setdefault("csrf_token", current.session.csrf_token if current else "")
    context.setdefault("join_session", bool(current and current.session.visit_id))
    context["idle_expires_at"] = current.idle_expires_at.isoformat() if current else ""
    context["idle_warning_seconds"] = services.settings.idle_warning_seconds
    context["environment"] = services.settings.env
    context["request"] = request
    html = environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status)
