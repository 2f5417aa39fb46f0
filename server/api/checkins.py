"""Instruments, stateless triage, the visit check-in and a patient's measures."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import checkins, fhir, trends
from server.api.registry import ApiOperation
from server.checkins import CheckInCompletion, CheckInDraft
from server.emergency_info import EmergencyInfoBody
from server.http import actor_of, json_object, path_id, services_of
from server.instruments import instrument_definitions
from server.responses import JSONResponse
from server.triage import TriageBody, evaluate


async def list_instruments(request: Request) -> Response:
    return JSONResponse({"instruments": instrument_definitions()})


async def triage(request: Request) -> Response:
    # Stateless: scores and triages what is sent, stores nothing, needs no sign-in.
    body = await json_object(request)
    result = evaluate(body, services_of(request).rules)
    return JSONResponse(result.to_json())


async def get_checkin(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        result = await checkins.get_checkin(session, services, actor, visit_id)
    return JSONResponse(result.to_json())


async def save_draft(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_object(request)
    services = services_of(request)
    async with services.transaction() as session:
        result = await checkins.save_draft(session, services, actor, visit_id, body)
    return JSONResponse(result.to_json())


async def confirm_emergency_info(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_object(request)
    services = services_of(request)
    async with services.transaction() as session:
        result = await checkins.confirm_emergency_info(session, services, actor, visit_id, body)
    return JSONResponse(result.to_json())


async def complete_checkin(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_object(request)
    services = services_of(request)
    async with services.transaction() as session:
        result = await checkins.complete(session, services, actor, visit_id, body)
    return JSONResponse(result.to_json(), status_code=201)


async def measures(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await trends.patient_measures(session, actor, patient_id,
                                              now=services.clock.now())
    return JSONResponse({"patient_id": patient_id, "measures": [t.to_json() for t in found]})


async def fhir_export(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        bundle = await fhir.measures_bundle(session, actor, patient_id,
                                            now=services.clock.now())
    return JSONResponse(bundle, media_type="application/fhir+json")


OPERATIONS = [
    ApiOperation("GET", "/api/v1/instruments", list_instruments,
                 "Questionnaire definitions: items, options, recall, LOINC, skip logic",
                 tag="checkin", anonymous=True),
    ApiOperation("POST", "/api/v1/triage", triage,
                 "Score and triage answers without storing them", body=TriageBody,
                 tag="checkin", anonymous=True),
    ApiOperation("GET", "/api/v1/visits/{visit_id}/checkin", get_checkin,
                 "The visit's check-in, what it needs and the prefilled emergency information",
                 tag="checkin"),
    ApiOperation("PUT", "/api/v1/visits/{visit_id}/checkin/draft", save_draft,
                 "Save a partial check-in (triaged at once when it shows urgent risk)",
                 body=CheckInDraft, tag="checkin"),
    ApiOperation("PUT", "/api/v1/visits/{visit_id}/checkin/emergency-info",
                 confirm_emergency_info,
                 "Confirm where the patient is now and a callback number (and the emergency "
                 "contact): asked first when a draft is urgent, and before entering a visit",
                 body=EmergencyInfoBody, tag="checkin"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/checkin", complete_checkin,
                 "Complete the check-in: scores, triage, escalations raised",
                 body=CheckInCompletion, success=201, tag="checkin"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/measures", measures,
                 "Each instrument's series with baseline, response, remission, worsening",
                 tag="checkin"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/fhir", fhir_export,
                 "The patient's measures as a FHIR R4 Bundle", tag="checkin"),
]
