"""Controlled-substance prescribing by telehealth: prescribers' credentials and the
visit's PDMP checks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import pdmp, prescriber_credentials
from server.api.registry import ApiOperation
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse


async def get_credentials(request: Request) -> Response:
    actor = actor_of(request)
    prescriber_id = path_id(request, "prescriber_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await prescriber_credentials.get_credentials(session, actor, prescriber_id)
    return JSONResponse(found.to_json())


async def put_credentials(request: Request) -> Response:
    actor = actor_of(request)
    prescriber_id = path_id(request, "prescriber_id")
    body = await json_body(request, prescriber_credentials.CredentialsPut)
    services = services_of(request)
    async with services.transaction() as session:
        found = await prescriber_credentials.set_credentials(session, services, actor,
                                                             prescriber_id, body)
    return JSONResponse(found.to_json())


async def list_pdmp_checks(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await pdmp.visit_checks(session, services, actor, visit_id)
    return JSONResponse({"pdmp_checks": [check.to_json() for check in found]})


async def add_pdmp_check(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, pdmp.NewPdmpCheck)
    services = services_of(request)
    async with services.transaction() as session:
        check = await pdmp.record_check(session, services, actor, visit_id, body)
    return JSONResponse(check.to_json(), status_code=201)


OPERATIONS = [
    ApiOperation("GET", "/api/v1/prescribers/{prescriber_id}/credentials", get_credentials,
                 "A prescriber's state licences and DEA registrations (admins and the "
                 "prescriber)", tag="prescribing"),
    ApiOperation("PUT", "/api/v1/prescribers/{prescriber_id}/credentials", put_credentials,
                 "Replace a prescriber's state licences and DEA registrations, one row a "
                 "state (the clinic's admins only, who verify them; audited)",
                 body=prescriber_credentials.CredentialsPut, tag="prescribing"),
    ApiOperation("GET", "/api/v1/visits/{visit_id}/pdmp-checks", list_pdmp_checks,
                 "The visit's PDMP checks, newest first", tag="prescribing"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/pdmp-checks", add_pdmp_check,
                 "Record a PDMP check for the visit: the state, `reviewed` (the patient's "
                 "controlled prescriptions of the past year) or `unavailable` (with what "
                 "was tried)", body=pdmp.NewPdmpCheck, success=201, tag="prescribing"),
]
