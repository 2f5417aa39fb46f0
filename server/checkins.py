"""The pre-visit check-in: drafts, completion, scoring, triage and its hand-off.

Safety decisions made here (CLINICAL.md, "Safety workflow invariants"; docs/clinical.md):
- Every saved version of the answers is kept (``CheckInVersion``), drafts included, with
  the level and reasons it showed when it was saved. The check-in's ``level`` and
  ``reasons`` are the visit's risk: the highest level and every reason any version
  reached. A later, calmer answer never lowers them (invariant 1).
- A draft is triaged on every save using the instruments that are complete so far,
  and those still being answered at the least their answers so far show (a "yes" to
  intent is high risk before the screener's last questions are answered). When that
  reaches ``urgent`` or ``emergency`` (for example PHQ-9 item 9 answered above 0 before
  the C-SSRS is done), it is handed to the escalation workflow at once, so it is not
  lost if the patient closes the page.
- Emergency information (where the patient is, a callback number, a contact) is
  validated strictly wherever it comes in (a draft, the completion, the confirmation
  step of the form or of the join link) and stored with the time it was confirmed; the
  open escalation follows every confirmation (invariants 2, 8, 10).
- A confirmed place names its US state (the prescribing rules of that state apply),
  except on the crisis path: once the visit's risk is ``urgent`` or higher, the address
  and callback are kept without it (``require_state``), since 911 needs the address and
  nothing should hold up help; the controlled-substance gate refuses until it is known.
- A completed check-in never goes unrecorded for missing pieces when its level is
  ``urgent`` or higher: the missing fields are listed instead of refusing it.
- Concurrent saves of one check-in (two tabs, a double click, two instances) take the
  visit's row lock first and are applied one after the other; the database holds one
  check-in per visit, one completion and one score per instrument.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, notes
from server.access import access_visit
from server.accounts import care_team_ids
from server.actors import Actor
from server.emergency_info import (
    STATE_MISSING,
    DraftLocation,
    EmergencyContact,
    EmergencyInfo,
    EmergencyInfoBody,
    KnownContact,
    KnownLocation,
    Location,
    Phone,
    Source,
    validation_context,
)
from server.errors import Conflict, Forbidden, ValidationFailed
from server.events import emit
from server.freetext import readable_data
from server.http import error_refusal, validation_error
from server.instruments import InstrumentId
from server.instruments.asrm import AsrmSoFar
from server.instruments.auditc import SEXES, AuditcSoFar, Sex
from server.instruments.bam import BamSoFar
from server.instruments.base import REFUSED, ClosedAnswers, refusal_of
from server.instruments.cssrs import CssrsSoFar
from server.instruments.fibser import FibserSoFar
from server.instruments.gad7 import Gad7SoFar
from server.instruments.phq9 import Phq9SoFar
from server.locks import lock_visit
from server.models import (
    CheckIn,
    CheckInStatus,
    CheckInVersion,
    MeasureResult,
    Medication,
    PatientProfile,
    Role,
    Visit,
    VisitKind,
    VisitStatus,
)
from server.psychotropics import is_psychotropic
from server.results import Instant, Result
from server.services import CheckinTrigger, Services
from server.triage import (
    Level,
    Reason,
    TriageResponses,
    TriageResult,
    level_at_least,
    level_rank,
    triage,
)
from server.visits import ENDED, VisitRecord

OPEN_BEFORE = timedelta(hours=72)
ALWAYS: Final[tuple[InstrumentId, ...]] = ("phq9", "gad7")
PERIODIC: Final[tuple[InstrumentId, ...]] = ("auditc", "asrm")
# "Monthly" (CLINICAL.md) as 28 days, so the default 28-day follow-up asks it at every
# visit instead of every other one (docs/clinical.md).
BAM_EVERY: Final = timedelta(days=28)
# Asked (in ``needs``, so the form shows them, each item required there) but a
# completion without them is kept: the medication list or the track can change while
# the patient is in the form, and a check-in carrying safety answers must never be
# refused over a side-effect or recovery questionnaire it did not show.
ASKED_NOT_REQUIRED: Final[tuple[InstrumentId, ...]] = ("fibser", "bam")

SideEffectKind = Literal["sedation", "agitation", "emotional_blunting", "sexual",
                         "weight_change", "stomach", "dizziness", "tremor", "other"]
SIDE_EFFECTS: Final = get_args(SideEffectKind)
MissedDoseReason = Literal["forgot", "side_effects", "cost_or_refill", "felt_better",
                           "felt_worse", "other"]
MISSED_DOSE_REASONS: Final = get_args(MissedDoseReason)
Severity = Literal["mild", "moderate", "severe"]
SleepQuality = Literal["good", "fair", "poor"]
# What a saved version of the answers was: a draft save or the completion.
VersionKind = Literal["draft", "completion"]
# A body as the patient's browser sent it, kept as JSON. In the API's JSON a lone
# surrogate an old version let in is U+FFFD (``readable_data``), in keys too, which
# pydantic's own JSON would turn into garbage.
StoredBody = Annotated[dict[str, JsonValue],
                       PlainSerializer(readable_data, return_type=dict[str, JsonValue],
                                       when_used="json")]

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SideEffect(_Strict):
    effect: SideEffectKind
    severity: Severity
    details: str | None = Field(default=None, max_length=500)


class MissedDoses(_Strict):
    days_missed: int = Field(ge=0, le=7)
    reasons: list[MissedDoseReason] = Field(default_factory=list, max_length=6)
    details: str | None = Field(default=None, max_length=500)


class Sleep(_Strict):
    hours: float | int | None = Field(default=None, ge=0, le=24)
    quality: SleepQuality | None = None


class SubstanceUse(_Strict):
    cravings: int | None = Field(default=None, ge=0, le=10)
    used_since_last_visit: bool | None = None
    substances: list[str] = Field(default_factory=list, max_length=20)
    details: str | None = Field(default=None, max_length=1000)


class CheckInCompletion(BaseModel):
    """The whole check-in. The instruments the visit needs (`needs` of
    `GET /api/v1/visits/{visit_id}/checkin`) and the emergency information are required
    (422 naming the first missing), unless the answers are urgent or worse: then the
    check-in is kept and `missing` lists them."""

    model_config = ConfigDict(extra="forbid")

    responses: TriageResponses
    sex: Sex | None = None
    location: Location | None = None
    callback_phone: Phone | None = None
    emergency_contact: EmergencyContact | None = None
    side_effects: list[SideEffect] = Field(default_factory=list, max_length=20)
    missed_doses: MissedDoses | None = None
    sleep: Sleep | None = None
    substance_use: SubstanceUse | None = None


class CheckInDraft(BaseModel):
    """What the patient has entered so far, in the shape of the completion, stored as
    sent. The emergency information given is checked as strictly as at completion and
    counts as confirmed when saved (a location's state alone confirms nothing: it is
    the form's answer so far); the rest is not checked until completion."""

    model_config = ConfigDict(extra="allow")

    responses: JsonValue = Field(
        default=None, description="The answers so far, shaped as the completion's, with "
                                  "null for an item not answered yet; instruments that are "
                                  "complete, or already show risk, are triaged at once.")
    location: DraftLocation | None = None
    callback_phone: Phone | None = None
    emergency_contact: EmergencyContact | None = None

    @property
    def place(self) -> Location | None:
        return self.location.confirmed() if self.location is not None else None

    @property
    def emergency_info_given(self) -> bool:
        return self.place is not None or self.callback_phone is not None or \
            self.emergency_contact is not None


def _validated(model: type[M], services: Services, data: dict[str, JsonValue]) -> M:
    try:
        return model.model_validate(data, context=validation_context(
            services.settings.phone_region))
    except ValidationError as exc:
        raise validation_error(exc) from None


def _completion(services: Services, data: dict[str, JsonValue]) -> CheckInCompletion:
    """The completion's body, refused in the order it has always been checked: its own
    fields first (in the words of every other body), then the answers to each
    instrument (in the words of ``POST /api/v1/triage``)."""
    try:
        return CheckInCompletion.model_validate(data, context=validation_context(
            services.settings.phone_region))
    except ValidationError as exc:
        first = min(exc.errors(include_url=False),
                    key=lambda error: error["loc"][0] == "responses" and len(error["loc"]) > 1)
        raise (refusal_of(first) if first["type"] == REFUSED else error_refusal(first)) \
            from None


def is_open(visit: Visit | VisitRecord, now: datetime) -> bool:
    """The check-in's window: from ``OPEN_BEFORE`` the visit until the visit has ended."""
    return visit.status not in ENDED and now >= visit.scheduled_at - OPEN_BEFORE


def _window_check(visit: Visit, now: datetime) -> None:
    if visit.status in ENDED:
        raise Conflict(f'The check-in is closed: the visit is "{visit.status.value}".',
                       code="checkin_closed", field="visit_id",
                       extra={"status": visit.status.value})
    if now < visit.scheduled_at - OPEN_BEFORE:
        opens = (visit.scheduled_at - OPEN_BEFORE).isoformat()
        raise Conflict(f"The check-in opens at {opens}.", code="checkin_not_open",
                       field="visit_id", extra={"opens_at": opens})


async def _access_for_patient(session: AsyncSession, actor: Actor, visit_id: int) -> Visit:
    visit = await access_visit(session, actor, visit_id, write=True)
    if actor.role is not Role.patient:
        raise Forbidden("Only the patient fills in their check-in.")
    return visit


async def _last_done(session: AsyncSession, patient_id: int,
                     instrument: InstrumentId) -> datetime | None:
    return await session.scalar(
        select(MeasureResult.at).where(
            MeasureResult.patient_id == patient_id,
            MeasureResult.instrument == instrument,
        ).order_by(MeasureResult.at.desc()).limit(1)
    )


async def needed_instruments(session: AsyncSession, visit: Visit) -> list[InstrumentId]:
    """PHQ-9 and GAD-7 every visit; AUDIT-C and ASRM at intake and when last done longer
    ago than the patient's screening interval (90 days by default); FIBSER whenever the
    patient takes a psychotropic; the BAM monthly in the substance-use track."""
    needed = list(ALWAYS)
    profile = await session.get(PatientProfile, visit.patient_id)
    interval = timedelta(days=profile.screening_interval_days if profile else 90)
    for instrument in PERIODIC:
        last = await _last_done(session, visit.patient_id, instrument)
        if visit.kind is VisitKind.intake or last is None or \
                visit.scheduled_at - last >= interval:
            needed.append(instrument)
    drugs = (await session.scalars(select(Medication.drug).where(
        Medication.patient_id == visit.patient_id, Medication.active.is_(True)))).all()
    if any(is_psychotropic(drug) for drug in drugs):
        needed.append("fibser")
    if profile is not None and profile.substance_use_track:
        last = await _last_done(session, visit.patient_id, "bam")
        if last is None or visit.scheduled_at - last >= BAM_EVERY:
            needed.append("bam")
    return needed


# --- emergency information ------------------------------------------------------------


async def emergency_info_for(session: AsyncSession, services: Services,
                             patient_id: int) -> EmergencyInfo:
    """The freshest emergency information for the patient (invariant 2): the values they
    confirmed last, at any visit, with when; confirmed longer ago than
    ``location_confirm_hours`` they are "on file", as are the profile's when the patient
    never confirmed any."""
    now = services.clock.now()
    fresh_since = now - timedelta(hours=services.settings.location_confirm_hours)
    place = await session.scalar(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.location_confirmed_at.is_not(None))
        .order_by(CheckIn.location_confirmed_at.desc()).limit(1))
    contact = await session.scalar(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.contact_confirmed_at.is_not(None))
        .order_by(CheckIn.contact_confirmed_at.desc()).limit(1))
    profile = await session.get(PatientProfile, patient_id)
    address = state = callback = contact_name = contact_phone = None
    confirmed_at = contact_confirmed_at = on_file_at = None
    source: Source | None = None
    if place is not None and place.location_confirmed_at is not None:
        # The state from the same confirmation as the address: it names this place.
        address, state = place.location_address, place.location_state
        callback = place.callback_phone
        if place.location_confirmed_at >= fresh_since:
            confirmed_at, source = place.location_confirmed_at, "checkin"
        else:
            on_file_at, source = place.location_confirmed_at, "last_checkin"
    elif profile is not None and profile.phone:
        callback, source = profile.phone, "profile"
    if contact is not None and contact.contact_confirmed_at is not None:
        contact_name, contact_phone = contact.emergency_contact_name, \
            contact.emergency_contact_phone
        if contact.contact_confirmed_at >= fresh_since:
            contact_confirmed_at = contact.contact_confirmed_at
    elif profile is not None:
        contact_name, contact_phone = profile.emergency_contact_name, \
            profile.emergency_contact_phone
    return EmergencyInfo(location=KnownLocation(address=address, state=state),
                         callback_phone=callback,
                         emergency_contact=KnownContact(name=contact_name, phone=contact_phone),
                         confirmed_at=confirmed_at, contact_confirmed_at=contact_confirmed_at,
                         source=source, on_file_at=on_file_at)


