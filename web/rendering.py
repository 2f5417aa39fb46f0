"""Jinja2 rendering with what every page needs: the user, CSRF token, session timing."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse

from server.freetext import readable, readable_data
from server.http import current_of, services_of

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _printable(value: Any) -> Any:
    """Every ``{{ value }}``, before escaping: a lone surrogate stored before the door
    was shut (``server.http``) cannot be encoded as UTF-8, and one such character in a
    note or a check-in must not make the visit room or an escalation a 500. Markup
    stays Markup (it is escaped already); U+FFFD needs no escaping."""
    if isinstance(value, Markup):
        # Escaped already; only lone surrogates change, to a character needing no escape.
        return Markup(readable(value))  # noqa: S704
    if isinstance(value, str):
        return readable(value)
    return value


def _readable_json(value: Any, **kwargs: Any) -> str:
    # ``tojson`` feeds the page's scripts (the note panel's autosave): a "\ud800" escape
    # would come back on the next save and be refused at the door for ever, U+FFFD
    # goes back in and the record heals.
    return json.dumps(readable_data(value), **kwargs)


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_printable,
)
environment.policies["json.dumps_function"] = _readable_json


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime, tz: str = "UTC", fmt: str = "%H:%M") -> str:
    return value.astimezone(_zone(tz)).strftime(fmt)


def moment(value: datetime, tz: str, now: datetime) -> str:
    """A time in a list, as its reader reads it (patients: their zone; staff: the
    clinic's), the zone named: "13:30 EST" today, "Tue 8 Dec, 13:30 EST" on another
    day, with the year when it is not this one. A bare "13:30" on the patient's home
    left them to guess which day."""
    zone = _zone(tz)
    local, today = value.astimezone(zone), now.astimezone(zone).date()
    clock = local.strftime("%H:%M %Z")
    if local.date() == today:
        return clock
    day = local.strftime("%a %-d %b" if local.year == today.year else "%a %-d %b %Y")
    return f"{day}, {clock}"


environment.filters["local_time"] = local_time
environment.filters["moment"] = moment
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
    context.setdefault("now", services.clock.now())
    context.setdefault("join_session", bool(current and current.session.visit_id))
    context["idle_expires_at"] = current.idle_expires_at.isoformat() if current else ""
    context["idle_warning_seconds"] = services.settings.idle_warning_seconds
    context["environment"] = services.settings.env
    context["request"] = request
    html = environment.get_template(template).render(**context)
    try:
        body = html.encode("utf-8")
    except UnicodeEncodeError:
        # Text that reached the page outside a {{ }} (a template's own code); the page
        # shows U+FFFD rather than failing.
        body = readable(html).encode("utf-8")
    return HTMLResponse(body, status_code=status)
