"""The visit note: versioned saves, the safety gate, signing, addenda, the summary.

Every save carries the version it was based on. The update is a compare-and-swap on
that version, so two tabs saving at once cannot both win: the later one gets 409
``version_conflict`` with the current note and merges in the panel. Nothing is
acknowledged before it is committed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_visit, require_full_session, require_role
from server.actors import Actor
from server.errors import Conflict, Forbidden, ValidationFailed
from server.events import emit
from server.followup import default_follow_up
from server.medications import MedicationChangeRow, apply_changes, check_rows
from server.models import (
    CheckIn,
    NoteAddendum,
    NoteStatus,
    SafetyAddendumTask,
    Role,
    User,
    Visit,
    VisitKind,
    VisitNote,
)
from server.services import Services
from server.triage import Level, level_at_least
from server.visits import care_team_ids, create_visit, invite_to_visit

SECTIONS = ("interval_history", "mental_status", "assessment", "plan", "side_effect_actions",
            "safety_assessed", "safety_risk_judgement", "safety_plan")
SAFETY_SECTIONS = ("safety_assessed", "safety_risk_judgement", "safety_plan")
SECTION_LIMIT = 20_000


class NoteSave(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)
    sections: dict[str, str] = Field(default_factory=dict)
    medication_changes: list[MedicationChangeRow] = Field(default_factory=list, max_length=30)
    follow_up_days: int | None = Field(default=None, ge=1, le=365)


def _check_sections(sections: dict[str, str]) -> dict[str, str]:
    for key, text in sections.items():
        if key not in SECTIONS:
            raise ValidationFailed(f"sections.{key} is not a section of the note.",
                                   field=f"sections.{key}")
        if len(text) > SECTION_LIMIT:
            raise ValidationFailed(f"sections.{key} is over {SECTION_LIMIT} characters.",
                                   field=f"sections.{key}")
    return {key: sections.get(key, "") for key in SECTIONS}


async def _checkin(session: AsyncSession, visit: Visit) -> CheckIn | None:
    return await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))


async def safety_gate(session: AsyncSession, visit: Visit) -> list[str]:
    """The check-in reasons (level review or higher) that need a safety assessment."""
    checkin = await _checkin(session, visit)
    if checkin is None or not checkin.level or not level_at_least(checkin.level, Level.REVIEW):
        return []
    return list(checkin.reasons or [])


def _safety_missing(note: VisitNote) -> list[str]:
    return [key for key in SAFETY_SECTIONS if not str(note.sections.get(key, "")).strip()]


async def _note_for(session: AsyncSession, visit: Visit, now: datetime) -> VisitNote:
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None:
        note = VisitNote(visit_id=visit.id, patient_id=visit.patient_id, version=0,
                         status=NoteStatus.draft, sections={k: "" for k in SECTIONS},
                         medication_changes=[], created_at=now, updated_at=now)
        session.add(note)
        await session.flush()
    return note


async def note_json(session: AsyncSession, services: Services, visit: Visit,
                    note: VisitNote) -> dict[str, Any]:
    addenda = (await session.scalars(select(NoteAddendum).where(
        NoteAddendum.note_id == note.id).order_by(NoteAddendum.at, NoteAddendum.id))).all()
    ids = {i for i in (note.updated_by_id, note.signed_by_id, *(a.author_id for a in addenda))
           if i}
    names: dict[int | None, str] = {}
    if ids:
        rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
        names = {row[0]: row[1] for row in rows}
    actions = [str(row.get("action")) for row in note.medication_changes]
    cadence = await default_follow_up(session, services.settings, visit, actions)
    gate = await safety_gate(session, visit)
    return {
        "id": note.id, "visit_id": note.visit_id, "patient_id": note.patient_id,
        "version": note.version, "status": note.status.value,
        "sections": {k: note.sections.get(k, "") for k in SECTIONS},
        "medication_changes": note.medication_changes,
        "follow_up_days": note.follow_up_days,
        "follow_up_default": cadence.to_json(),
        "safety_required": bool(gate), "safety_reasons": gate,
        "safety_missing": _safety_missing(note) if gate else [],
        "updated_at": note.updated_at.isoformat(),
        "updated_by": {"id": note.updated_by_id, "name": names.get(note.updated_by_id, "")}
        if note.updated_by_id else None,
        "signed_at": note.signed_at.isoformat() if note.signed_at else None,
        "signed_by": {"id": note.signed_by_id, "name": names.get(note.signed_by_id, "")}
        if note.signed_by_id else None,
        "addenda": [{"id": a.id, "at": a.at.isoformat(), "text": a.text,
                     "author": {"id": a.author_id, "name": names.get(a.author_id, "")}}
                    for a in addenda],
    }


async def _staff_visit(session: AsyncSession, services: Services, actor: Actor,
                       visit_id: int, *, write: bool) -> Visit:
    if actor.role is Role.patient:
        raise Forbidden("The visit note is written by the care team.")
    if write:
        require_role(actor, Role.prescriber)
        require_full_session(actor)
    return await access_visit(session, actor, visit_id, write=write,
                              now=services.clock.now())


async def get_note(session: AsyncSession, services: Services, actor: Actor,
                   visit_id: int) -> dict[str, Any]:
    visit = await _staff_visit(session, services, actor, visit_id, write=False)
    note = await _note_for(session, visit, services.clock.now())
    audit.record(session, actor, "read", "note", note.id, patient_id=visit.patient_id)
    return await note_json(session, services, visit, note)


async def save_note(session: AsyncSession, services: Services, actor: Actor, visit_id: int,
                    body: NoteSave) -> dict[str, Any]:
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is NoteStatus.signed:
        raise Conflict("The note is signed; add an addendum instead.", code="note_signed",
                       field="status", extra={"status": "signed"})
    sections = _check_sections(body.sections)
    rows = [row.model_dump(exclude_none=True) for row in body.medication_changes]
    result = await session.execute(
        update(VisitNote).where(VisitNote.id == note.id, VisitNote.version == body.version)
        .values(version=body.version + 1, sections=sections, medication_changes=rows,
                follow_up_days=body.follow_up_days, updated_at=now, updated_by_id=actor.user_id)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.refresh(note)
        current = await note_json(session, services, visit, note)
        raise Conflict(
            f"The note changed since version {body.version}; it is now version "
            f"{note.version}.", code="version_conflict", field="version",
            extra={"current": current})
    await session.refresh(note)
    audit.record(session, actor, "save", "note", note.id, patient_id=visit.patient_id,
                 version=note.version)
    emit(session, "note.saved", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, note_id=note.id, version=note.version)
    return await note_json(session, services, visit, note)


async def sign_note(session: AsyncSession, services: Services, actor: Actor,
                    visit_id: int) -> dict[str, Any]:
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is NoteStatus.signed:
        raise Conflict("The note is already signed.", code="note_signed", field="status",
                       extra={"status": "signed"})
    gate = await safety_gate(session, visit)
    missing = _safety_missing(note) if gate else []
    if missing:
        raise Conflict(
            "A safety assessment is required before signing: the check-in had "
            f"{', '.join(gate)}. Fill in what was assessed, your risk judgement and the "
            "safety plan.", code="safety_assessment_required", field=f"sections.{missing[0]}",
            extra={"reasons": gate, "missing": missing})
    rows = [MedicationChangeRow.model_validate(row) for row in note.medication_changes]
    check_rows(rows)
    await apply_changes(session, actor, patient_id=visit.patient_id, note_id=note.id,
                        rows=rows, now=now)
    if note.follow_up_days is None:
        cadence = await default_follow_up(session, services.settings, visit,
                                          [r.action for r in rows])
        note.follow_up_days = cadence.days
    note.status = NoteStatus.signed
    note.signed_at = now
    note.signed_by_id = actor.user_id
    note.version += 1
    audit.record(session, actor, "sign", "note", note.id, patient_id=visit.patient_id)
    emit(session, "note.signed", await care_team_ids(session, visit.patient_id)
         | {visit.patient_id}, visit_id=visit.id, note_id=note.id)
    return await note_json(session, services, visit, note)


async def safety_reasons_after_signing(session: AsyncSession, services: Services,
                                      visit: Visit, checkin: CheckIn,
                                      reasons: list[str]) -> None:
    """A check-in version with safety reasons (level review or higher) was saved: when the
    visit's note is already signed, the prescriber owes an addendum with a safety
    assessment (CLINICAL.md, invariant 7), shown at the top of their day. One open task
    per note; later reasons join it. Called with the visit locked."""
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None or note.status is not NoteStatus.signed:
        return
    now = services.clock.now()
    task = await session.scalar(select(SafetyAddendumTask).where(
        SafetyAddendumTask.note_id == note.id, SafetyAddendumTask.done_at.is_(None)))
    if task is None:
        task = SafetyAddendumTask(note_id=note.id, visit_id=visit.id,
                                  patient_id=visit.patient_id,
                                  prescriber_id=visit.prescriber_id, checkin_id=checkin.id,
                                  reasons=list(reasons), created_at=now)
        session.add(task)
        await session.flush()
        audit.record(session, None, "create", "safety_addendum_task", task.id,
                     patient_id=visit.patient_id, note_id=note.id)
    else:
        merged = list(dict.fromkeys([*task.reasons, *reasons]))
        if merged == task.reasons:
            return
        task.reasons = merged
    emit(session, "note.addendum_needed", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, note_id=note.id, task_id=task.id)


async def add_addendum(session: AsyncSession, services: Services, actor: Actor,
                       visit_id: int, text: str) -> dict[str, Any]:
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is not NoteStatus.signed:
        raise Conflict("Addenda are for signed notes; edit the note instead.",
                       code="note_not_signed", field="status", extra={"status": "draft"})
    if not text.strip():
        raise ValidationFailed("Write the addendum.", field="text")
    addendum = NoteAddendum(note_id=note.id, author_id=actor.user_id, at=now,
                            text=text.strip())
    session.add(addendum)
    await session.flush()
    audit.record(session, actor, "addendum", "note", note.id, patient_id=visit.patient_id,
                 addendum_id=addendum.id)
    return {"id": addendum.id, "note_id": note.id, "at": now.isoformat(), "text": addendum.text,
            "author": {"id": actor.user_id, "name": actor.name}}


async def schedule_next(session: AsyncSession, services: Services, actor: Actor,
                        visit_id: int, days: int | None) -> dict[str, Any]:
    """Create the next visit at the chosen interval and queue its invitation."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    note = await _note_for(session, visit, services.clock.now())
    if days is None:
        days = note.follow_up_days or (await default_follow_up(
            session, services.settings, visit,
            [str(r.get("action")) for r in note.medication_changes])).days
    next_visit = await create_visit(
        session, actor, patient_id=visit.patient_id, prescriber_id=visit.prescriber_id,
        kind=VisitKind.follow_up, scheduled_at=visit.scheduled_at + timedelta(days=days),
        duration_minutes=None, now=services.clock.now())
    invite = await invite_to_visit(session, services, actor, next_visit.id)
    return {"id": next_visit.id, "scheduled_at": next_visit.scheduled_at.isoformat(),
            "days": days, "invite_id": invite["id"]}


