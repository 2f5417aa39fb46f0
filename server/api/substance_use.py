"""``/api/v1/patients/{patient_id}/substance-use-track``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import substance_use
from server.api.registry import ApiOperation
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse
from server.substance_use import TrackBody


async def set_track(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, TrackBody)
    services = services_of(request)
    async with services.transaction() as session:
        track = await substance_use.set_track(session, actor, patient_id, on=body.on,
                                              now=services.clock.now())
    return JSONResponse(track.to_json())


OPERATIONS = [
    ApiOperation("PUT", "/api/v1/patients/{patient_id}/substance-use-track", set_track,
                 "Put the patient in the program's substance-use track (the Brief Addiction "
                 "Monitor monthly at check-in) or take them out; the care team only",
                 body=TrackBody, tag="patients"),
]
