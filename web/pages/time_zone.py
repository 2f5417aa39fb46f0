"""The patient's own time zone: every time on their pages is shown in it."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import accounts
from server.access import require_role
from server.errors import APIError
from server.http import actor_of, client_ip, services_of
from server.models import Role
from server.timezones import viewer_zone
from web.forms import checked_form, text_field
from web.rendering import render

# Offered first; any other IANA name can be typed (the form checks it).
COMMON_ZONES: Final = ("America/New_York", "America/Chicago", "America/Denver",
                       "America/Phoenix", "America/Los_Angeles", "America/Anchorage",
                       "Pacific/Honolulu", "America/Puerto_Rico")


async def time_zone_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    services = services_of(request)
    async with services.transaction() as session:
        zone = await viewer_zone(session, services.settings, actor)
    return render(request, "time_zone.html", zone=zone, zones=COMMON_ZONES,
                  join_session=actor.scope_visit_id is not None)


async def time_zone_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    services = services_of(request)
    try:
        async with services.transaction() as session:
            zone = await accounts.set_own_timezone(
                session, actor, text_field(form, "timezone", max_length=64))
    except APIError as exc:
        async with services.transaction() as session:
            shown = await viewer_zone(session, services.settings, actor)
        return render(request, "time_zone.html", status=exc.status, error=exc.message,
                      zone=shown, zones=COMMON_ZONES,
                      join_session=actor.scope_visit_id is not None)
    return render(request, "time_zone.html", done=True, zone=zone, zones=COMMON_ZONES,
                  join_session=False)


ROUTES = [
    Route("/account/time-zone", time_zone_page, methods=["GET"]),
    Route("/account/time-zone", time_zone_submit, methods=["POST"]),
]