async def location_confirmed_today(session: AsyncSession, services: Services,
                                   patient_id: int) -> bool:
    """Whether the patient confirmed where they are within ``location_confirm_hours``
    (``emergency_info_for(...).confirmed``, in one small query: the visit room asks it on
    every patient's page load)."""
    since = services.clock.now() - timedelta(hours=services.settings.location_confirm_hours)
    return bool(await session.scalar(select(exists().where(
        CheckIn.patient_id == patient_id, CheckIn.location_confirmed_at >= since))))


class Prefill(Result):
    """What the form fills in for the patient to confirm."""

    location: KnownLocation
    callback_phone: str | None
    emergency_contact: KnownContact
    sex: Sex | None


async def prefill(session: AsyncSession, services: Services, patient_id: int) -> Prefill:
    """Emergency information last given (else the profile's), the place with the state
    given with it, for the patient to confirm; and the sex last given, for AUDIT-C. A
    place last confirmed without its state comes without one: an older state may not be
    this place's, and the controlled-substance rules read the state confirmed."""
    info = await emergency_info_for(session, services, patient_id)
    profile = await session.get(PatientProfile, patient_id)
    return Prefill(location=info.location, callback_phone=info.callback_phone,
                   emergency_contact=info.emergency_contact,
                   sex=profile.sex if profile else None)


