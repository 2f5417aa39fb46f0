"""The visit room, rendered per role."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import visits
from server.http import actor_of, path_id, services_of
from web.pages.home import CLINIC_TZ
from web.rendering import render


async def visit_room(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    async with services_of(request).transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id)
    return render(request, "visit_room.html", visit=visit, role=actor.role.value, tz=CLINIC_TZ)


ROUTES = [Route("/visits/{visit_id}", visit_room)]
