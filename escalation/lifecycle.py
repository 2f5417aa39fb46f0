"""The escalation lifecycle: raise, acknowledge, assign, log contacts, resolve.

``open`` -> ``acknowledged`` -> ``in_progress`` -> ``resolved``, each step by a named
person at a time, each one function that writes the timeline event, the audit record
and the live event together. Levels, deadlines and dispositions: CLINICAL.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import notify
from escalation.deadlines import ACK_TIMER, ack_due, cancel_timers, schedule_ack_timer
from server import audit
from server.access import access_escalation, access_patient, on_care_team, require_role
from server.actors import Actor
from server.errors import Conflict, ValidationFailed
from server.events import emit
from server.models import (
    CheckIn,
    Escalation,
    EscalationEvent,
    EscalationStatus,
    PatientProfile,
    Role,
    User,
    Visit,
)
from server.services import Services
from server.triage import Level, TriageResult, level_at_least, level_rank

# Levels that create a coordinator task. `review` is for the prescriber in the visit
# (shown at the top of the note panel), not a coordinator task.
TASK_LEVELS = (Level.STEP_UP, Level.URGENT, Level.EMERGENCY)

MANUAL_REASONS = (
    "suicidal_ideation_plan_or_intent", "homicidal_ideation", "mania", "psychosis",
    "severe_withdrawal_or_intoxication", "overdose_risk", "relapse", "medically_unstable",
    "needs_in_person_assessment", "other",
)
DISPOSITIONS = (
    "emergency_services", "mobile_crisis", "inpatient", "residential",
    "partial_hospitalization", "intensive_outpatient", "in_person_visit",
    "outpatient_follow_up", "no_action_needed",
)
EVENT_KINDS = ("contact_attempt", "note", "message")
CONTACT_OUTCOMES = ("reached", "no_answer", "voicemail", "wrong_number", "busy")


def _conflict(escalation: Escalation, action: str) -> Conflict:
    return Conflict(
        f'Cannot {action} an escalation in state "{escalation.status.value}".',
        code="invalid_transition", field="status", extra={"status": escalation.status.value},
    )


def _event(session: AsyncSession, escalation: Escalation, actor: Actor | None, kind: str,
           at: datetime, **detail: Any) -> EscalationEvent:
    event = EscalationEvent(escalation_id=escalation.id, at=at,
                            actor_id=actor.user_id if actor and actor.user_id else None,
                            kind=kind, detail=detail)
    session.add(event)
    return event


async def _publish(session: AsyncSession, escalation: Escalation, kind: str) -> None:
    # On-call staff are everyone's backup, so their queues follow every escalation.
    recipients = await notify.care_team(session, escalation.patient_id) | \
        await notify.on_call(session)
    emit(session, kind, recipients, escalation_id=escalation.id, patient_id=escalation.patient_id,
         visit_id=escalation.visit_id, level=escalation.level, status=escalation.status.value)


def _copy_emergency_info(escalation: Escalation, checkin: CheckIn | None,
                         profile: PatientProfile | None) -> None:
    if checkin is not None and checkin.callback_phone:
        escalation.location_address = checkin.location_address
        escalation.callback_phone = checkin.callback_phone
        escalation.emergency_contact_name = checkin.emergency_contact_name
        escalation.emergency_contact_phone = checkin.emergency_contact_phone
    elif profile is not None and escalation.callback_phone is None:
        escalation.callback_phone = profile.phone
        escalation.emergency_contact_name = profile.emergency_contact_name
        escalation.emergency_contact_phone = profile.emergency_contact_phone


async def open_escalation_for(session: AsyncSession, patient_id: int) -> Escalation | None:
    return await session.scalar(
        select(Escalation).where(Escalation.patient_id == patient_id,
                                 Escalation.status != EscalationStatus.resolved)
        .order_by(Escalation.raised_at.desc()).limit(1)
    )


async def _raise(
    session: AsyncSession, services: Services, actor: Actor | None, *, patient_id: int,
    visit_id: int | None, checkin: CheckIn | None, level: Level, reasons: list[str],
    source: str, reason_text: str | None,
) -> Escalation:
    """Raise a new escalation, or raise the patient's open one (never a duplicate)."""
    now = services.clock.now()
    profile = await session.get(PatientProfile, patient_id)
    existing = await open_escalation_for(session, patient_id)
    if existing is not None:
        merged = list(dict.fromkeys([*existing.reasons, *reasons]))
        if level_rank(level) > level_rank(existing.level):
            previous = existing.level
            existing.level = level.value
            existing.reasons = merged
            # A higher level needs a fresh acknowledgement within its own deadline.
            existing.status = EscalationStatus.open
            existing.acknowledged_at = None
            existing.acknowledged_by_id = None
            existing.ack_due_at = ack_due(services, level, now)
            existing.realerts = 0
            if checkin is not None:
                existing.checkin_id = checkin.id
            existing.visit_id = visit_id or existing.visit_id
            _copy_emergency_info(existing, checkin, profile)
            _event(session, existing, actor, "level_raised", now, previous=previous,
                   level=level.value, reasons=reasons, source=source)
            await schedule_ack_timer(session, services, existing)
            await session.flush()
            audit.record(session, actor, "raise_level", "escalation", existing.id,
                         patient_id=patient_id, level=level.value)
            await notify.alert(session, services, existing, "raised")
            await _publish(session, existing, "escalation.raised")
        elif merged != existing.reasons or (checkin and existing.checkin_id != checkin.id):
            existing.reasons = merged
            _copy_emergency_info(existing, checkin, profile)
            _event(session, existing, actor, "reasons_added", now, reasons=reasons,
                   source=source)
            await _publish(session, existing, "escalation.updated")
        return existing
    escalation = Escalation(
        patient_id=patient_id, visit_id=visit_id, checkin_id=checkin.id if checkin else None,
        level=level.value, reasons=reasons, reason_text=reason_text, source=source,
        status=EscalationStatus.open, raised_at=now,
        raised_by_id=actor.user_id if actor and actor.user_id else None,
        ack_due_at=ack_due(services, level, now), realerts=0,
    )
    _copy_emergency_info(escalation, checkin, profile)
    session.add(escalation)
    await session.flush()
    _event(session, escalation, actor, "raised", now, level=level.value, reasons=reasons,
           source=source)
    await schedule_ack_timer(session, services, escalation)
    audit.record(session, actor, "raise", "escalation", escalation.id, patient_id=patient_id,
                 level=level.value, source=source)
    await notify.alert(session, services, escalation, "raised")
    await _publish(session, escalation, "escalation.raised")
    return escalation


