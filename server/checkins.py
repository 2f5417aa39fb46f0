"""The pre-visit check-in: drafts, completion, scoring, triage and its hand-off.

Safety decisions made here (see docs/clinical.md):
- A draft is triaged on every save using the instruments that are complete so far,
  and those still being answered at the least their answers so far show (a "yes" to
  intent is high risk before the screener's last questions are answered). When that reaches
  ``urgent`` or ``emergency`` (for example PHQ-9 item 9 answered above 0 before the
  C-SSRS is done), the result is stored and handed to the escalation workflow at
  once, so it is not lost if the patient closes the page.
- A completed check-in never goes unrecorded for missing pieces when its level is
  ``urgent`` or higher: the missing fields are listed instead of refusing it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_visit
from server.actors import Actor
from server.errors import Conflict, Forbidden, ValidationFailed
from server.events import emit
from server.http import validation_error
from server.models import (
    CheckIn,
    CheckInStatus,
    MeasureResult,
    PatientProfile,
    Role,
    Visit,
    VisitKind,
    VisitStatus,
)
from server.services import Services
from server.triage import Level, TriageResult, evaluate, level_at_least, level_rank
from server.visits import ENDED, care_team_ids

OPEN_BEFORE = timedelta(hours=72)
ALWAYS = ("phq9", "gad7")
PERIODIC = ("auditc", "asrm")

SIDE_EFFECTS = ("sedation", "agitation", "emotional_blunting", "sexual", "weight_change",
                "stomach", "dizziness", "tremor", "other")
MISSED_DOSE_REASONS = ("forgot", "side_effects", "cost_or_refill", "felt_better",
                       "felt_worse", "other")
Severity = Literal["mild", "moderate", "severe"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SideEffect(_Strict):
    effect: Literal["sedation", "agitation", "emotional_blunting", "sexual", "weight_change",
                    "stomach", "dizziness", "tremor", "other"]
    severity: Severity
    details: str | None = Field(default=None, max_length=500)


class MissedDoses(_Strict):
    days_missed: int = Field(ge=0, le=7)
    reasons: list[Literal["forgot", "side_effects", "cost_or_refill", "felt_better",
                          "felt_worse", "other"]] = Field(default_factory=list, max_length=6)
    details: str | None = Field(default=None, max_length=500)


class Sleep(_Strict):
    hours: float | int | None = Field(default=None, ge=0, le=24)
    quality: Literal["good", "fair", "poor"] | None = None


class SubstanceUse(_Strict):
    cravings: int | None = Field(default=None, ge=0, le=10)
    used_since_last_visit: bool | None = None
    substances: list[str] = Field(default_factory=list, max_length=20)
    details: str | None = Field(default=None, max_length=1000)


class Location(_Strict):
    address: str = Field(min_length=3, max_length=500)


class EmergencyContact(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=40)


class CheckInBody(BaseModel):
    """Everything but the scored responses (those are validated by server.triage)."""

    model_config = ConfigDict(extra="forbid")

    responses: dict[str, Any]
    sex: Literal["female", "male"] | None = None
    location: Location | None = None
    callback_phone: str | None = Field(default=None, min_length=3, max_length=40)
    emergency_contact: EmergencyContact | None = None
    side_effects: list[SideEffect] = Field(default_factory=list, max_length=20)
    missed_doses: MissedDoses | None = None
    sleep: Sleep | None = None
    substance_use: SubstanceUse | None = None


def _checked_body(data: dict[str, Any]) -> CheckInBody:
    try:
        return CheckInBody.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


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


async def needed_instruments(session: AsyncSession, visit: Visit) -> list[str]:
    """PHQ-9 and GAD-7 every visit; AUDIT-C and ASRM at intake and when last done longer
    ago than the patient's screening interval (90 days by default)."""
    needed = list(ALWAYS)
    profile = await session.get(PatientProfile, visit.patient_id)
    interval = timedelta(days=profile.screening_interval_days if profile else 90)
    for instrument in PERIODIC:
        last = await session.scalar(
            select(MeasureResult.at).where(
                MeasureResult.patient_id == visit.patient_id,
                MeasureResult.instrument == instrument,
            ).order_by(MeasureResult.at.desc()).limit(1)
        )
        if visit.kind is VisitKind.intake or last is None or \
                visit.scheduled_at - last >= interval:
            needed.append(instrument)
    return needed


