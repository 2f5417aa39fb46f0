"""Reading escalations: the queue, one escalation with its timeline, clinic measures.

Each answer is a typed result (``server.results``): the pages read its attributes and
the API turns it into JSON with ``to_json()``."""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from typing import Literal

from pydantic import JsonValue
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.vocabulary import (
    TASK_LEVELS,
    Disposition,
    EventKind,
    Source,
    TaskLevel,
    TriggerEffect,
)
from server import audit
from server.access import access_escalation, access_patient_escalations, is_on_call, require_role
from server.actors import Actor
from server.models import (
    CareTeamMember,
    CheckIn,
    CheckInVersion,
    Escalation,
    EscalationEvent,
    EscalationStatus,
    EscalationTrigger,
    Role,
    User,
    Visit,
    VisitStatus,
)
from server.results import Instant, Person, Result, WithDetail
from server.triage import Level, level_rank

# The queue's filter: one status, or ``open``: every one not resolved yet.
StatusFilter = EscalationStatus | Literal["open"]


class Place(Result):
    address: str | None
    # The US state (USPS code) the patient named with the address; None when they did
    # not (see server.emergency_info.KnownLocation).
    state: str | None


class EmergencyContact(Result):
    name: str | None
    phone: str | None


class EscalationSummary(Result):
    """An escalation as the queue lists it."""

    id: int
    patient: Person
    visit_id: int | None
    checkin_id: int | None
    level: Level
    reasons: list[str]
    reason_text: str | None
    source: Source
    status: EscalationStatus
    raised_at: Instant
    raised_by: Person | None
    # Only while it waits for an acknowledgement.
    ack_due_at: Instant | None
    acknowledged_at: Instant | None
    acknowledged_by: Person | None
    assigned_to: Person | None
    started_at: Instant | None
    resolved_at: Instant | None
    resolved_by: Person | None
    disposition: Disposition | None
    resolution_note: str | None
    no_action_reason: str | None
    realerts: int
    armed_at: Instant
    location: Place
    callback_phone: str | None
    emergency_contact: EmergencyContact
    # When the patient confirmed the location and callback above, and where they
    # come from: "checkin" (confirmed within the last hours), "last_checkin" (an
    # earlier confirmation, on file), "profile" (never confirmed), or null.
    emergency_confirmed_at: Instant | None
    emergency_source: str | None
    # A visit of the patient in progress or waiting: where a warm handoff can happen.
    live_visit_id: int | None


class TriggeringAnswers(Result):
    """Check-in answers as they were saved when they triggered (a version of them), or
    for escalations raised before versions were kept, the check-in as it stands."""

    at: Instant
    kind: str
    version: int | None
    level: Level | None
    reasons: list[str] | None
    scores: dict[str, JsonValue] | None
    responses: JsonValue


class Trigger(Result):
    """What raised, re-armed or added to the escalation."""

    id: int
    at: Instant
    source: Source
    level: Level
    reasons: list[str]
    effect: TriggerEffect
    visit_id: int | None
    checkin_id: int | None
    text: str | None
    actor: Person | None
    answers: TriggeringAnswers | None


class TimelineEvent(WithDetail):
    """One step of the timeline: who, when, what."""

    id: int
    at: Instant
    kind: EventKind
    actor: Person | None


class LoggedEvent(WithDetail):
    """The answer to logging a step (a contact attempt, a note, a dropped call)."""

    id: int
    escalation_id: int
    kind: EventKind
    at: Instant


class EscalationDetail(EscalationSummary):
    """One escalation with what triggered it and its full timeline."""

    triggering: TriggeringAnswers | None
    triggers: list[Trigger]
    timeline: list[TimelineEvent]


class Stats(Result):
    count: int
    median_minutes: float | None
    p90_minutes: float | None


class LevelMeasures(Result):
    raised: int
    acknowledge: Stats
    resolve: Stats


class ClinicMeasures(Result):
    since: Instant
    until: Instant
    levels: dict[TaskLevel, LevelMeasures]


def _person(user_id: int | None, names: dict[int, str]) -> Person | None:
    return Person(id=user_id, name=names.get(user_id, "")) if user_id else None


