"""``/api/v1/on-call``: the on-call rota (``server.oncall``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from server import oncall
from server.api.registry import ApiOperation
from server.http import (
    MAX_ID,
    Instant,
    actor_of,
    datetime_param,
    json_body,
    path_id,
    services_of,
)
from server.responses import JSONResponse


class NewShift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(gt=0, le=MAX_ID)
    starts_at: Instant
    ends_at: Instant


async def list_shifts(request: Request) -> Response:
    actor = actor_of(request)
    at, start, end = (datetime_param(request, name) for name in ("at", "from", "to"))
    services = services_of(request)
    async with services.transaction() as session:
        shifts = await oncall.list_shifts(session, actor, now=services.clock.now(), at=at,
                                          start=start, end=end)
    return JSONResponse({"shifts": [s.to_json() for s in shifts]})


async def add_shift(request: Request) -> Response:
    actor = actor_of(request)
    body = await json_body(request, NewShift)
    services = services_of(request)
    async with services.transaction() as session:
        shift = await oncall.add_shift(session, actor, user_id=body.user_id,
                                       starts_at=body.starts_at, ends_at=body.ends_at,
                                       now=services.clock.now())
    return JSONResponse(shift.to_json(), status_code=201)


async def end_shift(request: Request) -> Response:
    actor = actor_of(request)
    shift_id = path_id(request, "shift_id")
    services = services_of(request)
    async with services.transaction() as session:
        shift = await oncall.end_shift(session, actor, shift_id, now=services.clock.now())
    return JSONResponse(shift.to_json())


OPERATIONS = [
    ApiOperation("GET", "/api/v1/on-call", list_shifts,
                 "The on-call rota: shifts running now and to come; ?at= or ?from=&to= "
                 "(staff)", tag="on-call"),
    ApiOperation("POST", "/api/v1/on-call", add_shift,
                 "Put a prescriber or coordinator on call (admin)", body=NewShift,
                 success=201, tag="on-call"),
    # POST .../end rather than DELETE: the shift is kept (ended now, or cancelled if it
    # had not started), so "who was on call then" stays answerable.
    ApiOperation("POST", "/api/v1/on-call/{shift_id}/end", end_shift,
                 "End a running shift now, or cancel one to come (admin)", tag="on-call"),
]
