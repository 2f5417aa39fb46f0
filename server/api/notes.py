"""The visit note, its signing and addenda, the medication list and the summary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from server import medication_list as medication_lists
from server import notes
from server.api.registry import ApiOperation
from server.errors import ValidationFailed
from server.http import actor_of, json_body, path_id, services_of
from server.responses import JSONResponse
from server.timezones import clinic_zone


class NextVisit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int | None = Field(default=None, ge=1, le=365)


async def get_note(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        note = await notes.get_note(session, services, actor, visit_id)
    return JSONResponse(note.to_json())


async def put_note(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, notes.NoteSave)
    services = services_of(request)
    async with services.transaction() as session:
        note = await notes.save_note(session, services, actor, visit_id, body)
    return JSONResponse(note.to_json())


async def sign(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    # The version is required: a sign that names none (even with no body at all) is 422.
    if not await request.body():
        raise ValidationFailed("Name the note version you are signing: {\"version\": N}.",
                               field="version")
    body = await json_body(request, notes.NoteSign)
    services = services_of(request)
    async with services.transaction() as session:
        note = await notes.sign_note(session, services, actor, visit_id, body.version)
    return JSONResponse(note.to_json())


async def sign_check(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    if not await request.body():
        raise ValidationFailed("Name the note version you are about to sign: "
                               "{\"version\": N}.", field="version")
    body = await json_body(request, notes.NoteSign)
    services = services_of(request)
    async with services.transaction() as session:
        found = await notes.sign_check(session, services, actor, visit_id, body.version)
    return JSONResponse(found.to_json())


async def add_addendum(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, notes.NewAddendum)
    services = services_of(request)
    async with services.transaction() as session:
        added = await notes.add_addendum(session, services, actor, visit_id, body)
    return JSONResponse(added.to_json(), status_code=201)


async def next_visit(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    body = await json_body(request, NextVisit)
    services = services_of(request)
    async with services.transaction() as session:
        scheduled = await notes.schedule_next(session, services, actor, visit_id, body.days)
    return JSONResponse(scheduled.to_json(), status_code=201)


async def summary(request: Request) -> Response:
    actor = actor_of(request)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await notes.after_visit_summary(session, services, actor, visit_id)
    return JSONResponse(found.to_json())


async def medication_list(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await medication_lists.medication_list(
            session, actor, patient_id, now=services.clock.now(),
            zone=clinic_zone(services.settings))
    return JSONResponse({"medications": [entry.to_json() for entry in found]})


OPERATIONS = [
    ApiOperation("GET", "/api/v1/visits/{visit_id}/note", get_note,
                 "The visit note (an empty draft, not stored, before its first save), its "
                 "follow-up default and "
                 "whether a safety assessment is required", tag="notes"),
    ApiOperation("PUT", "/api/v1/visits/{visit_id}/note", put_note,
                 "Save the whole note, based on `version` (409 version_conflict when stale)",
                 body=notes.NoteSave, tag="notes"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/note/sign", sign,
                 "Sign and lock the note at the `version` the signer saw; applies medication "
                 "changes (409 version_conflict, 409 safety_assessment_required)",
                 body=notes.NoteSign, tag="notes"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/note/sign-check", sign_check,
                 "Check, without signing, whether the note at `version` would pass the "
                 "signing gate: `ready`, and the gate's `reasons` and `missing` sections a "
                 "sign would refuse with (409 version_conflict, 409 note_signed as a sign)",
                 body=notes.NoteSign, tag="notes"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/note/addenda", add_addendum,
                 "Append an addendum to a signed note; one with a `safety_assessment` "
                 "closes the note's open safety addendum task", body=notes.NewAddendum,
                 success=201, tag="notes"),
    ApiOperation("POST", "/api/v1/visits/{visit_id}/next-visit", next_visit,
                 "Schedule the next visit at the chosen interval and email the invitation",
                 body=NextVisit, success=201, tag="notes"),
    ApiOperation("GET", "/api/v1/visits/{visit_id}/summary", summary,
                 "The after-visit summary (once the note is signed)", tag="notes"),
    ApiOperation("GET", "/api/v1/patients/{patient_id}/medications", medication_list,
                 "Current and past medications with their history and monitoring",
                 tag="notes"),
]