async def raise_from_checkin(
    session: AsyncSession, services: Services, checkin: Any, result: TriageResult
) -> list[int]:
    """The check-in hook (server.services.CheckinHook): one escalation per check-in at
    its highest level with all its reasons; none below ``step_up``."""
    assert isinstance(checkin, CheckIn)
    if not level_at_least(result.level, Level.STEP_UP):
        return []
    task_reasons = [r.value for r in result.reasons]
    escalation = await _raise(
        session, services, None, patient_id=checkin.patient_id, visit_id=checkin.visit_id,
        checkin=checkin, level=result.level, reasons=task_reasons, source="checkin",
        reason_text=None,
    )
    return [escalation.id]


async def raise_manually(
    session: AsyncSession, services: Services, actor: Actor, *, patient_id: int,
    visit_id: int | None, level: str, reason: str, text: str | None,
) -> Escalation:
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient(session, actor, patient_id)
    if reason not in MANUAL_REASONS:
        raise ValidationFailed(f"reason must be one of {', '.join(MANUAL_REASONS)}.",
                               field="reason")
    if reason == "other" and not (text and text.strip()):
        raise ValidationFailed("Describe the reason.", field="text")
    try:
        chosen = Level(level)
    except ValueError:
        raise ValidationFailed("level must be step_up, urgent or emergency.",
                               field="level") from None
    if chosen not in TASK_LEVELS:
        raise ValidationFailed("level must be step_up, urgent or emergency.", field="level")
    checkin = None
    if visit_id is not None:
        visit = await session.get(Visit, visit_id)
        if visit is None or visit.patient_id != patient_id:
            raise ValidationFailed("That visit is not this patient's.", field="visit_id")
        checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit_id))
    return await _raise(
        session, services, actor, patient_id=patient_id, visit_id=visit_id, checkin=checkin,
        level=chosen, reasons=[reason], source="manual",
        reason_text=(text or "").strip()[:1000] or None,
    )


async def acknowledge(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int
) -> Escalation:
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True)
    if escalation.status is not EscalationStatus.open:
        raise _conflict(escalation, "acknowledge")
    now = services.clock.now()
    escalation.status = EscalationStatus.acknowledged
    escalation.acknowledged_at = now
    escalation.acknowledged_by_id = actor.user_id
    if escalation.assigned_to_id is None:
        escalation.assigned_to_id = actor.user_id
    _event(session, escalation, actor, "acknowledged", now)
    await cancel_timers(session, services, ACK_TIMER, escalation.id)
    audit.record(session, actor, "acknowledge", "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    await _publish(session, escalation, "escalation.updated")
    return escalation


async def assign(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int,
    assignee_id: int,
) -> Escalation:
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True)
    if escalation.status is EscalationStatus.resolved:
        raise _conflict(escalation, "assign")
    assignee = await session.get(User, assignee_id)
    if assignee is None or not assignee.is_active or \
            assignee.role not in (Role.prescriber, Role.coordinator) or \
            not await on_care_team(session, assignee_id, escalation.patient_id):
        raise ValidationFailed("Assign to a prescriber or coordinator on the care team.",
                               field="assignee_id")
    now = services.clock.now()
    previous = escalation.assigned_to_id
    escalation.assigned_to_id = assignee_id
    _event(session, escalation, actor, "assigned", now, assignee_id=assignee_id,
           previous_assignee_id=previous)
    audit.record(session, actor, "assign", "escalation", escalation.id,
                 patient_id=escalation.patient_id, assignee_id=assignee_id)
    await _publish(session, escalation, "escalation.updated")
    return escalation


