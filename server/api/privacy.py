"""42 CFR Part 2 over the API: consents, disclosures and the accounting of disclosures
(``server.consents``, ``server.disclosures``; docs/privacy.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import consents, counseling_notes, disclosures
from server.api.registry import ApiOperation
from server.consents import ConsentBody
from server.counseling_notes import NewCounselingNote
from server.disclosures import EmergencyBody, FhirDisclosureBody
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse
from server.timezones import clinic_zone


async def list_consents(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await consents.list_for(session, actor, patient_id, now=services.clock.now(),
                                        zone=clinic_zone(services.settings))
    return JSONResponse({"consents": [c.to_json() for c in found]})


async def sign_consent(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, ConsentBody)
    services = services_of(request)
    async with services.transaction() as session:
        signed = await consents.sign(session, actor, patient_id, body,
                                     now=services.clock.now(),
                                     zone=clinic_zone(services.settings))
    return JSONResponse(signed.to_json(), status_code=201)


async def record_paper_consent(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, ConsentBody)
    services = services_of(request)
    async with services.transaction() as session:
        recorded = await consents.record_paper(session, actor, patient_id, body,
                                               now=services.clock.now(),
                                               zone=clinic_zone(services.settings))
    return JSONResponse(recorded.to_json(), status_code=201)


async def revoke_consent(request: Request) -> Response:
    actor = actor_of(request)
    consent_id = path_id(request, "consent_id")
    services = services_of(request)
    async with services.transaction() as session:
        revoked = await consents.revoke(session, actor, consent_id, now=services.clock.now(),
                                        zone=clinic_zone(services.settings))
    return JSONResponse(revoked.to_json())


async def consents_fhir(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await consents.list_for(session, actor, patient_id, now=services.clock.now(),
                                        zone=clinic_zone(services.settings))
    organization = services.settings.program_name
    entries = [{"fullUrl": f"urn:mendwell:consent:{c.id}",
                "resource": consents.fhir_consent(c, organization)} for c in found]
    bundle: dict[str, object] = {"resourceType": "Bundle", "type": "collection"}
    if entries:
        bundle["entry"] = entries
    return JSONResponse(bundle, media_type="application/fhir+json")


async def disclose_fhir(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, FhirDisclosureBody)
    services = services_of(request)
    async with services.transaction() as session:
        bundle, _ = await disclosures.export_fhir(
            session, actor, patient_id, body, now=services.clock.now(),
            zone=clinic_zone(services.settings), organization=services.settings.program_name)
    return JSONResponse(bundle, media_type="application/fhir+json")


async def record_emergency(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, EmergencyBody)
    services = services_of(request)
    async with services.transaction() as session:
        recorded = await disclosures.record_emergency(session, actor, patient_id, body,
                                                      now=services.clock.now())
    return JSONResponse(recorded.to_json(), status_code=201)


async def list_disclosures(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await disclosures.accounting(session, actor, patient_id,
                                             now=services.clock.now())
    return JSONResponse({"disclosures": [d.to_json() for d in found]})


async def list_counseling_notes(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await counseling_notes.list_for(session, actor, patient_id,
                                                now=services.clock.now())
    return JSONResponse({"counseling_notes": [n.to_json() for n in found]})


async def write_counseling_note(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    body = await json_body(request, NewCounselingNote)
    services = services_of(request)
    async with services.transaction() as session:
        note = await counseling_notes.write(session, actor, patient_id, body,
                                            now=services.clock.now())
    return JSONResponse(note.to_json(), status_code=201)


OPERATIONS = [
    ApiOperation("GET", "/api/v1/patients/{patient_id}/consents", list_consents,
                 "The patient's Part 2 consents, active and revoked", tag="privacy"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/consents", sign_consent,
                 "The patient signs a Part 2 consent (typed full name)", body=ConsentBody,
                 success=201, tag="privacy"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/consents/paper", record_paper_consent,
                 "Staff record a Part 2 consent the patient signed on paper",
                 body=ConsentBody, success=201, tag="privacy"),
    ApiOperation("POST", "/api/v1/consents/{consent_id}/revoke", revoke_consent,
                 "Revoke a consent: no later disclosure rests on it", tag="privacy"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/consents/fhir", consents_fhir,
                 "The patient's consents as FHIR R4 Consent resources", tag="privacy"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/disclosures/fhir", disclose_fhir,
                 "Export the record to a recipient outside the program: Part 2 data only "
                 "under a consent, labelled, with the 42 CFR 2.32 notice; recorded",
                 body=FhirDisclosureBody, tag="privacy"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/disclosures/emergency",
                 record_emergency,
                 "Record a medical-emergency disclosure (42 CFR 2.51): no consent needed",
                 body=EmergencyBody, success=201, tag="privacy"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/disclosures", list_disclosures,
                 "The patient's accounting of disclosures, past 3 years", tag="privacy"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/counseling-notes",
                 list_counseling_notes,
                 "SUD counseling notes (kept apart; the care team's prescribers and "
                 "coordinators)", tag="privacy"),
    ApiOperation("POST", "/api/v1/patients/{patient_id}/counseling-notes",
                 write_counseling_note, "Write an SUD counseling note",
                 body=NewCounselingNote, success=201, tag="privacy"),
]
