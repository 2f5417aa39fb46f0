"""Substance use disorder counseling notes (42 CFR 2.11): a note type of its own.

A counselor's or prescriber's notes of a counseling session about substance use are kept
apart from the visit note (``sud_counseling_notes``): they are not in the note panel, the
after-visit summary, the patient's own FHIR copy or the care team's; they leave the
program only through ``server.disclosures`` under a consent for them alone (2.31(b)).
Only the care team's prescribers and coordinators write and read them.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient_consents, access_visit, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.errors import ValidationFailed
from server.events import emit
from server.freetext import require_letters
from server.models import Role, SudCounselingNote, User
from server.results import Instant, Person, Result

MAX_TEXT = 20_000


class NewCounselingNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    visit_id: int | None = Field(default=None, ge=1)


class CounselingNote(Result):
    id: int
    patient_id: int
    visit_id: int | None
    author: Person
    created_at: Instant
    text: str


async def write(session: AsyncSession, actor: Actor, patient_id: int,
                body: NewCounselingNote, *, now: datetime) -> CounselingNote:
    """A new counseling note: never edited afterwards (a correction is another note)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient_consents(session, actor, patient_id, write=True, now=now)
    text = require_letters(body.text, "text", what="the note")
    if body.visit_id is not None:
        visit = await access_visit(session, actor, body.visit_id, now=now)
        if visit.patient_id != patient_id:
            raise ValidationFailed("That visit is another patient's.", field="visit_id")
    note = SudCounselingNote(patient_id=patient_id, visit_id=body.visit_id,
                             author_id=actor.user_id, created_at=now, text=text)
    session.add(note)
    await session.flush()
    audit.record(session, actor, "create", "counseling_note", note.id, patient_id=patient_id,
                 at=now)
    emit(session, "counseling_note.written", await care_team_ids(session, patient_id),
         patient_id=patient_id, note_id=note.id)
    return await _result(session, note)


async def list_for(session: AsyncSession, actor: Actor, patient_id: int, *,
                   now: datetime) -> list[CounselingNote]:
    """The patient's counseling notes, newest first, each read audited."""
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient_consents(session, actor, patient_id, now=now)
    rows = (await session.scalars(select(SudCounselingNote).where(
        SudCounselingNote.patient_id == patient_id).order_by(
        SudCounselingNote.created_at.desc(), SudCounselingNote.id.desc()))).all()
    audit.record_reads(session, actor, "counseling_note", [(n.id, patient_id) for n in rows])
    return [await _result(session, note) for note in rows]


async def _result(session: AsyncSession, note: SudCounselingNote) -> CounselingNote:
    author = await session.get(User, note.author_id)
    assert author is not None
    return CounselingNote(id=note.id, patient_id=note.patient_id, visit_id=note.visit_id,
                          author=Person(id=author.id, name=author.name),
                          created_at=note.created_at, text=note.text)


async def fhir_entries(session: AsyncSession, patient_id: int) -> list[dict[str, Any]]:
    """The notes as FHIR ``DocumentReference`` entries, for the disclosure step only
    (which decides whether any of them may go)."""
    rows = (await session.scalars(select(SudCounselingNote).where(
        SudCounselingNote.patient_id == patient_id).order_by(SudCounselingNote.created_at,
                                                             SudCounselingNote.id))).all()
    return [{"fullUrl": f"urn:mendwell:counseling-note:{note.id}", "resource": {
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3",
                             "display": "Progress note"}],
                 "text": "Substance use disorder counseling note"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": note.created_at.isoformat(),
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": _base64(note.text)}}]}} for note in rows]


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