async def prefill(session: AsyncSession, patient_id: int) -> dict[str, Any]:
    """Emergency information from the last check-in (else the profile), to confirm."""
    last = await session.scalar(
        select(CheckIn).where(CheckIn.patient_id == patient_id,
                              CheckIn.callback_phone.is_not(None))
        .order_by(CheckIn.updated_at.desc()).limit(1)
    )
    profile = await session.get(PatientProfile, patient_id)
    if last is not None:
        return {"location": {"address": last.location_address},
                "callback_phone": last.callback_phone,
                "emergency_contact": {"name": last.emergency_contact_name,
                                      "phone": last.emergency_contact_phone},
                "sex": profile.sex if profile else None}
    return {
        "location": {"address": None},
        "callback_phone": profile.phone if profile else None,
        "emergency_contact": {"name": profile.emergency_contact_name if profile else None,
                              "phone": profile.emergency_contact_phone if profile else None},
        "sex": profile.sex if profile else None,
    }


async def _previous_phq9(session: AsyncSession, patient_id: int,
                         checkin_id: int | None) -> int | None:
    query = select(MeasureResult.total).where(
        MeasureResult.patient_id == patient_id, MeasureResult.instrument == "phq9")
    if checkin_id is not None:
        query = query.where(MeasureResult.checkin_id != checkin_id)
    return await session.scalar(query.order_by(MeasureResult.at.desc()).limit(1))


def _answers_so_far(instrument: str, raw: object) -> dict[str, Any] | None:
    """A partly answered instrument, with the lowest answer for each item the patient
    has not reached: 0 for a scored item, "no" for a C-SSRS question.

    Every triage rule only rises with an answer (a total over a threshold, the highest
    endorsed C-SSRS answer), so this is the least the finished instrument can show: a
    "yes" to q4 (intent) is high risk whatever comes after it, and PHQ-9 item 9 above 0
    needs the screener whatever items 1-8 turn out to be. None when even so it is not
    valid (a wrong value, or answers against the skip logic).
    """
    if not isinstance(raw, dict):
        return None
    answers = raw.get("answers")
    if isinstance(answers, list):
        return {**raw, "answers": [0 if value is None else value for value in answers]}
    if instrument != "cssrs" or set(raw) != {"answers"} or not isinstance(answers, dict):
        return None
    filled: dict[str, Any] = dict(answers)
    for key in ("q1", "q2", "q6"):
        if filled.get(key) is None:
            filled[key] = False
    if filled["q2"] is True:
        for key in ("q3", "q4", "q5"):
            if filled.get(key) is None:
                filled[key] = False
    if filled["q6"] is True and filled.get("q6_recent") is None:
        filled["q6_recent"] = False
    return {"answers": filled}


def _partial_triage(services: Services, data: dict[str, Any]) -> TriageResult | None:
    """Triage a draft: the instruments that are complete, and the ones still being
    answered at the least their answers so far show (``_answers_so_far``), so that a
    patient who says yes to intent and then closes the page reaches the emergency
    level at once. An unfinished instrument is not done: item 9 above 0 still requires
    the C-SSRS until the screener is complete. None when nothing can be triaged yet.
    """
    responses = data.get("responses")
    if not isinstance(responses, dict):
        return None
    sex = data.get("sex") if data.get("sex") in ("female", "male") else None

    def triage(chosen: dict[str, Any]) -> TriageResult | None:
        try:
            return evaluate({"responses": chosen, "sex": sex}, services.rules)
        except ValidationFailed:
            return None

    complete: dict[str, Any] = {}
    so_far: dict[str, Any] = {}
    for key, value in responses.items():
        if triage({key: value}) is not None:
            complete[key] = value
            continue
        filled = _answers_so_far(key, value)
        if filled is not None and triage({key: filled}) is not None:
            so_far[key] = filled
    # The partial C-SSRS is left out here: it does not assess item 9 until it is done.
    others = {k: v for k, v in so_far.items() if k != "cssrs"}
    result = triage(complete | others) if complete or others else None
    if "cssrs" not in so_far:
        return result
    # With the partial C-SSRS counted as given, "item 9 unassessed" (urgent) turns into
    # "item 9 positive" (review): keep whichever level is higher, and keep asking.
    bound = triage(complete | so_far)
    if bound is None or (result is not None and
                         level_rank(bound.level) <= level_rank(result.level)):
        return result
    return replace(bound, requires=result.requires if result is not None else ())


