"""The visit note: versioned saves, the safety gate, signing, addenda, the summary.

Every save carries the version it was based on. The update is a compare-and-swap on
that version, so two tabs saving at once cannot both win: the later one gets 409
``version_conflict`` with the current note and merges in the panel. Nothing is
acknowledged before it is committed.

The signing gate has no side door (CLINICAL.md, safety workflow invariants 6 and 7;
docs/clinical.md, "Signing gate and follow-up"):
- it applies when any reason of level ``review`` or higher was ever seen for the visit
  (the check-in's risk: every saved draft and completion, never lowered) or the patient
  has an open escalation of any source or level;
- the assessment must be real: what was assessed and the plan hold at least 10 letters
  each (``server.freetext``), the risk judgement is one of ``RISK_JUDGEMENTS``;
- signing names the version the signer saw. It takes the visit's lock before it reads
  the note and the gate, and writes with a compare-and-swap on that version and
  ``status = 'draft'``: no autosave, check-in or second sign slips in between;
- a check-in with safety reasons that arrives after signing opens a
  ``SafetyAddendumTask`` for the prescriber, closed by an addendum with a safety
  assessment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_visit, require_full_session, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.errors import Conflict, Forbidden, ValidationFailed
from server.events import emit
from server.followup import default_follow_up
from server.freetext import MIN_LETTERS, letters, require_letters
from server.http import MAX_ID
from server.locks import lock_visit
from server.medications import MedicationChangeRow, apply_changes, check_rows
from server.models import (
    CareTeamMember,
    CheckIn,
    Escalation,
    EscalationStatus,
    NoteAddendum,
    NoteStatus,
    Role,
    SafetyAddendumTask,
    User,
    Visit,
    VisitKind,
    VisitNote,
)
from server.services import Services
from server.triage import Level, level_at_least
from server.visits import create_visit, invite_to_visit

SECTIONS = ("interval_history", "mental_status", "assessment", "plan", "side_effect_actions",
            "safety_assessed", "safety_risk_judgement", "safety_plan")
SAFETY_SECTIONS = ("safety_assessed", "safety_risk_judgement", "safety_plan")
# The clinician's risk judgement (CLINICAL.md, invariant 7). The one list: the API checks
# it, the editor's <select> and the addendum form offer it.
RISK_JUDGEMENTS: Final = ("low", "moderate", "high", "imminent")
# In ``safety_reasons``: the patient has an open escalation (its own reasons follow).
ESCALATION_OPEN: Final = "escalation_open"
SECTION_LIMIT = 20_000
ADDENDUM_LIMIT = 20_000


class NoteSave(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A 32-bit column: a larger version would fail in the database driver, not here.
    version: int = Field(ge=0, le=MAX_ID)
    sections: dict[str, str] = Field(default_factory=dict)
    medication_changes: list[MedicationChangeRow] = Field(default_factory=list, max_length=30)
    follow_up_days: int | None = Field(default=None, ge=1, le=365)


class NoteSign(BaseModel):
    """A sign names the note version the signer saw."""

    model_config = ConfigDict(extra="forbid")

    # Strict: "1" or true is not a version anyone saw.
    version: int = Field(ge=0, le=MAX_ID, strict=True)


class SafetyAssessment(BaseModel):
    """A safety assessment given with an addendum; checked like the signing gate."""

    model_config = ConfigDict(extra="forbid")

    assessed: str = Field(default="", max_length=SECTION_LIMIT)
    risk_judgement: str = Field(default="", max_length=32)
    plan: str = Field(default="", max_length=SECTION_LIMIT)


class NewAddendum(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=ADDENDUM_LIMIT)
    safety_assessment: SafetyAssessment | None = None


def _check_sections(sections: dict[str, str]) -> dict[str, str]:
    for key, text in sections.items():
        if key not in SECTIONS:
            raise ValidationFailed(f"sections.{key} is not a section of the note.",
                                   field=f"sections.{key}")
        if len(text) > SECTION_LIMIT:
            raise ValidationFailed(f"sections.{key} is over {SECTION_LIMIT} characters.",
                                   field=f"sections.{key}")
    judgement = sections.get("safety_risk_judgement", "")
    if judgement and judgement not in RISK_JUDGEMENTS:
        raise ValidationFailed(
            f"sections.safety_risk_judgement must be one of {', '.join(RISK_JUDGEMENTS)} "
            "(or empty while drafting).", field="sections.safety_risk_judgement")
    return {key: sections.get(key, "") for key in SECTIONS}


def unmet_safety_sections(sections: Mapping[str, Any]) -> list[str]:
    """The safety sections that do not hold a real assessment, in the note's order:
    fewer than 10 letters of what was assessed or of the plan (spaces, punctuation,
    digits and invisible characters do not count), a judgement not in the list."""
    unmet = []
    for key in SAFETY_SECTIONS:
        value = str(sections.get(key) or "")
        if key == "safety_risk_judgement":
            ok = value in RISK_JUDGEMENTS
        else:
            ok = letters(value.strip()) >= MIN_LETTERS
        if not ok:
            unmet.append(key)
    return unmet


def checked_assessment(given: SafetyAssessment) -> dict[str, str]:
    """The addendum's safety assessment, stripped, or 422 naming the first field that
    would not pass the signing gate."""
    assessed = require_letters(given.assessed, "safety_assessment.assessed",
                               what="what was assessed")
    if given.risk_judgement not in RISK_JUDGEMENTS:
        raise ValidationFailed(
            f"safety_assessment.risk_judgement must be one of {', '.join(RISK_JUDGEMENTS)}.",
            field="safety_assessment.risk_judgement")
    plan = require_letters(given.plan, "safety_assessment.plan", what="the safety plan")
    return {"assessed": assessed, "risk_judgement": given.risk_judgement, "plan": plan}


async def _checkin(session: AsyncSession, visit: Visit) -> CheckIn | None:
    return await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))


@dataclass(frozen=True)
class SafetyGate:
    """Why a safety assessment is needed to sign (no reasons: it is not)."""

    reasons: list[str]
    escalation: Escalation | None

    @property
    def required(self) -> bool:
        return bool(self.reasons)


async def safety_gate(session: AsyncSession, services: Services, visit: Visit) -> SafetyGate:
    """The reasons a safety assessment is required to sign this visit's note: every
    reason of level ``review`` or higher the visit's check-in ever showed (drafts
    included; an unknown code counts as review), then ``escalation_open`` and that
    escalation's own reasons when the patient has an open escalation, whatever its
    source (a check-in of any visit, a manual raise) or level."""
    checkin = await _checkin(session, visit)
    reasons = [code for code in (checkin.reasons or [] if checkin else [])
               if level_at_least(services.rules.level_of_code(code), Level.REVIEW)]
    escalation = await session.scalar(select(Escalation).where(
        Escalation.patient_id == visit.patient_id,
        Escalation.status != EscalationStatus.resolved)
        .order_by(Escalation.raised_at.desc()).limit(1))
    if escalation is not None:
        reasons = list(dict.fromkeys([*reasons, ESCALATION_OPEN, *escalation.reasons]))
    return SafetyGate(reasons, escalation)


def _empty_note(visit: Visit, now: datetime) -> VisitNote:
    return VisitNote(visit_id=visit.id, patient_id=visit.patient_id, version=0,
                     status=NoteStatus.draft, sections={k: "" for k in SECTIONS},
                     medication_changes=[], created_at=now, updated_at=now)


async def _note_for(session: AsyncSession, visit: Visit, now: datetime) -> VisitNote:
    # populate_existing: read after a lock, the row must be what is committed now.
    query = select(VisitNote).where(VisitNote.visit_id == visit.id) \
        .execution_options(populate_existing=True)
    note = await session.scalar(query)
    if note is None:
        # Two first reads at once (two tabs opening the panel) would both insert; the
        # visit's lock puts the second behind the first, which it then finds.
        await lock_visit(session, visit.id)
        note = await session.scalar(query)
    if note is None:
        note = _empty_note(visit, now)
        session.add(note)
        await session.flush()
    return note


async def _open_task(session: AsyncSession, note: VisitNote) -> SafetyAddendumTask | None:
    if note.id is None:  # not stored yet (``get_note``): nothing refers to it
        return None
    return await session.scalar(select(SafetyAddendumTask).where(
        SafetyAddendumTask.note_id == note.id, SafetyAddendumTask.done_at.is_(None)))


def _escalation_json(escalation: Escalation | None) -> dict[str, Any] | None:
    if escalation is None:
        return None
    return {"id": escalation.id, "level": escalation.level, "source": escalation.source,
            "status": escalation.status.value, "reasons": list(escalation.reasons),
            "raised_at": escalation.raised_at.isoformat()}


def _task_json(task: SafetyAddendumTask | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return {"id": task.id, "reasons": list(task.reasons), "since": task.created_at.isoformat(),
            "checkin_id": task.checkin_id}


def _addendum_json(addendum: NoteAddendum, author: str) -> dict[str, Any]:
    return {"id": addendum.id, "note_id": addendum.note_id, "at": addendum.at.isoformat(),
            "text": addendum.text, "author": {"id": addendum.author_id, "name": author},
            "safety": addendum.safety}


async def note_json(session: AsyncSession, services: Services, visit: Visit,
                    note: VisitNote) -> dict[str, Any]:
    addenda = [] if note.id is None else (await session.scalars(select(NoteAddendum).where(
        NoteAddendum.note_id == note.id).order_by(NoteAddendum.at, NoteAddendum.id))).all()
    ids = {i for i in (note.updated_by_id, note.signed_by_id, *(a.author_id for a in addenda))
           if i}
    names: dict[int | None, str] = {}
    if ids:
        rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
        names = {row[0]: row[1] for row in rows}
    actions = [str(row.get("action")) for row in note.medication_changes]
    cadence = await default_follow_up(session, services.settings, visit, actions)
    gate = await safety_gate(session, services, visit)
    return {
        "id": note.id, "visit_id": note.visit_id, "patient_id": note.patient_id,
        "version": note.version, "status": note.status.value,
        "sections": {k: note.sections.get(k, "") for k in SECTIONS},
        "medication_changes": note.medication_changes,
        "follow_up_days": note.follow_up_days,
        "follow_up_default": cadence.to_json(),
        "safety_required": gate.required, "safety_reasons": gate.reasons,
        "safety_missing": unmet_safety_sections(note.sections) if gate.required else [],
        "safety_escalation": _escalation_json(gate.escalation),
        "safety_addendum_task": _task_json(await _open_task(session, note)),
        "updated_at": note.updated_at.isoformat(),
        "updated_by": {"id": note.updated_by_id, "name": names.get(note.updated_by_id, "")}
        if note.updated_by_id else None,
        "signed_at": note.signed_at.isoformat() if note.signed_at else None,
        "signed_by": {"id": note.signed_by_id, "name": names.get(note.signed_by_id, "")}
        if note.signed_by_id else None,
        "addenda": [_addendum_json(a, names.get(a.author_id, "")) for a in addenda],
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


async def _version_conflict(session: AsyncSession, services: Services, visit: Visit,
                            note: VisitNote, version: int) -> Conflict:
    await session.refresh(note)
    current = await note_json(session, services, visit, note)
    return Conflict(
        f"The note changed since version {version}; it is now version {note.version}.",
        code="version_conflict", field="version", extra={"current": current})


def _signed_conflict() -> Conflict:
    return Conflict("The note is signed; add an addendum instead.", code="note_signed",
                    field="status", extra={"status": "signed"})


async def get_note(session: AsyncSession, services: Services, actor: Actor,
                   visit_id: int) -> dict[str, Any]:
    """The visit's note; before its first save, an empty draft (``id`` null) that is not
    stored: a read never writes (a break-glass grant is read-only). The first save
    stores it (``_note_for``)."""
    visit = await _staff_visit(session, services, actor, visit_id, write=False)
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None:
        note = _empty_note(visit, services.clock.now())
    audit.record(session, actor, "read", "note", note.id, patient_id=visit.patient_id)
    return await note_json(session, services, visit, note)


async def save_note(session: AsyncSession, services: Services, actor: Actor, visit_id: int,
                    body: NoteSave) -> dict[str, Any]:
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    sections = _check_sections(body.sections)
    # In line with signing and check-ins on this visit (server.locks): a sign decides on
    # the note it read, and no save lands between its reading and its writing.
    await lock_visit(session, visit.id)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is NoteStatus.signed:
        raise _signed_conflict()
    rows = [row.model_dump(exclude_none=True) for row in body.medication_changes]
    result = await session.execute(
        update(VisitNote).where(VisitNote.id == note.id, VisitNote.version == body.version,
                                VisitNote.status == NoteStatus.draft)
        .values(version=body.version + 1, sections=sections, medication_changes=rows,
                follow_up_days=body.follow_up_days, updated_at=now, updated_by_id=actor.user_id)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise await _version_conflict(session, services, visit, note, body.version)
    await session.refresh(note)
    audit.record(session, actor, "save", "note", note.id, patient_id=visit.patient_id,
                 version=note.version)
    emit(session, "note.saved", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, note_id=note.id, version=note.version)
    return await note_json(session, services, visit, note)


async def sign_note(session: AsyncSession, services: Services, actor: Actor,
                    visit_id: int, version: int) -> dict[str, Any]:
    """Sign the note at ``version`` (the one the signer saw), through the safety gate."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    # The lock first, then the note and the gate: an autosave blanking the safety text
    # or a check-in adding a reason either lands before (and is seen here) or waits
    # until this sign is committed (and then meets a signed note).
    await lock_visit(session, visit.id)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is NoteStatus.signed:
        raise Conflict("The note is already signed.", code="note_signed", field="status",
                       extra={"status": "signed"})
    if note.version != version:
        raise await _version_conflict(session, services, visit, note, version)
    gate = await safety_gate(session, services, visit)
    unmet = unmet_safety_sections(note.sections) if gate.required else []
    if unmet:
        # The reasons go in `reasons`, not in the message (messages carry no clinical
        # content).
        raise Conflict(
            "A safety assessment is required before signing: write what was assessed and "
            "the safety plan (at least 10 letters each) and choose your risk judgement "
            f"({', '.join(RISK_JUDGEMENTS)}).",
            code="safety_assessment_required", field=f"sections.{unmet[0]}",
            extra={"reasons": gate.reasons, "missing": unmet})
    rows = [MedicationChangeRow.model_validate(row) for row in note.medication_changes]
    check_rows(rows)
    follow_up_days = note.follow_up_days
    if follow_up_days is None:
        follow_up_days = (await default_follow_up(session, services.settings, visit,
                                                  [r.action for r in rows])).days
    # The swap holds even for a path that forgot the lock: only the version read, and
    # only a draft, is signed.
    result = await session.execute(
        update(VisitNote).where(VisitNote.id == note.id, VisitNote.version == version,
                                VisitNote.status == NoteStatus.draft)
        .values(status=NoteStatus.signed, signed_at=now, signed_by_id=actor.user_id,
                version=version + 1, follow_up_days=follow_up_days)
        .execution_options(synchronize_session=False))
    if getattr(result, "rowcount", 0) != 1:
        raise await _version_conflict(session, services, visit, note, version)
    await session.refresh(note)
    await apply_changes(session, actor, patient_id=visit.patient_id, note_id=note.id,
                        rows=rows, now=now)
    audit.record(session, actor, "sign", "note", note.id, patient_id=visit.patient_id,
                 version=note.version, safety_required=gate.required)
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
                       visit_id: int, body: NewAddendum) -> dict[str, Any]:
    """Append to a signed note. With a safety assessment (checked like the signing
    gate) it also closes the note's open addendum task."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    await lock_visit(session, visit.id)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    if note.status is not NoteStatus.signed:
        raise Conflict("Addenda are for signed notes; edit the note instead.",
                       code="note_not_signed", field="status", extra={"status": "draft"})
    # An addendum is part of the record: words, not "." (the same 10 letters as every
    # required free text, CLINICAL.md invariant 6).
    text = require_letters(body.text, "text", what="the addendum")
    safety = checked_assessment(body.safety_assessment) if body.safety_assessment else None
    addendum = NoteAddendum(note_id=note.id, author_id=actor.user_id, at=now, text=text,
                            safety=safety)
    session.add(addendum)
    await session.flush()
    audit.record(session, actor, "addendum", "note", note.id, patient_id=visit.patient_id,
                 addendum_id=addendum.id, safety_assessment=safety is not None)
    team = await care_team_ids(session, visit.patient_id)
    emit(session, "note.addendum_added", team, visit_id=visit.id, note_id=note.id,
         addendum_id=addendum.id)
    closed = None
    if safety is not None:
        closed = await _close_addendum_task(session, actor, visit, note, addendum, now, team)
    return {**_addendum_json(addendum, actor.name),
            "closed_task_id": closed.id if closed else None}


async def _close_addendum_task(session: AsyncSession, actor: Actor, visit: Visit,
                               note: VisitNote, addendum: NoteAddendum, now: datetime,
                               team: set[int]) -> SafetyAddendumTask | None:
    """The addendum carries a safety assessment: the note's open task, if any, is done."""
    task = await _open_task(session, note)
    if task is None:
        return None
    task.done_at = now
    task.done_by_id = actor.user_id
    task.addendum_id = addendum.id
    audit.record(session, actor, "complete", "safety_addendum_task", task.id,
                 patient_id=visit.patient_id, note_id=note.id, addendum_id=addendum.id)
    emit(session, "note.addendum_task_done", team | {task.prescriber_id}, visit_id=visit.id,
         note_id=note.id, task_id=task.id)
    return task


