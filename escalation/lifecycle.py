"""The escalation lifecycle: raise, re-arm, acknowledge, assign, log contacts, resolve.

``open`` -> ``acknowledged`` -> ``in_progress`` -> ``resolved``, each step by a named
person at a time, each one function that writes the timeline event, the audit record
and the live event together. Levels, deadlines and dispositions: CLINICAL.md, and its
"Safety workflow invariants":
- one open escalation per patient; a new urgent or emergency trigger on one that was
  already taken (acknowledged, in progress) re-arms it: open again, a new deadline for
  its level, the same alerts as a new one, a trigger linking the new check-in (3);
- deadlines are fixed when raised or re-armed (4, ``escalation.deadlines``);
- an emergency is closed by action: never ``no_action_needed``, and emergency or urgent
  only after a contact that reached the patient since it was last armed, or with
  emergency services or mobile crisis sent; required text holds at least 10 letters (6).

Every change to one escalation takes its row lock first (``server.locks``), so two
coordinators, or an acknowledgement and a re-arm, never overwrite each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation import notify
from escalation.deadlines import ack_due, cancel_timers, schedule_realert
from escalation.vocabulary import (
    CONTACT_OUTCOMES,
    HELP_SENT,
    ContactOutcome,
    Disposition,
    EventKind,
    LoggedKind,
    ManualReason,
    Source,
    TaskLevel,
    TriggerEffect,
)
from server import audit, checkins
from server.access import (
    access_escalation,
    access_patient,
    is_on_call,
    on_care_team,
    require_role,
)
from server.accounts import care_team_ids
from server.actors import Actor
from server.emergency_info import readable_phone
from server.errors import Conflict, ValidationFailed
from server.events import emit
from server.freetext import require_letters
from server.locks import lock_escalation, lock_patient
from server.models import (
    CheckIn,
    Escalation,
    EscalationEvent,
    EscalationStatus,
    EscalationTrigger,
    Role,
    User,
    Visit,
)
from server.services import CheckinTrigger, Services
from server.triage import Level, level_at_least, level_rank


def _conflict(escalation: Escalation, action: str) -> Conflict:
    return Conflict(
        f'Cannot {action} an escalation in state "{escalation.status.value}".',
        code="invalid_transition", field="status", extra={"status": escalation.status.value},
    )


def _event(session: AsyncSession, escalation: Escalation, actor: Actor | None,
           kind: EventKind, at: datetime, **detail: Any) -> EscalationEvent:
    event = EscalationEvent(escalation_id=escalation.id, at=at,
                            actor_id=actor.user_id if actor and actor.user_id else None,
                            kind=kind, detail=detail)
    session.add(event)
    return event


async def _publish(session: AsyncSession, services: Services, escalation: Escalation,
                   kind: str) -> None:
    # On-call staff are everyone's backup, so their queues follow every escalation.
    recipients = await care_team_ids(session, escalation.patient_id) | \
        await notify.on_call(session, services.clock.now())
    emit(session, kind, recipients, escalation_id=escalation.id, patient_id=escalation.patient_id,
         visit_id=escalation.visit_id, level=escalation.level, status=escalation.status.value)


async def _copy_emergency_info(session: AsyncSession, services: Services,
                               escalation: Escalation) -> bool:
    """Put the patient's freshest emergency information on the escalation (invariant 2);
    whether anything changed."""
    info = await checkins.emergency_info_for(session, services, escalation.patient_id)
    values = {
        "location_address": info.address, "location_state": info.state,
        "callback_phone": info.callback_phone,
        "emergency_contact_name": info.contact_name,
        "emergency_contact_phone": info.contact_phone,
        "emergency_confirmed_at": info.confirmed_at or info.on_file_at,
        "emergency_source": info.source,
    }
    changed = False
    for name, value in values.items():
        if getattr(escalation, name) != value:
            setattr(escalation, name, value)
            changed = True
    return changed


async def open_escalation_for(session: AsyncSession, patient_id: int) -> Escalation | None:
    return await session.scalar(
        select(Escalation).where(Escalation.patient_id == patient_id,
                                 Escalation.status != EscalationStatus.resolved)
        .order_by(Escalation.raised_at.desc()).limit(1)
    )


@dataclass(frozen=True)
class Trigger:
    """What asks for an escalation: a check-in's risk (with the saved version of the
    answers that showed it) or a manual raise (with its text)."""

    patient_id: int
    level: Level
    reasons: list[str]
    source: Source
    visit_id: int | None = None
    checkin_id: int | None = None
    version_id: int | None = None
    text: str | None = None


@dataclass(frozen=True)
class _Earlier:
    """What the check-in already triggered, and on which escalation."""

    escalation_id: int
    reasons: frozenset[str]


async def _earlier(session: AsyncSession, checkin_id: int | None) -> _Earlier | None:
    if checkin_id is None:
        return None
    rows = list((await session.scalars(select(EscalationTrigger).where(
        EscalationTrigger.checkin_id == checkin_id).order_by(EscalationTrigger.id))).all())
    if not rows:
        return None
    return _Earlier(rows[-1].escalation_id,
                    frozenset(reason for row in rows for reason in row.reasons))


def _what_is_new(services: Services, trigger: Trigger,
                 earlier: _Earlier | None) -> Trigger | None:
    """A check-in hands over its whole risk on every save; only what it had not
    triggered before counts, at the level of those new reasons, so saving the same
    answers again, or completing them, alerts nobody twice and does not reopen what a
    coordinator closed. None when nothing is new."""
    if trigger.source != "checkin" or earlier is None:
        return trigger
    new = [reason for reason in trigger.reasons if reason not in earlier.reasons]
    if not new:
        return None
    level = max((services.rules.level_of_code(reason) for reason in new), key=level_rank)
    return replace(trigger, reasons=new, level=level)


def _record_trigger(session: AsyncSession, escalation: Escalation, actor: Actor | None,
                    trigger: Trigger, effect: TriggerEffect,
                    now: datetime) -> EscalationTrigger:
    row = EscalationTrigger(
        escalation_id=escalation.id, at=now, source=trigger.source,
        level=trigger.level.value, reasons=list(trigger.reasons), visit_id=trigger.visit_id,
        checkin_id=trigger.checkin_id, checkin_version_id=trigger.version_id,
        actor_id=actor.user_id if actor and actor.user_id else None, text=trigger.text,
        effect=effect)
    session.add(row)
    return row


def _merge_text(existing: str | None, text: str | None) -> str | None:
    if not text:
        return existing
    return f"{existing}\n\n{text}" if existing else text


async def _create(session: AsyncSession, services: Services, actor: Actor | None,
                  trigger: Trigger, now: datetime) -> Escalation:
    escalation = Escalation(
        patient_id=trigger.patient_id, visit_id=trigger.visit_id,
        checkin_id=trigger.checkin_id, level=trigger.level.value,
        reasons=list(trigger.reasons), reason_text=trigger.text, source=trigger.source,
        status=EscalationStatus.open, raised_at=now, armed_at=now,
        raised_by_id=actor.user_id if actor and actor.user_id else None,
        ack_due_at=ack_due(services, trigger.level, now), realerts=0,
    )
    await _copy_emergency_info(session, services, escalation)
    session.add(escalation)
    await session.flush()
    row = _record_trigger(session, escalation, actor, trigger, "raised", now)
    await session.flush()
    _event(session, escalation, actor, "raised", now, level=trigger.level.value,
           reasons=list(trigger.reasons), source=trigger.source, trigger_id=row.id,
           checkin_id=trigger.checkin_id, visit_id=trigger.visit_id)
    await schedule_realert(session, services, escalation)
    audit.record(session, actor, "raise", "escalation", escalation.id,
                 patient_id=trigger.patient_id, level=trigger.level.value,
                 source=trigger.source)
    await notify.alert(session, services, escalation, "raised")
    await _publish(session, services, escalation, "escalation.raised")
    return escalation


async def _rearm(session: AsyncSession, services: Services, actor: Actor | None,
                 escalation: Escalation, trigger: Trigger, now: datetime) -> None:
    """A new urgent or emergency trigger on an escalation someone already took, or a
    higher level than it has: it needs acknowledging again, within the deadline of its
    level counted from now, and alerts the same people as a new escalation
    (invariant 3). The owner stays; the timeline keeps who acknowledged before."""
    previous = {"status": escalation.status.value, "level": escalation.level}
    if level_rank(trigger.level) > level_rank(escalation.level):
        escalation.level = trigger.level.value
    escalation.reasons = list(dict.fromkeys([*escalation.reasons, *trigger.reasons]))
    escalation.reason_text = _merge_text(escalation.reason_text, trigger.text)
    escalation.status = EscalationStatus.open
    escalation.acknowledged_at = None
    escalation.acknowledged_by_id = None
    escalation.armed_at = now
    escalation.ack_due_at = ack_due(services, escalation.level, now)
    escalation.realerts = 0
    if trigger.visit_id is not None:
        escalation.visit_id = trigger.visit_id
    if trigger.checkin_id is not None:
        escalation.checkin_id = trigger.checkin_id
    await _copy_emergency_info(session, services, escalation)
    row = _record_trigger(session, escalation, actor, trigger, "rearmed", now)
    await session.flush()
    # "level_raised": higher while still waiting; "rearmed": taken, and needs taking again.
    kind: EventKind = "level_raised" if previous["status"] == EscalationStatus.open.value \
        else "rearmed"
    _event(session, escalation, actor, kind, now, level=escalation.level,
           reasons=list(trigger.reasons), source=trigger.source, trigger_id=row.id,
           checkin_id=trigger.checkin_id, visit_id=trigger.visit_id,
           previous_status=previous["status"], previous_level=previous["level"])
    await schedule_realert(session, services, escalation)
    audit.record(session, actor, "rearm", "escalation", escalation.id,
                 patient_id=escalation.patient_id, level=escalation.level,
                 source=trigger.source)
    await notify.alert(session, services, escalation, "raised")
    await _publish(session, services, escalation, "escalation.raised")


async def _add_to(session: AsyncSession, services: Services, actor: Actor | None,
                  escalation: Escalation, trigger: Trigger, now: datetime) -> None:
    """A trigger that does not re-arm: its reasons and text join the escalation and its
    timeline; a new urgent or emergency one (another check-in, a manual raise) still
    alerts, without moving the deadline."""
    escalation.reasons = list(dict.fromkeys([*escalation.reasons, *trigger.reasons]))
    escalation.reason_text = _merge_text(escalation.reason_text, trigger.text)
    if trigger.visit_id is not None:
        escalation.visit_id = trigger.visit_id
    if trigger.checkin_id is not None:
        escalation.checkin_id = trigger.checkin_id
    await _copy_emergency_info(session, services, escalation)
    row = _record_trigger(session, escalation, actor, trigger, "added", now)
    await session.flush()
    _event(session, escalation, actor, "reasons_added", now, level=trigger.level.value,
           reasons=list(trigger.reasons), source=trigger.source, trigger_id=row.id,
           checkin_id=trigger.checkin_id, visit_id=trigger.visit_id)
    audit.record(session, actor, "add_trigger", "escalation", escalation.id,
                 patient_id=escalation.patient_id, level=trigger.level.value,
                 source=trigger.source)
    if level_at_least(trigger.level, Level.URGENT):
        await notify.alert(session, services, escalation, "added")
    await _publish(session, services, escalation, "escalation.updated")


async def _raise(session: AsyncSession, services: Services, actor: Actor | None,
                 trigger: Trigger) -> Escalation:
    """Raise a new escalation, or re-arm or add to the patient's open one (one open
    escalation per patient; the database holds that too)."""
    now = services.clock.now()
    # Two check-ins, a check-in and a manual raise, or two instances at once: one at a
    # time per patient, so the second sees the first's escalation.
    await lock_patient(session, trigger.patient_id)
    earlier = await _earlier(session, trigger.checkin_id if trigger.source == "checkin"
                             else None)
    existing = await open_escalation_for(session, trigger.patient_id)
    new = _what_is_new(services, trigger, earlier)
    if existing is None and (new is None or not level_at_least(new.level, Level.STEP_UP)):
        # Nothing new from this check-in, or only review-level news after its escalation
        # was resolved (review is the prescriber's, not a coordinator task).
        assert earlier is not None  # a first trigger is always step_up or higher
        found = await session.get(Escalation, earlier.escalation_id)
        assert found is not None
        return found
    if existing is None:
        assert new is not None
        return await _create(session, services, actor, new, now)
    await session.refresh(existing)
    if new is None:
        return existing
    trigger = new
    taken = existing.status in (EscalationStatus.acknowledged, EscalationStatus.in_progress)
    higher = level_rank(trigger.level) > level_rank(existing.level)
    if higher or (taken and level_at_least(trigger.level, Level.URGENT)):
        await _rearm(session, services, actor, existing, trigger, now)
    else:
        await _add_to(session, services, actor, existing, trigger, now)
    return existing


async def raise_by_rule(session: AsyncSession, services: Services,
                        trigger: Trigger) -> Escalation:
    """An outreach rule's escalation (``source="outreach"``), raised, re-armed or added
    to like any other, with no person as its actor."""
    return await _raise(session, services, None, trigger)


async def raise_from_checkin(session: AsyncSession, services: Services,
                             trigger: CheckinTrigger) -> list[int]:
    """The check-in hook (server.services.CheckinHook): the visit's risk at step_up or
    higher raises, re-arms or adds to the patient's escalation; below, nothing."""
    if not level_at_least(trigger.level, Level.STEP_UP):
        return []
    checkin = trigger.checkin
    escalation = await _raise(session, services, None, Trigger(
        patient_id=checkin.patient_id, level=trigger.level, reasons=list(trigger.reasons),
        source="checkin", visit_id=checkin.visit_id, checkin_id=checkin.id,
        version_id=trigger.version_id))
    return [escalation.id]