def in_crisis(checkin: CheckIn) -> bool:
    """Whether the visit's risk (every saved version) is ``urgent`` or higher: the
    crisis path, where the location step asks only what sends help."""
    return level_at_least(risk_level(checkin), Level.URGENT)


def require_state(location: Location | None, *, crisis: bool) -> None:
    """A place confirmed without its US state is refused (422 naming ``location.state``,
    in the location step's words), except on the crisis path: there the address and
    callback are what sends help, and a patient in crisis is never stopped over a list
    of states. The controlled-substance gate refuses while the state is unknown."""
    if location is not None and location.state is None and not crisis:
        raise ValidationFailed(STATE_MISSING, field="location.state")


async def state_needed(session: AsyncSession, actor: Actor, visit_id: int) -> bool:
    """Whether a confirmation for this visit must name the state (``require_state``),
    for a page that shows every missing field at once before confirming."""
    visit = await access_visit(session, actor, visit_id)
    checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))
    return checkin is None or not in_crisis(checkin)


async def _confirm_emergency_info(
    session: AsyncSession, services: Services, actor: Actor, visit: Visit, checkin: CheckIn,
    *, location: Location | None, callback_phone: str | None,
    contact: EmergencyContact | None, now: datetime,
) -> None:
    """Store what the patient confirmed, with the time, and let the open escalation
    follow. Location and callback go together: confirming one confirms the pair as it
    now stands."""
    parts = []
    if location is not None:
        checkin.location_address = location.address
        # A new place without a state clears the old state: it may not be this place's.
        checkin.location_state = location.state
        parts.append("location")
    if callback_phone is not None:
        checkin.callback_phone = callback_phone
        parts.append("callback_phone")
    if parts and checkin.location_address and checkin.callback_phone:
        checkin.location_confirmed_at = now
    if contact is not None:
        checkin.emergency_contact_name = contact.name
        checkin.emergency_contact_phone = contact.phone
        checkin.contact_confirmed_at = now
        parts.append("emergency_contact")
    if not parts:
        return
    audit.record(session, actor, "confirm_emergency_info", "checkin", checkin.id,
                 patient_id=visit.patient_id, visit_id=visit.id, parts=parts)
    for hook in services.emergency_info_hooks:
        await hook(session, services, actor, checkin)
    emit(session, "checkin.emergency_info", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, checkin_id=checkin.id, patient_id=visit.patient_id)