async def after_visit_summary(session: AsyncSession, services: Services, actor: Actor,
                              visit_id: int) -> dict[str, Any]:
    """The plain-language summary for the patient, from the signed note."""
    visit = await access_visit(session, actor, visit_id, now=services.clock.now())
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None or note.status is not NoteStatus.signed:
        raise Conflict("The summary is ready once your prescriber signs the visit note.",
                       code="summary_not_ready", field="status")
    next_visit = await session.scalar(select(Visit).where(
        Visit.patient_id == visit.patient_id, Visit.scheduled_at > visit.scheduled_at)
        .order_by(Visit.scheduled_at).limit(1))
    checkin = await _checkin(session, visit)
    reported = (checkin.data.get("side_effects") if checkin else None) or []
    audit.record(session, actor, "read", "after_visit_summary", note.id,
                 patient_id=visit.patient_id)
    return {
        "visit_id": visit.id,
        "medication_changes": note.medication_changes,
        "plan": note.sections.get("plan", ""),
        "side_effects_reported": reported,
        "side_effect_actions": note.sections.get("side_effect_actions", ""),
        "follow_up_days": note.follow_up_days,
        "next_visit": {"id": next_visit.id, "scheduled_at": next_visit.scheduled_at.isoformat()}
        if next_visit else None,
        "crisis_resources": {
            "lifeline": "Call or text 988 (Suicide & Crisis Lifeline; press 1 for the "
                        "Veterans Crisis Line)",
            "emergency": "Call 911 if you are in immediate danger"},
    }
