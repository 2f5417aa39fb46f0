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
from datetime import date, datetime, timedelta
from typing import Annotated, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, labs
from server.access import access_visit, require_full_session, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.controlled import check_signing
from server.errors import Conflict, Forbidden
from server.events import emit
from server.followup import Cadence, default_follow_up
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
from server.results import Instant, Result
from server.services import Services
from server.timezones import clinic_zone
from server.triage import Level, level_at_least
from server.visits import create_visit, invite_to_visit

# The note's sections, in the note's order: the one list (the save's body, the editor
# and the browser's modules, through web/pages/vocabulary.py, follow it). The safety
# assessment's three are the ones the signing gate reads.
SafetySection = Literal["safety_assessed", "safety_risk_judgement", "safety_plan"]
# The visit's telehealth facts the controlled-substance rules read (server.controlled).
TelehealthSection = Literal["visit_mode", "audio_only_reason", "in_person_evaluated_on"]
Section = Literal["interval_history", "mental_status", "assessment", "plan",
                  "side_effect_actions", "for_patient", SafetySection, TelehealthSection]
SECTIONS: Final[tuple[Section, ...]] = get_args(Section)
SAFETY_SECTIONS: Final[tuple[SafetySection, ...]] = get_args(SafetySection)
# The clinician's risk judgement (CLINICAL.md, invariant 7). The one list: the API checks
# it, the editor's <select> and the addendum form offer it.
RiskJudgement = Literal["low", "moderate", "high", "imminent"]
RISK_JUDGEMENTS: Final[tuple[RiskJudgement, ...]] = get_args(RiskJudgement)
# In ``safety_reasons``: the patient has an open escalation (its own reasons follow).
ESCALATION_OPEN: Final = "escalation_open"
SECTION_LIMIT = 20_000
ADDENDUM_LIMIT = 20_000

SectionText = Annotated[str, Field(max_length=SECTION_LIMIT)]


def _iso_date(value: str) -> str:
    # A date or nothing: the controlled-substance rules compare it with the day.
    if value:
        date.fromisoformat(value)
    return value