class EmergencyInfoConfirmed(EmergencyInfo):
    """The freshest emergency information once the patient confirmed theirs."""

    checkin_id: int
    visit_id: int


async def confirm_emergency_info(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, data: object
) -> EmergencyInfoConfirmed:
    """The "Where are you right now?" step: the form asks it as soon as a draft reaches
    urgent or emergency, and a patient entering a visit passes it first (invariants 2,
    10). Allowed on a completed check-in too: the patient may be somewhere else today
    than when they checked in."""
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    body = _validated(EmergencyInfoBody, services, data)
    visit, checkin, now = await _open(session, services, actor, visit_id, drafts_only=False)
    require_state(body.location, crisis=in_crisis(checkin))
    await _confirm_emergency_info(session, services, actor, visit, checkin,
                                  location=body.location, callback_phone=body.callback_phone,
                                  contact=body.emergency_contact, now=now)
    info = await emergency_info_for(session, services, visit.patient_id)
    return EmergencyInfoConfirmed(checkin_id=checkin.id, visit_id=visit.id, **dict(info))


# --- triage of drafts -----------------------------------------------------------------


async def _previous_phq9(session: AsyncSession, patient_id: int,
                         checkin_id: int | None) -> int | None:
    query = select(MeasureResult.total).where(
        MeasureResult.patient_id == patient_id, MeasureResult.instrument == "phq9")
    if checkin_id is not None:
        query = query.where(MeasureResult.checkin_id != checkin_id)
    return await session.scalar(query.order_by(MeasureResult.at.desc()).limit(1))


