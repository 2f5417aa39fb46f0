"""PDMP checks: the prescriber records, for this visit, that they checked the
prescription drug monitoring program of the state the patient is in.

90 FR 6504 (42 CFR 12.3(b)(1)): before prescribing, review the PDMP data of the state
where the patient is during the visit, covering the controlled prescriptions of the
past year, and record the date and time of the review; when the PDMP cannot be reached,
record the attempt (then buprenorphine is limited to a 7-day supply per prescription,
``server.controlled``). ``result`` is ``reviewed`` or ``unavailable``; an unavailable
check says what was tried (at least 10 letters).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_visit, require_full_session, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.errors import ValidationFailed
from server.events import emit
from server.freetext import MIN_LETTERS, letters
from server.models import PdmpCheck, Role, User
from server.results import Instant, Person, Result
from server.services import Services
from server.us_states import UsState

PdmpResult = Literal["reviewed", "unavailable"]
RESULTS: Final[tuple[PdmpResult, ...]] = get_args(PdmpResult)
NOTE_LIMIT: Final = 2000


class NewPdmpCheck(BaseModel):
    """``POST /api/v1/visits/{id}/pdmp-checks``."""

    model_config = ConfigDict(extra="forbid")

    state: UsState
    result: PdmpResult
    note: str = Field(default="", max_length=NOTE_LIMIT)


class PdmpCheckRecord(Result):
    id: int
    visit_id: int
    patient_id: int
    state: str
    result: str
    note: str | None
    checked_at: Instant
    checked_by: Person


def _record(check: PdmpCheck, name: str) -> PdmpCheckRecord:
    return PdmpCheckRecord(id=check.id, visit_id=check.visit_id, patient_id=check.patient_id,
                           state=check.state, result=check.result, note=check.note,
                           checked_at=check.checked_at,
                           checked_by=Person(id=check.checked_by_id, name=name))


async def record_check(session: AsyncSession, services: Services, actor: Actor,
                       visit_id: int, body: NewPdmpCheck) -> PdmpCheckRecord:
    """Record a PDMP check for the visit, by its prescriber (one of the care team's)."""
    require_role(actor, Role.prescriber)
    require_full_session(actor)
    now = services.clock.now()
    visit = await access_visit(session, actor, visit_id, write=True, now=now)
    note = body.note.strip()
    if body.result == "unavailable" and letters(note) < MIN_LETTERS:
        raise ValidationFailed("Say what you tried and why the PDMP could not be checked "
                               "(at least 10 letters).", field="note")
    check = PdmpCheck(visit_id=visit.id, patient_id=visit.patient_id, state=body.state,
                      result=body.result, note=note or None, checked_at=now,
                      checked_by_id=actor.user_id)
    session.add(check)
    await session.flush()
    audit.record(session, actor, "create", "pdmp_check", check.id,
                 patient_id=visit.patient_id, visit_id=visit.id)
    emit(session, "pdmp.checked", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, pdmp_check_id=check.id)
    return _record(check, actor.name)


async def visit_checks(session: AsyncSession, services: Services, actor: Actor,
                       visit_id: int) -> list[PdmpCheckRecord]:
    """The visit's PDMP checks, newest first, for its care team (each read audited)."""
    require_role(actor, Role.prescriber, Role.coordinator, Role.admin)
    visit = await access_visit(session, actor, visit_id, now=services.clock.now())
    rows = (await session.execute(
        select(PdmpCheck, User.name).join(User, User.id == PdmpCheck.checked_by_id)
        .where(PdmpCheck.visit_id == visit.id)
        .order_by(PdmpCheck.checked_at.desc(), PdmpCheck.id.desc()))).all()
    audit.record(session, actor, "read", "pdmp_checks", visit.id,
                 patient_id=visit.patient_id)
    return [_record(check, name) for check, name in rows]