IsoDate = Annotated[str, Field(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$"),
                    AfterValidator(_iso_date)]


# A model rather than a dict keyed by ``Section``: the risk judgement is a vocabulary
# where the other sections are text, and a refusal names its section ("sections.plan").
class NoteSections(BaseModel):
    """The note's sections; one not sent is saved empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_history: SectionText = ""
    mental_status: SectionText = ""
    assessment: SectionText = ""
    plan: SectionText = ""
    side_effect_actions: SectionText = ""
    # Written for the patient: the after-visit summary shows this, never the plan (a
    # clinician's plan is written for clinicians, and went word for word to patients).
    for_patient: SectionText = ""
    safety_assessed: SectionText = ""
    # Empty while drafting; signing needs one of the list (``unmet_safety_sections``).
    safety_risk_judgement: Literal[RiskJudgement, ""] = ""
    safety_plan: SectionText = ""
    # "" is a video visit; "audio_only" needs the reason video was not possible.
    visit_mode: Literal["", "audio_only"] = ""
    audio_only_reason: SectionText = ""
    # The signer's in-person evaluation of the patient (Ryan Haight Act), YYYY-MM-DD.
    in_person_evaluated_on: IsoDate = ""

    def texts(self) -> dict[Section, str]:
        """Every section, in the note's order (as the note stores them)."""
        return {key: getattr(self, key) for key in SECTIONS}


# The fields above are the sections: a section added to ``Section`` needs its field.
assert tuple(NoteSections.model_fields) == SECTIONS


class NoteSave(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A 32-bit column: a larger version would fail in the database driver, not here.
    version: int = Field(ge=0, le=MAX_ID)
    sections: NoteSections = Field(default_factory=NoteSections)
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
    risk_judgement: RiskJudgement
    plan: str = Field(default="", max_length=SECTION_LIMIT)


class NewAddendum(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=ADDENDUM_LIMIT)
    safety_assessment: SafetyAssessment | None = None


class NoteAuthor(Result):
    """Who saved or signed the note, or wrote an addendum."""

    id: int
    name: str


class AddendumSafety(Result):
    """The safety assessment an addendum carries."""

    assessed: str
    # As stored: shown as written even if the list changes.
    risk_judgement: str
    plan: str


class Addendum(Result):
    id: int
    note_id: int
    at: Instant
    text: str
    author: NoteAuthor
    safety: AddendumSafety | None


class AddedAddendum(Addendum):
    """An addendum just written, and the safety addendum task it closed, if any."""

    closed_task_id: int | None


class GatingEscalation(Result):
    """The patient's open escalation, which requires a safety assessment to sign."""

    id: int
    level: str
    source: str
    status: EscalationStatus
    reasons: list[str]
    raised_at: Instant


class AddendumTask(Result):
    """The note's open safety addendum task: a check-in with safety reasons came after
    signing."""

    id: int
    reasons: list[str]
    since: Instant
    checkin_id: int


class Note(Result):
    """The visit note as the care team reads it, with its signing gate."""

    id: int | None  # None: not stored yet (before the first save)
    visit_id: int
    patient_id: int
    version: int
    status: NoteStatus
    sections: dict[Section, str]
    medication_changes: list[MedicationChangeRow]
    follow_up_days: int | None
    follow_up_default: Cadence
    safety_required: bool
    safety_reasons: list[str]
    safety_missing: list[SafetySection]
    safety_escalation: GatingEscalation | None
    safety_addendum_task: AddendumTask | None
    updated_at: Instant
    updated_by: NoteAuthor | None
    signed_at: Instant | None
    signed_by: NoteAuthor | None
    addenda: list[Addendum]


class SignCheck(Result):
    """Whether the note at the version the signer saw would pass the signing gate now:
    the same reasons and missing sections a sign would refuse with (409
    ``safety_assessment_required``). Advisory only; the sign checks again."""

    version: int
    ready: bool
    safety_required: bool
    reasons: list[str]
    missing: list[SafetySection]


class ScheduledVisit(Result):
    """The next visit, just scheduled, and its invitation."""

    id: int
    scheduled_at: Instant
    days: int
    invite_id: int


class UpcomingVisit(Result):
    id: int
    scheduled_at: Instant


class CrisisResources(Result):
    lifeline: str
    emergency: str


CRISIS_RESOURCES: Final = CrisisResources(
    lifeline="Call or text 988 (Suicide & Crisis Lifeline; press 1 for the Veterans "
             "Crisis Line)",
    emergency="Call 911 if you are in immediate danger")


class AfterVisitSummary(Result):
    """What the patient reads after the visit, from the signed note (or, previewed by
    the prescriber, from the draft). Nothing of the clinician's own sections (plan,
    assessment, safety) is in it: only what was written for the patient."""

    visit_id: int
    medication_changes: list[MedicationChangeRow]
    # The note's "for the patient" section ("" when the prescriber wrote none).
    for_patient: str
    # The check-in's side effects as the patient reported them.
    side_effects_reported: list[JsonValue]
    side_effect_actions: str
    follow_up_days: int | None
    next_visit: UpcomingVisit | None
    crisis_resources: CrisisResources


def _stored_sections(note: VisitNote) -> dict[Section, str]:
    """The note's sections in the note's order, each one text ("" when missing)."""
    return {key: str(note.sections.get(key) or "") for key in SECTIONS}


def _stored_changes(note: VisitNote) -> list[MedicationChangeRow]:
    """The note's medication changes (each stored from a checked row)."""
    return [MedicationChangeRow.model_validate(row) for row in note.medication_changes]


def unmet_safety_sections(sections: Mapping[Section, str]) -> list[SafetySection]:
    """The safety sections that do not hold a real assessment, in the note's order:
    fewer than 10 letters of what was assessed or of the plan (spaces, punctuation,
    digits and invisible characters do not count), a judgement not in the list."""
    unmet: list[SafetySection] = []
    for key in SAFETY_SECTIONS:
        value = sections.get(key, "")
        if key == "safety_risk_judgement":
            ok = value in RISK_JUDGEMENTS
        else:
            ok = letters(value.strip()) >= MIN_LETTERS
        if not ok:
            unmet.append(key)
    return unmet


def checked_assessment(given: SafetyAssessment) -> AddendumSafety:
    """The addendum's safety assessment, stripped, or 422 naming the first field that
    would not pass the signing gate (the judgement's list is the model's)."""
    assessed = require_letters(given.assessed, "safety_assessment.assessed",
                               what="what was assessed")
    plan = require_letters(given.plan, "safety_assessment.plan", what="the safety plan")
    return AddendumSafety(assessed=assessed, risk_judgement=given.risk_judgement, plan=plan)


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
    included; an unknown code counts as review), the overdue labs that gate signing
    (``labs.gate_reasons``: a clozapine ANC, a lithium level), then ``escalation_open``
    and that escalation's own reasons when the patient has an open escalation, whatever its
    source (a check-in of any visit, a manual raise) or level."""
    checkin = await _checkin(session, visit)
    reasons = [code for code in (checkin.reasons or [] if checkin else [])
               if level_at_least(services.rules.level_of_code(code), Level.REVIEW)]
    reasons += await labs.gate_reasons(session, visit.patient_id, now=services.clock.now(),
                                       zone=clinic_zone(services.settings))
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


def _gating_escalation(escalation: Escalation | None) -> GatingEscalation | None:
    if escalation is None:
        return None
    return GatingEscalation(id=escalation.id, level=escalation.level, source=escalation.source,
                            status=escalation.status, reasons=list(escalation.reasons),
                            raised_at=escalation.raised_at)


def _addendum_task(task: SafetyAddendumTask | None) -> AddendumTask | None:
    if task is None:
        return None
    return AddendumTask(id=task.id, reasons=list(task.reasons), since=task.created_at,
                        checkin_id=task.checkin_id)


def _addendum(addendum: NoteAddendum, author: str) -> Addendum:
    return Addendum(id=addendum.id, note_id=addendum.note_id, at=addendum.at,
                    text=addendum.text, author=NoteAuthor(id=addendum.author_id, name=author),
                    safety=None if addendum.safety is None
                    else AddendumSafety.model_validate(addendum.safety))


def _author(user_id: int | None, names: Mapping[int, str]) -> NoteAuthor | None:
    return NoteAuthor(id=user_id, name=names.get(user_id, "")) if user_id else None


async def note_result(session: AsyncSession, services: Services, visit: Visit,
                      note: VisitNote) -> Note:
    addenda = [] if note.id is None else (await session.scalars(select(NoteAddendum).where(
        NoteAddendum.note_id == note.id).order_by(NoteAddendum.at, NoteAddendum.id))).all()
    ids = {i for i in (note.updated_by_id, note.signed_by_id, *(a.author_id for a in addenda))
           if i}
    names: dict[int, str] = {}
    if ids:
        rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
        names = {row[0]: row[1] for row in rows}
    sections = _stored_sections(note)
    changes = _stored_changes(note)
    cadence = await default_follow_up(session, services.settings, visit,
                                      [row.action for row in changes])
    gate = await safety_gate(session, services, visit)
    return Note(
        id=note.id, visit_id=note.visit_id, patient_id=note.patient_id,
        version=note.version, status=note.status, sections=sections,
        medication_changes=changes, follow_up_days=note.follow_up_days,
        follow_up_default=cadence,
        safety_required=gate.required, safety_reasons=gate.reasons,
        safety_missing=unmet_safety_sections(sections) if gate.required else [],
        safety_escalation=_gating_escalation(gate.escalation),
        safety_addendum_task=_addendum_task(await _open_task(session, note)),
        updated_at=note.updated_at, updated_by=_author(note.updated_by_id, names),
        signed_at=note.signed_at, signed_by=_author(note.signed_by_id, names),
        addenda=[_addendum(a, names.get(a.author_id, "")) for a in addenda],
    )


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
    current = await note_result(session, services, visit, note)
    return Conflict(
        f"The note changed since version {version}; it is now version {note.version}.",
        code="version_conflict", field="version", extra={"current": current.to_json()})


def _signed_conflict() -> Conflict:
    return Conflict("The note is signed; add an addendum instead.", code="note_signed",
                    field="status", extra={"status": "signed"})


async def get_note(session: AsyncSession, services: Services, actor: Actor,
                   visit_id: int) -> Note:
    """The visit's note; before its first save, an empty draft (``id`` null) that is not
    stored: a read never writes (a break-glass grant is read-only). The first save
    stores it (``_note_for``)."""
    visit = await _staff_visit(session, services, actor, visit_id, write=False)
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None:
        note = _empty_note(visit, services.clock.now())
    audit.record(session, actor, "read", "note", note.id, patient_id=visit.patient_id)
    return await note_result(session, services, visit, note)


async def save_note(session: AsyncSession, services: Services, actor: Actor, visit_id: int,
                    body: NoteSave) -> Note:
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    sections = body.sections.texts()
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
    return await note_result(session, services, visit, note)


async def _sign_gate(session: AsyncSession, services: Services, actor: Actor, visit: Visit,
                     note: VisitNote, version: int
                     ) -> tuple[SafetyGate, list[SafetySection]]:
    """What a sign of ``version`` meets, shared by the sign and its check so both give
    the same answer: 409 when the note is signed or the version is not the current one,
    else the gate and the safety sections it still needs."""
    if note.status is NoteStatus.signed:
        raise Conflict("The note is already signed.", code="note_signed", field="status",
                       extra={"status": "signed"})
    if note.version != version:
        raise await _version_conflict(session, services, visit, note, version)
    gate = await safety_gate(session, services, visit)
    unmet = unmet_safety_sections(_stored_sections(note)) if gate.required else []
    if not unmet:  # the safety assessment first; then the controlled-substance rules
        await check_signing(session, services, actor, visit, _stored_sections(note),
                            _stored_changes(note))
    return gate, unmet


async def sign_check(session: AsyncSession, services: Services, actor: Actor,
                     visit_id: int, version: int) -> SignCheck:
    """The signing gate for the note at ``version``, asked before signing so the
    confirmation lists what is missing first. Read only: no lock, nothing stored (a
    note never saved is checked as the empty draft); the same access as the sign."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None:
        note = _empty_note(visit, services.clock.now())
    gate, unmet = await _sign_gate(session, services, actor, visit, note, version)
    audit.record(session, actor, "read", "note", note.id, patient_id=visit.patient_id,
                 sign_check=True)
    return SignCheck(version=version, ready=not unmet, safety_required=gate.required,
                     reasons=gate.reasons, missing=unmet)


async def sign_note(session: AsyncSession, services: Services, actor: Actor,
                    visit_id: int, version: int) -> Note:
    """Sign the note at ``version`` (the one the signer saw), through the safety gate."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    # The lock first, then the note and the gate: an autosave blanking the safety text
    # or a check-in adding a reason either lands before (and is seen here) or waits
    # until this sign is committed (and then meets a signed note).
    await lock_visit(session, visit.id)
    now = services.clock.now()
    note = await _note_for(session, visit, now)
    gate, unmet = await _sign_gate(session, services, actor, visit, note, version)
    if unmet:
        # The reasons go in `reasons`, not in the message (messages carry no clinical
        # content).
        raise Conflict(
            "A safety assessment is required before signing: write what was assessed and "
            "the safety plan (at least 10 letters each) and choose your risk judgement "
            f"({', '.join(RISK_JUDGEMENTS)}).",
            code="safety_assessment_required", field=f"sections.{unmet[0]}",
            extra={"reasons": gate.reasons, "missing": unmet})
    rows = _stored_changes(note)
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
    # `medications_changed`: the panels showing this patient (any visit's) fetch again
    # what the medication list feeds (labs due, the trial, what it costs).
    emit(session, "note.signed", await care_team_ids(session, visit.patient_id)
         | {visit.patient_id}, visit_id=visit.id, note_id=note.id,
         patient_id=visit.patient_id, medications_changed=bool(rows))
    return await note_result(session, services, visit, note)


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
                       visit_id: int, body: NewAddendum) -> AddedAddendum:
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
                            safety=safety.to_json() if safety else None)
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
    return AddedAddendum(**dict(_addendum(addendum, actor.name)),
                         closed_task_id=closed.id if closed else None)


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


class AddendumDue(Result):
    """An open safety addendum task, as the prescriber's day lists it."""

    task_id: int
    visit_id: int
    patient_id: int
    patient_name: str
    reasons: list[str]
    since: Instant


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
                        visit_id: int, days: int | None) -> ScheduledVisit:
    """Create the next visit at the chosen interval and queue its invitation."""
    visit = await _staff_visit(session, services, actor, visit_id, write=True)
    note = await _note_for(session, visit, services.clock.now())
    if days is None:
        days = note.follow_up_days or (await default_follow_up(
            session, services.settings, visit,
            [row.action for row in _stored_changes(note)])).days
    next_visit = await create_visit(
        session, services, actor, patient_id=visit.patient_id, prescriber_id=visit.prescriber_id,
        kind=VisitKind.follow_up, scheduled_at=visit.scheduled_at + timedelta(days=days),
        duration_minutes=None, now=services.clock.now())
    invite = await invite_to_visit(session, services, actor, next_visit.id)
    return ScheduledVisit(id=next_visit.id, scheduled_at=next_visit.scheduled_at, days=days,
                          invite_id=invite.id)