# Each instrument's answers so far: null for an item not reached yet.
_SoFar = Phq9SoFar | Gad7SoFar | CssrsSoFar | AuditcSoFar | AsrmSoFar | FibserSoFar | BamSoFar
_SO_FAR: Final[dict[str, type[_SoFar]]] = {
    "phq9": Phq9SoFar, "gad7": Gad7SoFar, "cssrs": CssrsSoFar, "auditc": AuditcSoFar,
    "asrm": AsrmSoFar, "fibser": FibserSoFar, "bam": BamSoFar}


def _complete(name: str, answers: JsonValue) -> bool:
    """Whether the instrument's answers are all given and valid."""
    try:
        TriageResponses.model_validate({name: answers})
    except ValidationError:
        return False
    return True


def _answers_so_far(name: str, answers: JsonValue) -> ClosedAnswers | None:
    """A partly answered instrument, with the lowest answer for each item the patient
    has not reached: 0 for a scored item, "no" for a C-SSRS question.

    Every triage rule only rises with an answer (a total over a threshold, the highest
    endorsed C-SSRS answer), so this is the least the finished instrument can show: a
    "yes" to q4 (intent) is high risk whatever comes after it, and PHQ-9 item 9 above 0
    needs the screener whatever items 1-8 turn out to be. None when even so it is not
    valid (a wrong value, or answers against the skip logic).
    """
    model = _SO_FAR.get(name)
    if model is None:
        return None
    try:
        return model.model_validate(answers).least()
    except ValidationError:
        return None


def _partial_triage(services: Services, data: dict[str, JsonValue]) -> TriageResult | None:
    """Triage a draft: the instruments that are complete, and the ones still being
    answered at the least their answers so far show (``_answers_so_far``), so that a
    patient who says yes to intent and then closes the page reaches the emergency
    level at once. An unfinished instrument is not done: item 9 above 0 still requires
    the C-SSRS until the screener is complete. None when nothing can be triaged yet.
    """
    responses = data.get("responses")
    if not isinstance(responses, dict):
        return None
    sex = next((sex for sex in SEXES if sex == data.get("sex")), None)

    def triaged(chosen: dict[str, object]) -> TriageResult:
        return triage(TriageResponses.model_validate(chosen), sex, services.rules)

    complete: dict[str, object] = {}
    so_far: dict[str, object] = {}
    for name, answers in responses.items():
        if _complete(name, answers):
            complete[name] = answers
            continue
        least = _answers_so_far(name, answers)
        if least is not None:
            so_far[name] = least
    # The partial C-SSRS is left out here: it does not assess item 9 until it is done.
    others = {k: v for k, v in so_far.items() if k != "cssrs"}
    result = triaged(complete | others) if complete or others else None
    if "cssrs" not in so_far:
        return result
    # With the partial C-SSRS counted as given, "item 9 unassessed" (urgent) turns into
    # "item 9 positive" (review): keep whichever level is higher, and keep asking.
    bound = triaged(complete | so_far)
    if result is not None and level_rank(bound.level) <= level_rank(result.level):
        return result
    return replace(bound, requires=result.requires if result is not None else ())


# --- versions and the visit's risk ----------------------------------------------------


async def _open(session: AsyncSession, services: Services, actor: Actor, visit_id: int, *,
                drafts_only: bool = True) -> tuple[Visit, CheckIn, datetime]:
    """The patient's visit and its check-in (started if none), for a change: access and
    the check-in window checked, then the visit's lock taken, so concurrent saves of one
    check-in go one after the other. ``drafts_only``: refuse a completed check-in."""
    visit = await _access_for_patient(session, actor, visit_id)
    now = services.clock.now()
    _window_check(visit, now)
    await lock_visit(session, visit.id)
    checkin = await _get_or_start(session, visit, now)
    if drafts_only and checkin.status is CheckInStatus.completed:
        raise Conflict("This check-in is already complete.", code="checkin_completed",
                       field="status")
    return visit, checkin, now


async def _get_or_start(session: AsyncSession, visit: Visit, now: datetime) -> CheckIn:
    """The visit's check-in, started empty if there is none. Call with the visit locked
    (``lock_visit``): the unique ``visit_id`` would refuse a second one anyway, but a
    refusal would be an error for a patient who only opened a second tab."""
    checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))
    if checkin is None:
        checkin = CheckIn(visit_id=visit.id, patient_id=visit.patient_id,
                          status=CheckInStatus.draft, started_at=now, updated_at=now, data={},
                          version=0)
        session.add(checkin)
        await session.flush()
    return checkin


def _by_level(services: Services, codes: list[str]) -> list[str]:
    order = {code.value: index for index, code in enumerate(Reason)}
    return sorted(codes, key=lambda c: (-level_rank(services.rules.level_of_code(c)),
                                        order.get(c, len(order))))