async def _get_or_start(session: AsyncSession, visit: Visit, now: datetime) -> CheckIn:
    checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))
    if checkin is None:
        checkin = CheckIn(visit_id=visit.id, patient_id=visit.patient_id,
                          status=CheckInStatus.draft, started_at=now, updated_at=now, data={})
        session.add(checkin)
        await session.flush()
    return checkin


def _store_emergency_info(checkin: CheckIn, body: CheckInBody) -> None:
    if body.location is not None:
        checkin.location_address = body.location.address
    if body.callback_phone is not None:
        checkin.callback_phone = body.callback_phone
    if body.emergency_contact is not None:
        checkin.emergency_contact_name = body.emergency_contact.name
        checkin.emergency_contact_phone = body.emergency_contact.phone


async def _hand_off(session: AsyncSession, services: Services, checkin: CheckIn,
                    result: TriageResult) -> list[int]:
    """Give the triage result to the escalation workflow (one call, see CheckinHook)."""
    raised: list[int] = []
    for hook in services.checkin_hooks:
        raised.extend(await hook(session, services, checkin, result))
    return raised


async def _record_triage(session: AsyncSession, services: Services, actor: Actor,
                         visit: Visit, checkin: CheckIn, result: TriageResult) -> list[int]:
    # Never lower a stored level from a later, partial draft: a risk once reported
    # stays reported until a clinician resolves it.
    if checkin.level is None or level_at_least(result.level, checkin.level):
        checkin.level = result.level.value
        checkin.reasons = [r.value for r in result.reasons]
        checkin.scores = result.scores.to_json()
    escalations = await _hand_off(session, services, checkin, result)
    recipients = await care_team_ids(session, visit.patient_id)
    emit(session, "checkin.triaged", recipients, visit_id=visit.id, checkin_id=checkin.id,
         patient_id=visit.patient_id, level=result.level.value)
    audit.record(session, actor, "triage", "checkin", checkin.id, patient_id=visit.patient_id,
                 level=result.level.value)
    return escalations


async def save_draft(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, data: Any
) -> dict[str, Any]:
    """Keep what the patient has entered so far; triage what is complete."""
    if not isinstance(data, dict):
        raise ValidationFailed("The draft must be a JSON object.", field="body")
    visit = await _access_for_patient(session, actor, visit_id)
    now = services.clock.now()
    _window_check(visit, now)
    checkin = await _get_or_start(session, visit, now)
    if checkin.status is CheckInStatus.completed:
        raise Conflict("This check-in is already complete.", code="checkin_completed",
                       field="status")
    checkin.data = data
    checkin.updated_at = now
    audit.record(session, actor, "save_draft", "checkin", checkin.id,
                 patient_id=visit.patient_id)
    escalations: list[int] = []
    result = _partial_triage(services, data)
    if result is not None and level_at_least(result.level, Level.URGENT):
        escalations = await _record_triage(session, services, actor, visit, checkin, result)
    return {
        "id": checkin.id, "status": checkin.status.value, "saved_at": now.isoformat(),
        "level": result.level.value if result else "none",
        "requires": list(result.requires) if result else [],
        "crisis": bool(result and level_at_least(result.level, Level.URGENT)),
        "escalations": escalations,
    }


def _missing(body: CheckInBody, needed: list[str]) -> list[str]:
    missing = [f"responses.{name}" for name in needed if name not in body.responses]
    if body.location is None:
        missing.append("location.address")
    if body.callback_phone is None:
        missing.append("callback_phone")
    if body.emergency_contact is None:
        missing.append("emergency_contact")
    return missing