async def after_visit_summary(session: AsyncSession, services: Services, actor: Actor,
                              visit_id: int) -> AfterVisitSummary:
    """The plain-language summary for the patient, from the signed note."""
    visit = await access_visit(session, actor, visit_id, now=services.clock.now())
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None or note.status is not NoteStatus.signed:
        raise Conflict("The summary is ready once your prescriber signs the visit note.",
                       code="summary_not_ready", field="status")
    audit.record(session, actor, "read", "after_visit_summary", note.id,
                 patient_id=visit.patient_id)
    return await _summary(session, visit, note)


async def summary_preview(session: AsyncSession, services: Services, actor: Actor,
                          visit_id: int) -> AfterVisitSummary:
    """The summary the patient would read if the note were signed as it is saved now,
    for the care team to check before signing (the same reader as the summary)."""
    visit = await _staff_visit(session, services, actor, visit_id, write=False)
    note = await session.scalar(select(VisitNote).where(VisitNote.visit_id == visit.id))
    if note is None:
        note = _empty_note(visit, services.clock.now())
    audit.record(session, actor, "read", "after_visit_summary", note.id,
                 patient_id=visit.patient_id, preview=True)
    return await _summary(session, visit, note)


async def _summary(session: AsyncSession, visit: Visit, note: VisitNote) -> AfterVisitSummary:
    next_visit = await session.scalar(select(Visit).where(
        Visit.patient_id == visit.patient_id, Visit.scheduled_at > visit.scheduled_at)
        .order_by(Visit.scheduled_at).limit(1))
    checkin = await _checkin(session, visit)
    reported = (checkin.data.get("side_effects") if checkin else None) or []
    sections = _stored_sections(note)
    return AfterVisitSummary(
        visit_id=visit.id, medication_changes=_stored_changes(note),
        for_patient=sections["for_patient"], side_effects_reported=reported,
        side_effect_actions=sections["side_effect_actions"],
        follow_up_days=note.follow_up_days,
        next_visit=UpcomingVisit(id=next_visit.id, scheduled_at=next_visit.scheduled_at)
        if next_visit else None,
        crisis_resources=CRISIS_RESOURCES)