async def _add_version(session: AsyncSession, checkin: CheckIn, kind: VersionKind,
                       data: dict[str, JsonValue], result: TriageResult | None,
                       now: datetime) -> CheckInVersion | None:
    """Keep this version of the answers; None for a draft that changed nothing (the
    same draft sent twice, as a page does when it is hidden)."""
    if kind == "draft" and checkin.version > 0 and data == checkin.data:
        return None
    checkin.version += 1
    version = CheckInVersion(
        checkin_id=checkin.id, seq=checkin.version, kind=kind, at=now, data=data,
        scores=result.scores.to_json() if result else None,
        level=result.level.value if result else Level.NONE.value,
        reasons=[r.value for r in result.reasons] if result else [])
    session.add(version)
    await session.flush()
    return version


def _raise_risk(services: Services, checkin: CheckIn, result: TriageResult) -> None:
    """Fold a triage result into the visit's risk: the highest level and every reason
    ever seen. Never lowered (invariant 1)."""
    reasons = list(dict.fromkeys([*(checkin.reasons or []), *(r.value for r in result.reasons)]))
    checkin.reasons = _by_level(services, reasons)
    if checkin.level is None or level_rank(result.level) > level_rank(checkin.level):
        checkin.level = result.level.value


def risk_level(checkin: CheckIn | None) -> Level:
    """The visit's risk as far as its check-in shows it."""
    return Level(checkin.level) if checkin is not None and checkin.level else Level.NONE


async def _hand_off(session: AsyncSession, services: Services,
                    trigger: CheckinTrigger) -> list[int]:
    """Give the risk to the escalation workflow (see ``CheckinHook``)."""
    raised: list[int] = []
    for hook in services.checkin_hooks:
        raised.extend(await hook(session, services, trigger))
    return raised


def _safety_reasons(services: Services, result: TriageResult) -> list[str]:
    return [r.value for r in result.reasons
            if level_at_least(services.rules.level_of_code(r.value), Level.REVIEW)]


async def _after_triage(session: AsyncSession, services: Services, actor: Actor, visit: Visit,
                        checkin: CheckIn, version: CheckInVersion, result: TriageResult,
                        *, hand_off: bool) -> list[int]:
    """What follows a new, triaged version: the escalation workflow when it may need one,
    and an addendum task when it carries safety reasons after the note was signed."""
    escalations: list[int] = []
    if hand_off:
        escalations = await _hand_off(session, services, CheckinTrigger(
            checkin=checkin, version_id=version.id, level=risk_level(checkin),
            reasons=tuple(checkin.reasons or ())))
    safety = _safety_reasons(services, result)
    if safety:
        await notes.safety_reasons_after_signing(session, services, visit, checkin, safety)
    emit(session, "checkin.triaged", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, checkin_id=checkin.id, patient_id=visit.patient_id,
         level=risk_level(checkin).value)
    audit.record(session, actor, "triage", "checkin", checkin.id, patient_id=visit.patient_id,
                 level=result.level.value, version=version.seq)
    return escalations


# --- saving and completing ------------------------------------------------------------


class DraftSaved(Result):
    id: int
    status: CheckInStatus
    saved_at: Instant
    version: int
    # The visit's risk: every saved version so far (stored codes: a retired one stays).
    level: Level
    reasons: list[str]
    # This draft's own level, and what the form must ask next.
    draft_level: Level
    requires: list[InstrumentId]
    crisis: bool
    location_confirmed_at: Instant | None
    escalations: list[int]


async def save_draft(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, data: object
) -> DraftSaved:
    """Keep what the patient has entered so far; triage what is complete."""
    if not isinstance(data, dict):
        raise ValidationFailed("The draft must be a JSON object.", field="body")
    draft = _validated(CheckInDraft, services, data)
    visit, checkin, now = await _open(session, services, actor, visit_id)
    result = _partial_triage(services, data)
    # This draft's own answers count: the one that reaches urgent may carry the place.
    require_state(draft.place, crisis=in_crisis(checkin) or (
        result is not None and level_at_least(result.level, Level.URGENT)))
    version = await _add_version(session, checkin, "draft", data, result, now)
    checkin.data = data
    checkin.updated_at = now
    audit.record(session, actor, "save_draft", "checkin", checkin.id,
                 patient_id=visit.patient_id)
    if draft.emergency_info_given:
        await _confirm_emergency_info(session, services, actor, visit, checkin,
                                      location=draft.place,
                                      callback_phone=draft.callback_phone,
                                      contact=draft.emergency_contact, now=now)
    escalations: list[int] = []
    if result is not None and version is not None:
        checkin.scores = result.scores.to_json()
        _raise_risk(services, checkin, result)
        escalations = await _after_triage(
            session, services, actor, visit, checkin, version, result,
            hand_off=level_at_least(result.level, Level.URGENT))
    return DraftSaved(
        id=checkin.id, status=checkin.status, saved_at=now, version=checkin.version,
        level=risk_level(checkin), reasons=checkin.reasons or [],
        draft_level=result.level if result else Level.NONE,
        requires=list(result.requires) if result else [], crisis=in_crisis(checkin),
        location_confirmed_at=checkin.location_confirmed_at, escalations=escalations)