@dataclass(frozen=True)
class AddendumDue:
    """An open safety addendum task, as the prescriber's day lists it."""

    task_id: int
    visit_id: int
    patient_id: int
    patient_name: str
    reasons: list[str]
    since: datetime


async def addenda_due(session: AsyncSession, actor: Actor) -> list[AddendumDue]:
    """The prescriber's open safety addendum tasks (visits where they are the prescriber,
    of patients whose care team they are on), oldest first; each read is audited."""
    require_role(actor, Role.prescriber)
    on_team = exists().where(CareTeamMember.patient_id == SafetyAddendumTask.patient_id,
                             CareTeamMember.member_id == actor.user_id)
    rows = (await session.execute(
        select(SafetyAddendumTask, User.name).join(User, User.id == SafetyAddendumTask.patient_id)
        .where(SafetyAddendumTask.prescriber_id == actor.user_id,
               SafetyAddendumTask.done_at.is_(None), on_team)
        .order_by(SafetyAddendumTask.created_at, SafetyAddendumTask.id))).all()
    found = [AddendumDue(task_id=task.id, visit_id=task.visit_id, patient_id=task.patient_id,
                         patient_name=name, reasons=list(task.reasons), since=task.created_at)
             for task, name in rows]
    audit.record_reads(session, actor, "safety_addendum_task",
                       [(due.task_id, due.patient_id) for due in found])
    return found


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
            "days": days, "invite_id": invite.id}


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
