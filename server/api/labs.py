"""Lab results and the labs due (``server.labs``; docs/clinical.md, "Lab monitoring")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import labs
from server.api.registry import ApiOperation
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse
from server.timezones import clinic_zone


async def list_labs(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    now, zone = services.clock.now(), clinic_zone(services.settings)
    async with services.transaction() as session:
        found = await labs.list_results(session, actor, patient_id, now=now)
        due = await labs.labs_due(session, actor, patient_id, now=now, zone=zone)
    return JSONResponse({"results": [r.to_json() for r in found], "monitoring": due.to_json()})


async def add_lab(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, labs.NewLabResult)
    services = services_of(request)
    async with services.transaction() as session:
        added = await labs.add_result(session, actor, patient_id, body,
                                      now=services.clock.now(),
                                      zone=clinic_zone(services.settings))
    return JSONResponse(added.to_json(), status_code=201)


OPERATIONS = [
    ApiOperation("GET", "/api/v1/patients/{patient_id}/labs", list_labs,
                 "The patient's lab results (newest sample first) and the monitoring labs "
                 "their medications need, with what is due and overdue", tag="labs"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/labs", add_lab,
                 "Enter a lab result (the care team's prescribers and coordinators)",
                 body=labs.NewLabResult, success=201, tag="labs"),
]
