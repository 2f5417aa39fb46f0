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
    services = services_of(request)
    async with services.transaction() as session:
        visit = await visits.get_visit(session, actor, visit_id, now=services.clock.now())
    # The live room (camera, signaling) is only started for a visit that can still happen.
    return render(request, "visit_room.html", visit=visit, role=actor.role.value, tz=CLINIC_TZ,
                  ended=visit.status in visits.ENDED)


ROUTES = [Route("/visits/{visit_id}", visit_room)]