async def emergency_info_confirmed(session: AsyncSession, services: Services, actor: Actor,
                                   checkin: CheckIn) -> None:
    """The emergency-information hook (server.services.EmergencyInfoHook): the patient's
    open escalation shows what they just confirmed, and its timeline says when."""
    await lock_patient(session, checkin.patient_id)
    escalation = await open_escalation_for(session, checkin.patient_id)
    if escalation is None:
        return
    await session.refresh(escalation)
    if not await _copy_emergency_info(session, services, escalation):
        return
    _event(session, escalation, actor, "emergency_info_confirmed", services.clock.now(),
           visit_id=checkin.visit_id, checkin_id=checkin.id)
    audit.record(session, actor, "update_emergency_info", "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    await _publish(session, services, escalation, "escalation.updated")


async def raise_manually(
    session: AsyncSession, services: Services, actor: Actor, *, patient_id: int,
    visit_id: int | None, level: TaskLevel, reason: ManualReason, text: str | None,
) -> Escalation:
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient(session, actor, patient_id)
    if reason == "other":
        written: str | None = require_letters(text, "text", what="the reason")
    else:
        written = (text or "").strip() or None
    checkin = None
    if visit_id is not None:
        visit = await session.get(Visit, visit_id)
        if visit is None or visit.patient_id != patient_id:
            raise ValidationFailed("That visit is not this patient's.", field="visit_id")
        checkin = await session.scalar(select(CheckIn).where(CheckIn.visit_id == visit_id))
    return await _raise(session, services, actor, Trigger(
        patient_id=patient_id, level=Level(level), reasons=[reason], source="manual",
        visit_id=visit_id, checkin_id=checkin.id if checkin else None, text=written))


async def _for_change(session: AsyncSession, services: Services, actor: Actor,
                      escalation_id: int) -> Escalation:
    """The escalation, if the actor may act on it, locked and read fresh."""
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation = await access_escalation(session, actor, escalation_id, write=True,
                                         now=services.clock.now())
    await lock_escalation(session, escalation)
    return escalation


async def acknowledge(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int
) -> Escalation:
    escalation = await _for_change(session, services, actor, escalation_id)
    if escalation.status is not EscalationStatus.open:
        raise _conflict(escalation, "acknowledge")
    now = services.clock.now()
    escalation.status = EscalationStatus.acknowledged
    escalation.acknowledged_at = now
    escalation.acknowledged_by_id = actor.user_id
    if escalation.assigned_to_id is None:
        escalation.assigned_to_id = actor.user_id
    _event(session, escalation, actor, "acknowledged", now)
    await cancel_timers(session, services, escalation.id)
    audit.record(session, actor, "acknowledge", "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    await _publish(session, services, escalation, "escalation.updated")
    return escalation


async def assign(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int,
    assignee_id: int,
) -> Escalation:
    escalation = await _for_change(session, services, actor, escalation_id)
    if escalation.status is EscalationStatus.resolved:
        raise _conflict(escalation, "assign")
    now = services.clock.now()
    assignee = await session.get(User, assignee_id)
    if assignee is None or not assignee.is_active or \
            assignee.role not in (Role.prescriber, Role.coordinator) or \
            not (await on_care_team(session, assignee_id, escalation.patient_id)
                 or await is_on_call(session, assignee_id, now)):
        raise ValidationFailed("Assign to a prescriber or coordinator on the care team or on "
                               "call.", field="assignee_id")
    previous = escalation.assigned_to_id
    escalation.assigned_to_id = assignee_id
    _event(session, escalation, actor, "assigned", now, assignee_id=assignee_id,
           previous_assignee_id=previous)
    audit.record(session, actor, "assign", "escalation", escalation.id,
                 patient_id=escalation.patient_id, assignee_id=assignee_id)
    await _publish(session, services, escalation, "escalation.updated")
    return escalation


async def log_event(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int, *,
    kind: LoggedKind, text: str, outcome: ContactOutcome | None,
) -> EscalationEvent:
    """A contact attempt, message or note; the first contact starts the work."""
    escalation = await _for_change(session, services, actor, escalation_id)
    if kind == "contact_attempt":
        if outcome is None:  # how the call went is what the next person acts on
            raise ValidationFailed(f"outcome must be one of {', '.join(CONTACT_OUTCOMES)}.",
                                   field="outcome")
        written = text.strip()
    else:
        written = require_letters(text, "text", what="what happened")
    if escalation.status in (EscalationStatus.open, EscalationStatus.resolved):
        raise _conflict(escalation, f"log a {kind.replace('_', ' ')} on")
    now = services.clock.now()
    if escalation.status is EscalationStatus.acknowledged and kind != "note":
        escalation.status = EscalationStatus.in_progress
        escalation.started_at = now
        _event(session, escalation, actor, "started", now)
    event = _event(session, escalation, actor, kind, now, text=written[:2000],
                   outcome=outcome)
    audit.record(session, actor, kind, "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    await _publish(session, services, escalation, "escalation.updated")
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
    escalation = await _for_change(session, services, actor, escalation_id)
    if escalation.status is EscalationStatus.resolved:
        raise _conflict(escalation, "report a dropped call on")
    if visit_id is not None:
        visit = await session.get(Visit, visit_id)
        if visit is None or visit.patient_id != escalation.patient_id:
            raise ValidationFailed("That visit is not this patient's.", field="visit_id")
    now = services.clock.now()
    callback = readable_phone(escalation.callback_phone)
    text = (f"The video call with the patient dropped. Call them back on {callback}."
            if callback else "The video call with the patient dropped. No callback number "
            "is on file: try the emergency contact and follow the emergency plan.")
    event = _event(session, escalation, actor, "call_dropped", now, text=text,
                   visit_id=visit_id)
    audit.record(session, actor, "call_dropped", "escalation", escalation.id,
                 patient_id=escalation.patient_id, visit_id=visit_id)
    await notify.alert(session, services, escalation, "call_dropped")
    await _publish(session, services, escalation, "escalation.updated")
    await session.flush()
    return event


async def _reached_since_armed(session: AsyncSession, escalation: Escalation) -> bool:
    """Whether a call that reached the patient is logged since the escalation was last
    raised or re-armed (a contact before a new emergency does not answer it)."""
    armed = escalation.armed_at or escalation.raised_at
    events = (await session.scalars(select(EscalationEvent).where(
        EscalationEvent.escalation_id == escalation.id,
        EscalationEvent.kind == "contact_attempt", EscalationEvent.at >= armed))).all()
    return any(event.detail.get("outcome") == "reached" for event in events)


async def resolve(
    session: AsyncSession, services: Services, actor: Actor, escalation_id: int, *,
    disposition: Disposition, note: str, reason: str | None,
) -> Escalation:
    escalation = await _for_change(session, services, actor, escalation_id)
    if disposition == "no_action_needed" and escalation.level == Level.EMERGENCY:
        raise ValidationFailed("An emergency is closed by action: choose what was done for "
                               "the patient, not no_action_needed.",
                               code="action_required", field="disposition")
    written_note = require_letters(note, "note", what="the resolution note")
    written_reason = require_letters(reason, "reason", what="why no action is needed") \
        if disposition == "no_action_needed" else None
    if escalation.status not in (EscalationStatus.acknowledged, EscalationStatus.in_progress):
        raise _conflict(escalation, "resolve")
    if escalation.level in (Level.EMERGENCY, Level.URGENT) and disposition not in HELP_SENT \
            and not await _reached_since_armed(session, escalation):
        raise Conflict(
            f"An {escalation.level} escalation is resolved once someone has reached the "
            "patient (log the call with outcome reached) or with emergency services or a "
            "mobile crisis team sent.", code="contact_required", field="disposition",
            extra={"level": escalation.level})
    now = services.clock.now()
    escalation.status = EscalationStatus.resolved
    escalation.resolved_at = now
    escalation.resolved_by_id = actor.user_id
    escalation.disposition = disposition
    escalation.resolution_note = written_note
    escalation.no_action_reason = written_reason
    _event(session, escalation, actor, "resolved", now, disposition=disposition)
    await cancel_timers(session, services, escalation.id)
    audit.record(session, actor, "resolve", "escalation", escalation.id,
                 patient_id=escalation.patient_id, disposition=disposition)
    await _publish(session, services, escalation, "escalation.updated")
    return escalation