def escalation_summary(escalation: Escalation, names: dict[int, str],
                       live_visit_id: int | None) -> EscalationSummary:
    """``names``: the names of the people it refers to, by id."""
    return EscalationSummary(
        id=escalation.id,
        patient=Person(id=escalation.patient_id, name=names.get(escalation.patient_id, "")),
        visit_id=escalation.visit_id,
        checkin_id=escalation.checkin_id,
        level=escalation.level,
        reasons=escalation.reasons,
        reason_text=escalation.reason_text,
        source=escalation.source,
        status=escalation.status,
        raised_at=escalation.raised_at,
        raised_by=_person(escalation.raised_by_id, names),
        ack_due_at=escalation.ack_due_at
        if escalation.status is EscalationStatus.open else None,
        acknowledged_at=escalation.acknowledged_at,
        acknowledged_by=_person(escalation.acknowledged_by_id, names),
        assigned_to=_person(escalation.assigned_to_id, names),
        started_at=escalation.started_at,
        resolved_at=escalation.resolved_at,
        resolved_by=_person(escalation.resolved_by_id, names),
        disposition=escalation.disposition,
        resolution_note=escalation.resolution_note,
        no_action_reason=escalation.no_action_reason,
        realerts=escalation.realerts,
        armed_at=escalation.armed_at or escalation.raised_at,
        location=Place(address=escalation.location_address,
                       state=escalation.location_state),
        callback_phone=escalation.callback_phone,
        emergency_contact=EmergencyContact(name=escalation.emergency_contact_name,
                                           phone=escalation.emergency_contact_phone),
        emergency_confirmed_at=escalation.emergency_confirmed_at,
        emergency_source=escalation.emergency_source,
        live_visit_id=live_visit_id,
    )


async def _names(session: AsyncSession, escalations: list[Escalation],
                 extra: set[int] | None = None) -> dict[int, str]:
    ids: set[int] = set(extra or ())
    for e in escalations:
        ids |= {i for i in (e.patient_id, e.raised_by_id, e.acknowledged_by_id,
                            e.assigned_to_id, e.resolved_by_id) if i}
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
    return {row[0]: row[1] for row in rows}


def queue_order(escalation: Escalation) -> tuple[int, float]:
    """Highest level first, then the nearest deadline (none last)."""
    due = escalation.ack_due_at.timestamp() if escalation.ack_due_at and \
        escalation.status is EscalationStatus.open else float("inf")
    return (-level_rank(escalation.level), due)


async def list_escalations(session: AsyncSession, actor: Actor, *,
                           status: StatusFilter | None,
                           now: datetime | None = None) -> list[EscalationSummary]:
    """The escalations of the actor's care teams, and while they are on call every
    team's open ones (CLINICAL.md invariant 5); ``open`` means not yet resolved."""
    require_role(actor, Role.prescriber, Role.coordinator)
    query = select(Escalation)
    team = select(CareTeamMember.patient_id).where(CareTeamMember.member_id == actor.user_id)
    mine = Escalation.patient_id.in_(team)
    if await is_on_call(session, actor.user_id, now):
        query = query.where(or_(mine, Escalation.status != EscalationStatus.resolved))
    else:
        query = query.where(mine)
    if status == "open":
        query = query.where(Escalation.status != EscalationStatus.resolved)
    elif status is not None:
        query = query.where(Escalation.status == status)
    found = list((await session.scalars(query.order_by(Escalation.raised_at.desc())
                                        .limit(500))).all())
    found.sort(key=queue_order)
    names = await _names(session, found)
    audit.record_reads(session, actor, "escalation", [(e.id, e.patient_id) for e in found])
    live = await _live_visits(session, [e.patient_id for e in found])
    return [escalation_summary(e, names, live.get(e.patient_id)) for e in found]


async def patient_open_escalations(session: AsyncSession, actor: Actor, patient_id: int,
                                   *, now: datetime | None = None,
                                   ) -> list[EscalationSummary]:
    """A patient's escalations that are not resolved (at most one, safety invariant 3),
    as ``list_escalations`` answers them: in three queries whatever their number, each
    read audited, without the detail's timeline and triggers."""
    await access_patient_escalations(session, actor, patient_id, now=now)
    found = list((await session.scalars(select(Escalation).where(
        Escalation.patient_id == patient_id,
        Escalation.status != EscalationStatus.resolved))).all())
    found.sort(key=queue_order)
    names = await _names(session, found)
    audit.record_reads(session, actor, "escalation", [(e.id, e.patient_id) for e in found])
    live = await _live_visits(session, [patient_id]) if found else {}
    return [escalation_summary(e, names, live.get(e.patient_id)) for e in found]


async def _live_visits(session: AsyncSession, patient_ids: list[int]) -> dict[int, int]:
    """Visits in progress or waiting, by patient: where a warm handoff can happen."""
    if not patient_ids:
        return {}
    rows = await session.execute(select(Visit.patient_id, Visit.id).where(
        Visit.patient_id.in_(patient_ids),
        Visit.status.in_((VisitStatus.in_progress, VisitStatus.waiting))))
    return {row[0]: row[1] for row in rows}


def _answers(version: CheckInVersion | None) -> TriggeringAnswers | None:
    """The saved answers behind a trigger, as they were when they triggered."""
    if version is None:
        return None
    responses = version.data.get("responses") if isinstance(version.data, dict) else None
    return TriggeringAnswers(at=version.at, kind=version.kind, version=version.seq,
                             level=version.level, reasons=version.reasons,
                             scores=version.scores, responses=responses)