async def log_event(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int, *,
    kind: str, text: str, outcome: str | None,
) -> EscalationEvent:
    """A contact attempt, message or note; the first contact starts the work."""
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True)
    if kind not in EVENT_KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(EVENT_KINDS)}.", field="kind")
    if not text.strip() and kind != "contact_attempt":
        raise ValidationFailed("Write what happened.", field="text")
    if kind == "contact_attempt" and outcome not in CONTACT_OUTCOMES:
        raise ValidationFailed(f"outcome must be one of {', '.join(CONTACT_OUTCOMES)}.",
                               field="outcome")
    if escalation.status in (EscalationStatus.open, EscalationStatus.resolved):
        raise _conflict(escalation, f"log a {kind.replace('_', ' ')} on")
    now = services.clock.now()
    if escalation.status is EscalationStatus.acknowledged and kind != "note":
        escalation.status = EscalationStatus.in_progress
        escalation.started_at = now
        _event(session, escalation, actor, "started", now)
    event = _event(session, escalation, actor, kind, now, text=text.strip()[:2000],
                   outcome=outcome)
    audit.record(session, actor, kind, "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    await _publish(session, escalation, "escalation.updated")
    await session.flush()
    return event


async def report_call_dropped(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int, *,
    visit_id: int | None,
) -> EscalationEvent:
    """The video call with the patient dropped while this escalation is not resolved.

    The coordinators (and, for an ``emergency``, the prescribers) are alerted at once,
    whatever the escalation's state: an unacknowledged emergency is exactly when nobody
    may miss it (``log_event`` refuses notes until someone acknowledges). The timeline
    entry names the callback number, which the coordinator calls first (CLINICAL.md,
    "Emergency information": if the call drops, call back the callback number).
    """
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True)
    if escalation.status is EscalationStatus.resolved:
        raise _conflict(escalation, "report a dropped call on")
    if visit_id is not None:
        visit = await session.get(Visit, visit_id)
        if visit is None or visit.patient_id != escalation.patient_id:
            raise ValidationFailed("That visit is not this patient's.", field="visit_id")
    now = services.clock.now()
    callback = escalation.callback_phone
    text = (f"The video call with the patient dropped. Call them back on {callback}."
            if callback else "The video call with the patient dropped. No callback number "
            "is on file: try the emergency contact and follow the emergency plan.")
    event = _event(session, escalation, actor, "call_dropped", now, text=text,
                   visit_id=visit_id)
    audit.record(session, actor, "call_dropped", "escalation", escalation.id,
                 patient_id=escalation.patient_id, visit_id=visit_id)
    await notify.alert(session, services, escalation, "call_dropped")
    await _publish(session, escalation, "escalation.updated")
    await session.flush()
    return event


async def resolve(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int, *,
    disposition: str, note: str, reason: str | None,
) -> Escalation:
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True)
    if disposition not in DISPOSITIONS:
        raise ValidationFailed(f"disposition must be one of {', '.join(DISPOSITIONS)}.",
                               field="disposition")
    if not note.strip():
        raise ValidationFailed("Write a resolution note.", field="note")
    if disposition == "no_action_needed" and not (reason and reason.strip()):
        raise ValidationFailed("Say why no action is needed.", field="reason")
    if escalation.status not in (EscalationStatus.acknowledged, EscalationStatus.in_progress):
        raise _conflict(escalation, "resolve")
    now = services.clock.now()
    escalation.status = EscalationStatus.resolved
    escalation.resolved_at = now
    escalation.resolved_by_id = actor.user_id
    escalation.disposition = disposition
    escalation.resolution_note = note.strip()
    escalation.no_action_reason = reason.strip() if reason else None
    _event(session, escalation, actor, "resolved", now, disposition=disposition)
    await cancel_timers(session, services, ACK_TIMER, escalation.id)
    audit.record(session, actor, "resolve", "escalation", escalation.id,
                 patient_id=escalation.patient_id, disposition=disposition)
    await _publish(session, escalation, "escalation.updated")
    return escalation
