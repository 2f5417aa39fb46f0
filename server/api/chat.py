"""``/api/v1/visits/{visit_id}/chat``: the chat of a visit's call, as part of its record."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import chat
from server.api.registry import ApiOperation
from server.http import actor_of, path_id, services_of
from server.responses import JSONResponse


async def visit_chat(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await chat.messages_for(session, actor, visit_id, now=services.clock.now())
    return JSONResponse({"messages": [m.to_json() for m in found]})


OPERATIONS = [
    ApiOperation("GET", "/api/v1/visits/{visit_id}/chat", visit_chat,
                 "The chat of the visit's call, oldest first (the care team, the patient)",
                 tag="visits"),
]
