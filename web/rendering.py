"""Jinja2 rendering with what every page needs: the user, CSRF token, session timing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
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


def zone_abbreviation(local: datetime) -> str:
    """The zone's name at that time ("EST", "BST"); "UTC+4" where the zone has only a
    number ("+04"), as the browser's twin (static/moment.js) writes it too."""
    name = local.strftime("%Z")
    if name[:1] not in "+-" or not name:
        return name
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")


def moment(value: datetime, tz: str, now: datetime) -> str:
    """A point in time, as its reader reads it (patients: their zone; staff: the
    clinic's), the zone named: "13:30 EST" today, "Tue 8 Dec, 13:30 EST" on another
    day, with the year when it is not this one. A bare "13:30" on the patient's home
    left them to guess which day. static/moment.js writes the same in the browser."""
    zone = _zone(tz)
    local, today = value.astimezone(zone), now.astimezone(zone).date()
    clock = f"{local:%H:%M} {zone_abbreviation(local)}"
    if local.date() == today:
        return clock
    day = local.strftime("%a %-d %b" if local.year == today.year else "%a %-d %b %Y")
    return f"{day}, {clock}"


@lru_cache(maxsize=256)
def _names_in(zone: str, year: int) -> tuple[tuple[int, str], ...]:
    found: dict[int, str] = {}
    for month in range(1, 13):
        for day in (1, 15):
            local = datetime(year, month, day, 12, tzinfo=UTC).astimezone(_zone(zone))
            offset = local.utcoffset()
            if offset is not None:
                found[int(offset.total_seconds() // 60)] = zone_abbreviation(local)
    return tuple(sorted(found.items()))


def zone_names(tz: str, now: datetime) -> str:
    """The zone's names by offset (minutes east) around ``now``, as JSON for the page
    (``<body data-zone-names>``): static/moment.js names a zone from this, as the
    server does, where the browser would say "GMT+1"."""
    names: dict[str, str] = {}
    for year in (now.year - 1, now.year, now.year + 1):
        names.update((str(offset), name) for offset, name in _names_in(tz, year))
    return json.dumps(names, sort_keys=True)


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
    # The zone the page's scripts write times in (static/moment.js): the one its
    # server-rendered times use (`tz`, the reader's), else the clinic's.
    page_zone = str(context.get("tz") or services.settings.clinic_timezone)
    context.setdefault("page_zone", page_zone)
    context.setdefault("page_zone_names", zone_names(page_zone, context["now"]))
    html = environment.get_template(template).render(**context)
    try:
        body = html.encode("utf-8")
    except UnicodeEncodeError:
        # Text that reached the page outside a {{ }} (a template's own code); the page
        # shows U+FFFD rather than failing.
        body = readable(html).encode("utf-8")
    return HTMLResponse(body, status_code=status)