def _triggering(escalation: Escalation, triggers: list[EscalationTrigger],
                versions: dict[int, CheckInVersion],
                checkin: CheckIn | None) -> TriggeringAnswers | None:
    """The check-in answers that put the escalation at its level: the latest check-in
    trigger at that level (else the latest one at all), as saved then, never the
    patient's later answers (invariant 1)."""
    with_answers = [t for t in triggers if t.checkin_version_id in versions]
    at_level = [t for t in with_answers if t.level == escalation.level] or with_answers
    if at_level:
        version = versions[at_level[-1].checkin_version_id]  # type: ignore[index]
        answers = _answers(version)
        assert answers is not None
        return answers
    if checkin is None:
        return None
    # Escalations raised before versions were kept: the check-in as it stands.
    return TriggeringAnswers(at=checkin.updated_at, kind=checkin.status.value, version=None,
                             level=checkin.level, reasons=checkin.reasons,
                             scores=checkin.scores,
                             responses=checkin.data.get("responses"))


async def escalation_detail(session: AsyncSession, actor: Actor, escalation_id: int, *,
                            now: datetime | None = None) -> EscalationDetail:
    """One escalation as the actor may read it (access checked, the read audited)."""
    escalation = await access_escalation(session, actor, escalation_id, now=now)
    events = list((await session.scalars(
        select(EscalationEvent).where(EscalationEvent.escalation_id == escalation.id)
        .order_by(EscalationEvent.at, EscalationEvent.id))).all())
    triggers = list((await session.scalars(
        select(EscalationTrigger).where(EscalationTrigger.escalation_id == escalation.id)
        .order_by(EscalationTrigger.at, EscalationTrigger.id))).all())
    version_ids = [t.checkin_version_id for t in triggers if t.checkin_version_id]
    versions = {v.id: v for v in (await session.scalars(select(CheckInVersion).where(
        CheckInVersion.id.in_(version_ids)))).all()} if version_ids else {}
    names = await _names(session, [escalation],
                         {e.actor_id for e in events if e.actor_id}
                         | {t.actor_id for t in triggers if t.actor_id})
    checkin = await session.get(CheckIn, escalation.checkin_id) if escalation.checkin_id \
        else None
    audit.record(session, actor, "read", "escalation", escalation.id,
                 patient_id=escalation.patient_id)
    live = await _live_visits(session, [escalation.patient_id])
    summary = escalation_summary(escalation, names, live.get(escalation.patient_id))
    return EscalationDetail(
        **dict(summary),  # its fields, the summary's already validated values
        triggering=_triggering(escalation, triggers, versions, checkin),
        triggers=[Trigger(
            id=t.id, at=t.at, source=t.source, level=t.level, reasons=t.reasons,
            effect=t.effect, visit_id=t.visit_id, checkin_id=t.checkin_id, text=t.text,
            actor=_person(t.actor_id, names),
            answers=_answers(versions.get(t.checkin_version_id)
                             if t.checkin_version_id else None),
        ) for t in triggers],
        timeline=[TimelineEvent(id=e.id, at=e.at, kind=e.kind,
                                actor=_person(e.actor_id, names), detail=e.detail)
                  for e in events],
    )


def logged_event(event: EscalationEvent) -> LoggedEvent:
    """What the API answers when a step is logged (``lifecycle.log_event``,
    ``lifecycle.report_call_dropped``)."""
    return LoggedEvent(id=event.id, escalation_id=event.escalation_id, kind=event.kind,
                       at=event.at, detail=event.detail)


def _stats(values: list[float]) -> Stats:
    if not values:
        return Stats(count=0, median_minutes=None, p90_minutes=None)
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank
    return Stats(count=len(values), median_minutes=round(statistics.median(ordered), 1),
                 p90_minutes=round(p90, 1))


async def clinic_measures(session: AsyncSession, actor: Actor, *, since: datetime,
                          until: datetime) -> ClinicMeasures:
    """Time to acknowledge and to resolve per level over a period (care teams only)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    team = select(CareTeamMember.patient_id).where(CareTeamMember.member_id == actor.user_id)
    rows = (await session.scalars(select(Escalation).where(
        Escalation.patient_id.in_(team), Escalation.raised_at >= since,
        Escalation.raised_at < until))).all()
    out: dict[TaskLevel, LevelMeasures] = {}
    for level in TASK_LEVELS:
        of_level = [e for e in rows if e.level == level]
        ack = [(e.acknowledged_at - e.raised_at).total_seconds() / 60
               for e in of_level if e.acknowledged_at]
        res = [(e.resolved_at - e.raised_at).total_seconds() / 60
               for e in of_level if e.resolved_at]
        out[level] = LevelMeasures(raised=len(of_level), acknowledge=_stats(ack),
                                   resolve=_stats(res))
    return ClinicMeasures(since=since, until=until, levels=out)
