"""``/api/v1/visits/{visit_id}/guests``: invite an interpreter or family member."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from server import guests
from server.api.registry import ApiOperation
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse
from server.timezones import clinic_zone


class NewGuest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)


async def invite_guest(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, NewGuest)
    services = services_of(request)
    async with services.transaction() as session:
        invited = await guests.invite_guest(session, services, actor, visit_id,
                                            name=body.name, email=body.email)
    return JSONResponse(invited.to_json(), status_code=201)


async def consent_to_guest(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    guest_id = path_id(request, "guest_id")
    services = services_of(request)
    async with services.transaction() as session:
        consent = await guests.consent_to_guest(session, actor, visit_id, guest_id,
                                                now=services.clock.now(),
                                                zone=clinic_zone(services.settings))
    return JSONResponse(consent.to_json(), status_code=201)


OPERATIONS = [
    ApiOperation("POST", "/api/v1/visits/{visit_id}/guests", invite_guest,
                 "Invite a guest (interpreter, family member) and email them a join link",
                 body=NewGuest, success=201, tag="visits"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/guests/{guest_id}/consent",
                 consent_to_guest,
                 "The patient agrees to a guest's presence (a Part 2 consent; the guest can "
                 "be let in only after it)", success=201, tag="privacy"),
]