def _missing(body: CheckInCompletion, needed: list[InstrumentId],
             checkin: CheckIn) -> list[str]:
    """What the check-in still lacks; emergency information confirmed for this visit
    already (the form's first step when the answers are urgent) counts as given."""
    missing = [f"responses.{name}" for name in needed
               if name not in body.responses.model_fields_set
               and name not in ASKED_NOT_REQUIRED]
    if body.location is None and not checkin.location_address:
        missing.append("location.address")
    if (body.location.state if body.location is not None else checkin.location_state) is None:
        missing.append("location.state")
    if body.callback_phone is None and not checkin.callback_phone:
        missing.append("callback_phone")
    if body.emergency_contact is None and not checkin.emergency_contact_name:
        missing.append("emergency_contact")
    return missing


async def _mark_completed(session: AsyncSession, checkin: CheckIn, now: datetime) -> None:
    """Draft to completed, once: the database decides between racing completions."""
    done = await session.execute(
        update(CheckIn).where(CheckIn.id == checkin.id,
                              CheckIn.status == CheckInStatus.draft)
        .values(status=CheckInStatus.completed, completed_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict("This check-in is already complete.", code="checkin_completed",
                       field="status")
    checkin.status = CheckInStatus.completed
    checkin.completed_at = now
    checkin.updated_at = now


class TriagedAnswers(Result):
    """The completed answers alone, as ``POST /api/v1/triage`` would triage them."""

    level: Level
    reasons: list[Reason]


class Completed(Result):
    id: int
    visit_id: int
    status: CheckInStatus
    version: int
    scores: dict[InstrumentId, dict[str, JsonValue]]
    # The visit's risk: this completion and every saved draft before it.
    level: Level
    reasons: list[str]
    reason_levels: dict[str, Level]
    requires: list[InstrumentId]
    answers: TriagedAnswers
    missing: list[str]
    escalations: list[int]
    completed_at: Instant


async def complete(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, data: object
) -> Completed:
    """Validate, score, triage and store the check-in; the visit becomes checked in."""
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    body = _completion(services, data)
    visit, checkin, now = await _open(session, services, actor, visit_id)
    previous = await _previous_phq9(session, visit.patient_id, checkin.id)
    result = triage(body.responses, body.sex, services.rules, previous_phq9_total=previous)
    missing = _missing(body, await needed_instruments(session, visit), checkin)
    urgent = level_at_least(result.level, Level.URGENT) or in_crisis(checkin)
    if missing and not urgent:
        raise ValidationFailed(STATE_MISSING if missing[0] == "location.state" else
                               f"{missing[0]} is required to finish the check-in.",
                               field=missing[0])
    await _mark_completed(session, checkin, now)
    version = await _add_version(session, checkin, "completion", data, result, now)
    assert version is not None  # a completion is always kept
    checkin.data = data
    checkin.scores = result.scores.to_json()
    await _confirm_emergency_info(session, services, actor, visit, checkin,
                                  location=body.location, callback_phone=body.callback_phone,
                                  contact=body.emergency_contact, now=now)
    _raise_risk(services, checkin, result)
    scores = result.scores.to_json()
    for name, score in scores.items():
        total = score.get("total")
        session.add(MeasureResult(checkin_id=checkin.id, patient_id=visit.patient_id,
                                  instrument=name, at=now,
                                  total=total if isinstance(total, int) else None,
                                  result=score))
    profile = await session.get(PatientProfile, visit.patient_id)
    if profile is not None and body.sex is not None:
        profile.sex = body.sex
    if visit.status is VisitStatus.scheduled:
        visit.status = VisitStatus.checked_in
    audit.record(session, actor, "complete", "checkin", checkin.id, patient_id=visit.patient_id,
                 level=risk_level(checkin).value)
    escalations = await _after_triage(session, services, actor, visit, checkin, version,
                                      result, hand_off=True)
    recipients = await care_team_ids(session, visit.patient_id)
    emit(session, "checkin.completed", recipients, visit_id=visit.id, checkin_id=checkin.id,
         patient_id=visit.patient_id, level=risk_level(checkin).value)
    emit(session, "visit.status", recipients | {visit.patient_id}, visit_id=visit.id,
         status=visit.status.value)
    reasons = checkin.reasons or []
    return Completed(
        id=checkin.id, visit_id=visit.id, status=checkin.status, version=checkin.version,
        scores=scores, level=risk_level(checkin), reasons=reasons,
        reason_levels={r: services.rules.level_of_code(r) for r in reasons},
        requires=list(result.requires),
        answers=TriagedAnswers(level=result.level, reasons=list(result.reasons)),
        missing=missing, escalations=escalations, completed_at=now)


# --- reading --------------------------------------------------------------------------


class ReasonSeen(Result):
    """When a reason first showed in a saved version, and whether the latest still shows
    it (a patient may change an answer; the reason stays on record)."""

    code: str
    level: Level
    first_seen_at: Instant
    first_seen_kind: VersionKind
    first_seen_version: int
    in_latest: bool


async def versions_of(session: AsyncSession, checkin_id: int) -> list[CheckInVersion]:
    return list((await session.scalars(select(CheckInVersion).where(
        CheckInVersion.checkin_id == checkin_id).order_by(CheckInVersion.seq))).all())


def reasons_seen(services: Services, versions: list[CheckInVersion]) -> list[ReasonSeen]:
    first: dict[str, CheckInVersion] = {}
    for version in versions:
        for code in version.reasons:
            first.setdefault(code, version)
    latest = set(versions[-1].reasons) if versions else set()
    return [ReasonSeen(code=code, level=services.rules.level_of_code(code),
                       first_seen_at=first[code].at, first_seen_kind=first[code].kind,
                       first_seen_version=first[code].seq, in_latest=code in latest)
            for code in _by_level(services, list(first))]


class CheckInView(Result):
    """A visit's check-in as stored: the answers as last sent, the scores of the latest
    scored ones, the visit's risk and the emergency information confirmed for it."""

    id: int
    visit_id: int
    status: CheckInStatus
    version: int
    # The body as the patient's browser last sent it (a draft: anything JSON).
    data: StoredBody
    scores: dict[str, JsonValue] | None
    # The visit's risk (stored codes: a retired one stays on record).
    level: Level | None
    reasons: list[str]
    location: KnownLocation
    callback_phone: str | None
    emergency_contact: KnownContact
    location_confirmed_at: Instant | None
    contact_confirmed_at: Instant | None
    started_at: Instant
    updated_at: Instant
    completed_at: Instant | None
    # For the care team only: the key is left out for the patient.
    reasons_seen: list[ReasonSeen] | None = None

    @model_serializer(mode="wrap")
    def _without_reasons_seen(self, handler: SerializerFunctionWrapHandler) -> Any:
        found = handler(self)
        if self.reasons_seen is None:
            del found["reasons_seen"]
        return found


def checkin_view(checkin: CheckIn, seen: list[ReasonSeen] | None = None) -> CheckInView:
    return CheckInView(
        id=checkin.id, visit_id=checkin.visit_id, status=checkin.status,
        version=checkin.version, data=checkin.data, scores=checkin.scores,
        level=checkin.level, reasons=checkin.reasons or [],
        location=KnownLocation(address=checkin.location_address,
                               state=checkin.location_state),
        callback_phone=checkin.callback_phone,
        emergency_contact=KnownContact(name=checkin.emergency_contact_name,
                                       phone=checkin.emergency_contact_phone),
        location_confirmed_at=checkin.location_confirmed_at,
        contact_confirmed_at=checkin.contact_confirmed_at, started_at=checkin.started_at,
        updated_at=checkin.updated_at, completed_at=checkin.completed_at, reasons_seen=seen)


class CheckInState(Result):
    """A visit's check-in (or none yet) with what the form needs around it."""

    visit_id: int
    open: bool
    needs: list[InstrumentId]
    prefill: Prefill
    emergency_info: EmergencyInfo
    checkin: CheckInView | None


async def get_checkin(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int
) -> CheckInState:
    """The visit's check-in (or none yet), what it needs, the prefill and the freshest
    emergency information; for the care team also each reason with when it first
    showed (drafts included)."""
    visit = await access_visit(session, actor, visit_id, now=services.clock.now())
    checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))
    audit.record(session, actor, "read", "checkin", checkin.id if checkin else None,
                 patient_id=visit.patient_id, visit_id=visit.id)
    view = None
    if checkin is not None:
        seen = None
        if actor.role is not Role.patient:
            seen = reasons_seen(services, await versions_of(session, checkin.id))
        view = checkin_view(checkin, seen)
    return CheckInState(
        visit_id=visit.id, open=is_open(visit, services.clock.now()),
        needs=await needed_instruments(session, visit),
        prefill=await prefill(session, services, visit.patient_id),
        emergency_info=await emergency_info_for(session, services, visit.patient_id),
        checkin=view)