async def complete(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, data: Any
) -> dict[str, Any]:
    """Validate, score, triage and store the check-in; the visit becomes checked in."""
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    visit = await _access_for_patient(session, actor, visit_id)
    now = services.clock.now()
    _window_check(visit, now)
    body = _checked_body(data)
    checkin = await _get_or_start(session, visit, now)
    if checkin.status is CheckInStatus.completed:
        raise Conflict("This check-in is already complete.", code="checkin_completed",
                       field="status")
    previous = await _previous_phq9(session, visit.patient_id, checkin.id)
    result = evaluate(data, services.rules, previous_phq9_total=previous)
    missing = _missing(body, await needed_instruments(session, visit))
    if missing and not level_at_least(result.level, Level.URGENT):
        raise ValidationFailed(f"{missing[0]} is required to finish the check-in.",
                               field=missing[0])
    checkin.data = data
    checkin.status = CheckInStatus.completed
    checkin.completed_at = now
    checkin.updated_at = now
    _store_emergency_info(checkin, body)
    # The stored level is this full result; a partial draft's level may be lower or
    # higher, but the completed answers are what the patient confirmed.
    checkin.level = result.level.value
    checkin.reasons = [r.value for r in result.reasons]
    checkin.scores = result.scores.to_json()
    for name, score in result.scores.to_json().items():
        total = score.get("total") if isinstance(score, dict) else None
        session.add(MeasureResult(checkin_id=checkin.id, patient_id=visit.patient_id,
                                  instrument=name, at=now,
                                  total=total if isinstance(total, int) else None,
                                  result=score if isinstance(score, dict) else {}))
    profile = await session.get(PatientProfile, visit.patient_id)
    if profile is not None and body.sex is not None:
        profile.sex = body.sex
    if visit.status is VisitStatus.scheduled:
        visit.status = VisitStatus.checked_in
    audit.record(session, actor, "complete", "checkin", checkin.id, patient_id=visit.patient_id,
                 level=result.level.value)
    escalations = await _hand_off(session, services, checkin, result)
    recipients = await care_team_ids(session, visit.patient_id)
    emit(session, "checkin.completed", recipients, visit_id=visit.id, checkin_id=checkin.id,
         patient_id=visit.patient_id, level=result.level.value)
    emit(session, "visit.status", recipients | {visit.patient_id}, visit_id=visit.id,
         status=visit.status.value)
    return {"id": checkin.id, "visit_id": visit.id, "status": checkin.status.value,
            **result.to_json(), "missing": missing, "escalations": escalations,
            "completed_at": now.isoformat()}


def checkin_json(checkin: CheckIn) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "visit_id": checkin.visit_id,
        "status": checkin.status.value,
        "data": checkin.data,
        "scores": checkin.scores,
        "level": checkin.level,
        "reasons": checkin.reasons or [],
        "location": {"address": checkin.location_address},
        "callback_phone": checkin.callback_phone,
        "emergency_contact": {"name": checkin.emergency_contact_name,
                              "phone": checkin.emergency_contact_phone},
        "started_at": checkin.started_at.isoformat(),
        "updated_at": checkin.updated_at.isoformat(),
        "completed_at": checkin.completed_at.isoformat() if checkin.completed_at else None,
    }


async def get_checkin(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int
) -> dict[str, Any]:
    """The visit's check-in (or none yet), what it needs and the prefill."""
    visit = await access_visit(session, actor, visit_id, now=services.clock.now())
    checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit.id))
    audit.record(session, actor, "read", "checkin", checkin.id if checkin else None,
                 patient_id=visit.patient_id, visit_id=visit.id)
    now = services.clock.now()
    is_open = visit.status not in ENDED and now >= visit.scheduled_at - OPEN_BEFORE
    return {
        "visit_id": visit.id,
        "open": is_open,
        "needs": await needed_instruments(session, visit),
        "prefill": await prefill(session, visit.patient_id),
        "checkin": checkin_json(checkin) if checkin else None,
    }
