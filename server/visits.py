"""Visits: scheduling, listing and join invitations."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from server import audit, invitations, substance_use
from server.access import (
    access_patient,
    access_visit,
    on_care_team,
    require_full_session,
    require_role,
)
from server.accounts import care_team_ids
from server.actors import SYSTEM, Actor
from server.auth import invalidate_join_links, make_join_token
from server.errors import Conflict, ValidationFailed
from server.events import emit
from server.jobs import Job, claim
from server.locks import lock_row, lock_visit
from server.models import (
    CareTeamMember,
    OutboxEmail,
    PatientProfile,
    Role,
    User,
    Visit,
    VisitKind,
    VisitReminder,
    VisitStatus,
    VisitWait,
)
from server.outbox import queue_email
from server.results import Instant, Person, Result, utc_iso
from server.services import Services
from server.settings import Settings, is_zone_name
from server.timezones import clinic_zone, patient_zone

# Whatever moves a visit into one of these also revokes its join links
# (``invalidate_join_links``, as ``end_visit`` does): a visit that is over needs none.
ENDED = (VisitStatus.completed, VisitStatus.no_show, VisitStatus.cancelled)

log = logging.getLogger("mendwell.visits")

# The longest visit a client may book (the API's and the pages' limit): also how far
# back a conflict's start can be and still overlap.
MAX_DURATION_MINUTES = 240


class VisitRecord(Result):
    """A visit with its patient's and prescriber's names: what the API answers and the
    pages show (``server.models.Visit`` is the stored row)."""

    id: int
    patient: Person
    prescriber: Person
    kind: VisitKind
    scheduled_at: Instant
    duration_minutes: int
    status: VisitStatus
    started_at: Instant | None
    ended_at: Instant | None
    # "Running about N minutes late", as the prescriber last told the patient, and when
    # (``set_running_late``); None when there is no such notice.
    late_minutes: int | None = None
    late_notice_at: Instant | None = None

    @property
    def patient_id(self) -> int:
        return self.patient.id

    @property
    def prescriber_id(self) -> int:
        return self.prescriber.id


class InvitationQueued(Result):
    """The join-link email queued for the visit's patient."""

    id: int  # the outbox email's
    visit_id: int
    to: str
    queued_at: Instant


class JoinLinksRevoked(Result):
    visit_id: int
    revoked_at: Instant
    # The sessions started by the visit's links, signed out.
    sessions_ended: int


def _record(visit: Visit) -> VisitRecord:
    """``visit`` with its patient and prescriber loaded."""
    return VisitRecord(
        id=visit.id,
        patient=Person(id=visit.patient.id, name=visit.patient.name),
        prescriber=Person(id=visit.prescriber.id, name=visit.prescriber.name),
        kind=visit.kind, scheduled_at=visit.scheduled_at,
        duration_minutes=visit.duration_minutes, status=visit.status,
        started_at=visit.started_at, ended_at=visit.ended_at,
        late_minutes=visit.late_minutes, late_notice_at=visit.late_notice_at,
    )


def _with_people() -> tuple[LoaderOption, LoaderOption]:
    return (selectinload(Visit.patient), selectinload(Visit.prescriber))


async def list_visits(
    session: AsyncSession,
    actor: Actor,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    include_ended: bool = True,
) -> list[VisitRecord]:
    """The visits the actor may see, soonest first; each read is audited."""
    query = select(Visit).options(*_with_people()).order_by(Visit.scheduled_at, Visit.id)
    if actor.role is Role.patient:
        query = query.where(Visit.patient_id == actor.user_id)
        if actor.scope_visit_id is not None:
            query = query.where(Visit.id == actor.scope_visit_id)
    elif actor.role in (Role.prescriber, Role.coordinator):
        team = select(CareTeamMember.patient_id).where(CareTeamMember.member_id == actor.user_id)
        query = query.where(Visit.patient_id.in_(team))
    else:
        return []  # admins read clinical records only through break-glass, one at a time
    if start is not None:
        query = query.where(Visit.scheduled_at >= start)
    if end is not None:
        query = query.where(Visit.scheduled_at < end)
    if not include_ended:
        query = query.where(Visit.status.not_in(ENDED))
    visits = list((await session.scalars(query)).all())
    audit.record_reads(session, actor, "visit", [(v.id, v.patient_id) for v in visits])
    return [_record(v) for v in visits]


async def get_visit(
    session: AsyncSession, actor: Actor, visit_id: int, *, now: datetime | None = None
) -> VisitRecord:
    visit = await access_visit(session, actor, visit_id, now=now, with_people=True)
    audit.record(session, actor, "read", "visit", visit.id, patient_id=visit.patient_id)
    return _record(visit)


async def create_visit(
    session: AsyncSession,
    services: Services,
    actor: Actor,
    *,
    patient_id: int,
    prescriber_id: int | None,
    kind: VisitKind,
    scheduled_at: datetime,
    duration_minutes: int | None,
    now: datetime,
    refuse_conflicts: bool = False,
) -> VisitRecord:
    """Book a visit. With ``refuse_conflicts``, a time that overlaps another visit of the
    prescriber is refused (``ScheduleConflict``, listing them) instead of booked: the
    pages ask first and book anyway only when told to."""
    require_role(actor, Role.prescriber, Role.coordinator)
    patient = await session.get(User, patient_id)
    if patient is None or patient.role is not Role.patient:
        raise ValidationFailed("There is no such patient.", field="patient_id")
    # Not on the care team is a refusal (403, audited), not a validation error.
    await access_patient(session, actor, patient_id, now=now)
    if prescriber_id is None:
        if actor.role is not Role.prescriber:
            raise ValidationFailed("Choose the prescriber for this visit.", field="prescriber_id")
        prescriber_id = actor.user_id
    prescriber = await session.get(User, prescriber_id)
    if prescriber is None or prescriber.role is not Role.prescriber or \
            not await on_care_team(session, prescriber_id, patient_id):
        raise ValidationFailed("The prescriber must be on the patient's care team.",
                               field="prescriber_id")
    if scheduled_at < now - timedelta(hours=1):
        raise ValidationFailed("A visit cannot be scheduled in the past.", field="scheduled_at")
    duration = duration_minutes or (60 if kind is VisitKind.intake else 15)
    if refuse_conflicts:
        await _refuse_conflicts(session, actor, prescriber_id, scheduled_at, duration)
    visit = Visit(
        patient_id=patient_id, prescriber_id=prescriber_id, kind=kind,
        scheduled_at=scheduled_at, duration_minutes=duration,
        status=VisitStatus.scheduled, created_at=now, created_by_id=actor.user_id,
    )
    session.add(visit)
    await session.flush()
    await _plan_reminders(session, services, visit, now)
    await substance_use.cancel_outreach(session, patient_id, now)
    audit.record(session, actor, "create", "visit", visit.id, patient_id=patient_id)
    emit(session, "visit.created", await care_team_ids(session, patient_id) | {patient_id},
         visit_id=visit.id)
    return await get_visit_loaded(session, visit.id)


async def get_visit_loaded(session: AsyncSession, visit_id: int) -> VisitRecord:
    """The visit, without an access check or an audit entry: for a caller that has
    checked already (a guest's invitation, the check-in's own access check)."""
    visit = await session.scalar(
        select(Visit).options(*_with_people()).where(Visit.id == visit_id)
    )
    assert visit is not None
    return _record(visit)


async def invite_to_visit(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int
) -> InvitationQueued:
    """Queue the join-link email to the visit's patient."""
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    visit = await access_visit(session, actor, visit_id, write=True)
    if visit.status in ENDED:
        raise Conflict(f'Cannot invite to a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    now = services.clock.now()
    about = await _about(session, services, visit, now)
    # No clinical content: who, when, how to prepare, and the link.
    email = _queue(session, about, invitations.invitation(about, _join_link(services, visit)))
    await session.flush()
    audit.record(session, actor, "invite", "visit", visit.id, patient_id=visit.patient_id,
                 outbox_id=email.id)
    return InvitationQueued(id=email.id, visit_id=visit.id, to=about.patient.email,
                            queued_at=now)


async def revoke_join_links(
    session: AsyncSession, actor: Actor, visit_id: int, *, now: datetime
) -> JoinLinksRevoked:
    """Withdraw every join link sent for the visit and sign out whoever came in by one
    (a link forwarded, or left open on a shared device). A new invitation sends a link
    that works."""
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    visit = await access_visit(session, actor, visit_id, write=True)
    ended = await invalidate_join_links(session, visit, now=now, reason="link_revoked")
    audit.record(session, actor, "revoke_join_links", "visit", visit.id,
                 patient_id=visit.patient_id, at=now, sessions_ended=ended)
    emit(session, "visit.join_links_revoked",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, sessions_ended=ended)
    return JoinLinksRevoked(visit_id=visit.id, revoked_at=now, sessions_ended=ended)


async def _about(session: AsyncSession, services: Services, visit: Visit,
                 now: datetime) -> invitations.About:
    patient = await session.get(User, visit.patient_id)
    prescriber = await session.get(User, visit.prescriber_id)
    assert patient is not None and prescriber is not None
    zone = await patient_zone(session, services.settings, patient.id)
    return invitations.About(services=services, visit=visit, patient=patient,
                             prescriber=prescriber, zone=zone, now=now)


def _join_link(services: Services, visit: Visit) -> str:
    return f"{services.settings.base_url}/visits/{visit.id}/join?" \
           f"t={make_join_token(services, visit)}"


def _queue(session: AsyncSession, about: invitations.About,
           email: invitations.Email) -> OutboxEmail:
    return queue_email(session, to=about.patient.email, kind=email.kind, now=about.now,
                       subject=email.subject, body=email.body, calendar=email.calendar)


# --- reminders -------------------------------------------------------------------------


async def _plan_reminders(session: AsyncSession, services: Services, visit: Visit,
                          now: datetime) -> None:
    """One timer row per MENDWELL_REMINDER_HOURS still ahead of the visit's start. A move
    plans them again for the new time (a reminder already sent for the old one goes
    again, now with the right time); one whose moment has passed is not sent late."""
    await session.execute(delete(VisitReminder).where(VisitReminder.visit_id == visit.id))
    for hours in sorted(set(services.settings.reminder_hours)):
        due = visit.scheduled_at - timedelta(hours=hours)
        if due > now:
            session.add(VisitReminder(visit_id=visit.id, hours=hours, due_at=due))


async def send_reminders(session: AsyncSession, services: Services, *, now: datetime,
                         limit: int = 50) -> list[int]:
    """Queue every reminder that is due, once each (``jobs.claim``: safe on every
    instance); a visit no longer ahead (cancelled, under way) gets none. Returns the
    visits reminded."""
    due = await claim(session, VisitReminder, (
        VisitReminder.sent_at.is_(None), VisitReminder.due_at <= now),
        (VisitReminder.due_at, VisitReminder.id), {"sent_at": now}, limit)
    reminded = []
    for reminder in due:
        visit = await session.get(Visit, reminder.visit_id)
        assert visit is not None
        if visit.status not in CHANGEABLE or visit.scheduled_at <= now:
            continue
        about = await _about(session, services, visit, now)
        _queue(session, about, invitations.reminder(about, _join_link(services, visit)))
        audit.record(session, SYSTEM, "remind", "visit", visit.id,
                     patient_id=visit.patient_id, at=now, hours=reminder.hours)
        reminded.append(visit.id)
    return reminded


async def send_reminders_now(services: Services) -> list[int]:
    """One turn of the reminder job."""
    async with services.transaction() as session:
        return await send_reminders(session, services, now=services.clock.now())


REMINDERS = Job("visit reminders", send_reminders_now,
                lambda settings: settings.reminder_poll_seconds)


# --- moving and calling off a visit --------------------------------------------------

# A visit may be moved or called off until the patient is in the waiting room; after
# that the prescriber ends it (``end_visit``).
CHANGEABLE = (VisitStatus.scheduled, VisitStatus.checked_in)


async def _changeable(session: AsyncSession, actor: Actor, visit_id: int,
                      action: str) -> Visit:
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    visit = await access_visit(session, actor, visit_id, write=True)
    # In a line with every other change to the visit (a double-clicked cancel, a move
    # racing a join), each deciding on what the one before committed.
    await lock_visit(session, visit.id)
    await session.refresh(visit)
    if visit.status not in CHANGEABLE:
        raise Conflict(f'Cannot {action} a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    return visit


async def reschedule_visit(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, *,
    scheduled_at: datetime | None, duration_minutes: int | None, now: datetime,
    refuse_conflicts: bool = False,
) -> VisitRecord:
    """Move a visit (``PATCH /api/v1/visits/{id}``): its start, its length or both. Its
    join links keep working; the patient is emailed the new time with the calendar event
    updated, and their screens and the care team's day update. ``refuse_conflicts`` as
    for ``create_visit``."""
    visit = await _changeable(session, actor, visit_id, "reschedule")
    if scheduled_at is not None and scheduled_at < now - timedelta(hours=1):
        raise ValidationFailed("A visit cannot be moved into the past.", field="scheduled_at")
    if refuse_conflicts:
        await _refuse_conflicts(session, actor, visit.prescriber_id,
                                scheduled_at or visit.scheduled_at,
                                duration_minutes or visit.duration_minutes,
                                exclude_visit_id=visit.id)
    if scheduled_at is not None:
        visit.scheduled_at = scheduled_at
    if duration_minutes is not None:
        visit.duration_minutes = duration_minutes
    visit.calendar_sequence += 1
    await _plan_reminders(session, services, visit, now)
    about = await _about(session, services, visit, now)
    _queue(session, about, invitations.change(about))
    audit.record(session, actor, "reschedule", "visit", visit.id, patient_id=visit.patient_id,
                 at=now, scheduled_at=utc_iso(visit.scheduled_at),
                 duration_minutes=visit.duration_minutes)
    emit(session, "visit.rescheduled",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, scheduled_at=utc_iso(visit.scheduled_at),
         duration_minutes=visit.duration_minutes)
    return await get_visit_loaded(session, visit.id)


async def cancel_visit(session: AsyncSession, services: Services, actor: Actor,
                       visit_id: int, *, now: datetime) -> VisitRecord:
    """Call a visit off (``POST /api/v1/visits/{id}/cancel``): it is over, so its join
    links stop working and whoever came in by one is signed out, as when a visit ends;
    the patient is emailed, and the calendar event cancelled."""
    visit = await _changeable(session, actor, visit_id, "cancel")
    visit.status = VisitStatus.cancelled
    visit.ended_at = now
    visit.calendar_sequence += 1
    await session.execute(delete(VisitReminder).where(VisitReminder.visit_id == visit.id,
                                                      VisitReminder.sent_at.is_(None)))
    about = await _about(session, services, visit, now)
    _queue(session, about, invitations.cancellation(about))
    ended = await invalidate_join_links(session, visit, now=now, reason="visit_cancelled")
    audit.record(session, actor, "cancel", "visit", visit.id, patient_id=visit.patient_id,
                 at=now, sessions_ended=ended)
    emit(session, "visit.ended",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, status=visit.status.value)
    return await get_visit_loaded(session, visit.id)


async def mark_no_show(session: AsyncSession, actor: Actor, visit_id: int, *,
                       now: datetime) -> VisitRecord:
    """The patient did not come (``POST /api/v1/visits/{id}/no-show``): the visit is over
    and its join links stop working. For a patient on MOUD it starts the outreach clock
    (``server.substance_use``: nothing rebooked within 7 days is a step_up)."""
    visit = await _changeable(session, actor, visit_id, "mark as a no-show")
    if now < visit.scheduled_at:
        raise Conflict("A visit that has not started yet cannot be a no-show.",
                       code="visit_not_started", field="status",
                       extra={"scheduled_at": utc_iso(visit.scheduled_at)})
    visit.status = VisitStatus.no_show
    visit.ended_at = now
    await session.execute(delete(VisitReminder).where(VisitReminder.visit_id == visit.id,
                                                      VisitReminder.sent_at.is_(None)))
    ended = await invalidate_join_links(session, visit, now=now, reason="visit_ended")
    outreach = await substance_use.plan_outreach(session, visit, now)
    audit.record(session, actor, "no_show", "visit", visit.id, patient_id=visit.patient_id,
                 at=now, sessions_ended=ended, outreach=outreach is not None)
    emit(session, "visit.ended",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, status=visit.status.value)
    return await get_visit_loaded(session, visit.id)


# --- running late --------------------------------------------------------------------

# A notice about the start is for a visit that has not started yet.
LATE_NOTICE = (VisitStatus.scheduled, VisitStatus.checked_in, VisitStatus.waiting)


async def set_running_late(session: AsyncSession, actor: Actor, visit_id: int, *,
                           minutes: int, now: datetime) -> VisitRecord:
    """Tell the patient the prescriber is running about ``minutes`` late (0 takes the
    notice back) (``POST /api/v1/visits/{id}/running-late``). Kept on the visit, so a
    waiting room opened later still says it; the patient's open page hears it at once
    (``visit.running_late``)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if minutes and visit.status not in LATE_NOTICE:
        raise Conflict(f'Cannot say the visit starts late in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    visit.late_minutes = minutes or None
    visit.late_notice_at = now if minutes else None
    audit.record(session, actor, "running_late", "visit", visit.id,
                 patient_id=visit.patient_id, at=now, minutes=minutes)
    emit(session, "visit.running_late",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, minutes=minutes,
         since=visit.late_notice_at.isoformat() if visit.late_notice_at else None)
    return _record(visit)


# --- conflicts and what can be booked ------------------------------------------------

# The visits that hold the prescriber's time: booked, or under way.
BUSY = (VisitStatus.scheduled, VisitStatus.checked_in, VisitStatus.waiting,
        VisitStatus.in_progress)


class VisitConflict(Result):
    """Another visit of the prescriber overlapping a proposed time. Its patient is named
    only to someone on that patient's care team (a coordinator booking for a prescriber
    sees when the prescriber is busy, not with whom)."""

    id: int
    patient: Person | None
    scheduled_at: Instant
    duration_minutes: int
    status: VisitStatus


class ScheduleConflict(Conflict):
    """A booking or a move refused because the prescriber is busy then (409
    ``schedule_conflict``, the visits in ``conflicts``)."""

    code = "schedule_conflict"

    def __init__(self, conflicts: list[VisitConflict]) -> None:
        count = len(conflicts)
        super().__init__(
            f"The prescriber has {count} other visit{'s' if count > 1 else ''} at that time.",
            field="scheduled_at", extra={"conflicts": [c.to_json() for c in conflicts]})
        self.conflicts = conflicts


async def find_conflicts(
    session: AsyncSession, actor: Actor, *, prescriber_id: int, scheduled_at: datetime,
    duration_minutes: int, exclude_visit_id: int | None = None,
) -> list[VisitConflict]:
    """The prescriber's visits that overlap ``scheduled_at`` for ``duration_minutes``
    (booked or under way; a visit ending as another starts does not overlap), soonest
    first. Reading a named one is audited."""
    require_role(actor, Role.prescriber, Role.coordinator)
    end = scheduled_at + timedelta(minutes=duration_minutes)
    query = (select(Visit).options(selectinload(Visit.patient))
             .where(Visit.prescriber_id == prescriber_id, Visit.status.in_(BUSY),
                    Visit.scheduled_at < end,
                    Visit.scheduled_at > scheduled_at - timedelta(minutes=MAX_DURATION_MINUTES))
             .order_by(Visit.scheduled_at, Visit.id))
    if exclude_visit_id is not None:
        query = query.where(Visit.id != exclude_visit_id)
    # The end is compared here: a start plus a column of minutes is not portable SQL.
    found = [v for v in (await session.scalars(query)).all()
             if v.scheduled_at + timedelta(minutes=v.duration_minutes) > scheduled_at]
    if not found:
        return []
    team = set((await session.scalars(select(CareTeamMember.patient_id).where(
        CareTeamMember.member_id == actor.user_id,
        CareTeamMember.patient_id.in_({v.patient_id for v in found})))).all())
    audit.record_reads(session, actor, "visit",
                       [(v.id, v.patient_id) for v in found if v.patient_id in team])
    return [VisitConflict(
        id=v.id, scheduled_at=v.scheduled_at, duration_minutes=v.duration_minutes,
        status=v.status,
        patient=Person(id=v.patient.id, name=v.patient.name) if v.patient_id in team else None)
        for v in found]


async def _refuse_conflicts(session: AsyncSession, actor: Actor, prescriber_id: int,
                            scheduled_at: datetime, duration_minutes: int, *,
                            exclude_visit_id: int | None = None) -> None:
    # The prescriber's schedule is one line: two bookings of one slot at the same moment
    # (two coordinators, a double click) check one after the other, and the second
    # sees the first (server/locks.py).
    await lock_row(session, User, prescriber_id)
    conflicts = await find_conflicts(
        session, actor, prescriber_id=prescriber_id, scheduled_at=scheduled_at,
        duration_minutes=duration_minutes, exclude_visit_id=exclude_visit_id)
    if conflicts:
        raise ScheduleConflict(conflicts)


class BookablePatient(Result):
    id: int
    name: str
    zone: str  # the zone the patient reads times in


class Bookable(Result):
    """Whom the actor may book a visit for, and with whom."""

    patients: list[BookablePatient]
    prescribers: list[Person]


async def bookable(session: AsyncSession, settings: Settings, actor: Actor) -> Bookable:
    """The active patients of the actor's care teams (each with their zone), and the
    prescribers on those teams: the choices of the scheduling page."""
    require_role(actor, Role.prescriber, Role.coordinator)
    require_full_session(actor)
    team = select(CareTeamMember.patient_id).where(CareTeamMember.member_id == actor.user_id)
    rows = await session.execute(
        select(User.id, User.name, PatientProfile.timezone)
        .outerjoin(PatientProfile, PatientProfile.user_id == User.id)
        .where(User.id.in_(team), User.role == Role.patient, User.is_active.is_(True))
        .order_by(User.name, User.id))
    patients = [BookablePatient(id=pid, name=name,
                                zone=zone if zone and is_zone_name(zone) else clinic_zone(settings))
                for pid, name, zone in rows]
    colleagues = await session.execute(
        select(User.id, User.name).where(
            User.role == Role.prescriber, User.is_active.is_(True),
            User.id.in_(select(CareTeamMember.member_id).where(
                CareTeamMember.patient_id.in_(team))))
        .order_by(User.name, User.id))
    # Names and zones only, of the actor's own patients: one entry, not one per patient.
    audit.record(session, actor, "read", "care_team_patients", None, count=len(patients))
    return Bookable(patients=patients,
                    prescribers=[Person(id=uid, name=name) for uid, name in colleagues])


# --- the waiting room and the video visit (driven by signaling/) --------------------


async def _open_wait(session: AsyncSession, visit_id: int) -> VisitWait | None:
    wait: VisitWait | None = await session.scalar(
        select(VisitWait).where(VisitWait.visit_id == visit_id, VisitWait.ended_at.is_(None))
        .order_by(VisitWait.id.desc()).limit(1))
    return wait


async def _end_wait(session: AsyncSession, visit_id: int, *, now: datetime,
                    reason: str) -> VisitWait | None:
    wait = await _open_wait(session, visit_id)
    if wait is not None:
        wait.ended_at = now
        wait.end_reason = reason
    return wait


async def waiting_since(session: AsyncSession, visit_id: int) -> datetime | None:
    wait = await _open_wait(session, visit_id)
    return wait.started_at if wait is not None else None


def _start_wait(session: AsyncSession, visit: Visit, *, now: datetime,
                alert_after: timedelta, from_status: VisitStatus) -> VisitWait:
    # The alert is about time past the start: arriving early is not waiting too long.
    wait = VisitWait(visit_id=visit.id, started_at=now, from_status=from_status.value,
                     alert_due_at=max(visit.scheduled_at, now) + alert_after)
    session.add(wait)
    return wait


async def mark_waiting(
    session: AsyncSession, actor: Actor, visit_id: int, *, now: datetime,
    alert_after: timedelta,
) -> VisitRecord:
    """The patient is in the waiting room. Idempotent: a reconnect changes nothing."""
    require_role(actor, Role.patient)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if visit.status in ENDED:
        raise Conflict(f'Cannot wait for a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    if visit.status in (VisitStatus.waiting, VisitStatus.in_progress):
        return _record(visit)
    _start_wait(session, visit, now=now, alert_after=alert_after, from_status=visit.status)
    visit.status = VisitStatus.waiting
    audit.record(session, actor, "wait", "visit", visit.id, patient_id=visit.patient_id, at=now)
    emit(session, "visit.waiting", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, patient_id=visit.patient_id, since=now.isoformat())
    return _record(visit)


async def leave_waiting(
    session: AsyncSession, actor: Actor, visit_id: int, *, now: datetime
) -> VisitRecord:
    """The patient closed the waiting room on purpose: the visit is as it was before."""
    require_role(actor, Role.patient)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if visit.status is not VisitStatus.waiting:
        return _record(visit)
    wait = await _end_wait(session, visit.id, now=now, reason="left")
    visit.status = VisitStatus(wait.from_status) if wait else VisitStatus.scheduled
    audit.record(session, actor, "leave_waiting", "visit", visit.id,
                 patient_id=visit.patient_id, at=now)
    emit(session, "visit.left_waiting", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, status=visit.status.value)
    return _record(visit)


async def admit(session: AsyncSession, actor: Actor, visit_id: int, *,
                now: datetime) -> VisitRecord:
    """Let the waiting patient in. Stored, so a reconnect is never admitted twice."""
    require_role(actor, Role.prescriber, Role.coordinator)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if visit.status is VisitStatus.in_progress:
        return _record(visit)
    if visit.status is not VisitStatus.waiting:
        raise Conflict(f'Cannot admit to a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    await _end_wait(session, visit.id, now=now, reason="admitted")
    visit.status = VisitStatus.in_progress
    if visit.started_at is None:
        visit.started_at = now
    audit.record(session, actor, "admit", "visit", visit.id, patient_id=visit.patient_id, at=now)
    emit(session, "visit.admitted",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, by=actor.user_id)
    return _record(visit)


async def return_to_waiting(
    session: AsyncSession, actor: Actor, visit_id: int, *, now: datetime,
    alert_after: timedelta,
) -> VisitRecord:
    """Send the patient out of the visit and back to the waiting room."""
    require_role(actor, Role.prescriber, Role.coordinator)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if visit.status is not VisitStatus.in_progress:
        raise Conflict(f'Cannot remove the patient from a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    wait = _start_wait(session, visit, now=now, alert_after=alert_after,
                       from_status=VisitStatus.in_progress)
    wait.alert_due_at = now + alert_after
    visit.status = VisitStatus.waiting
    audit.record(session, actor, "remove", "visit", visit.id, patient_id=visit.patient_id, at=now)
    emit(session, "visit.waiting", await care_team_ids(session, visit.patient_id),
         visit_id=visit.id, patient_id=visit.patient_id, since=now.isoformat())
    return _record(visit)


async def end_visit(session: AsyncSession, actor: Actor, visit_id: int, *,
                    now: datetime) -> VisitRecord:
    """The prescriber ends the visit for everyone: completed. Its join links stop working
    and the sessions they started end (the visit was all they were for)."""
    require_role(actor, Role.prescriber)
    visit = await access_visit(session, actor, visit_id, write=True, with_people=True)
    if visit.status in ENDED:
        return _record(visit)
    await _end_wait(session, visit.id, now=now, reason="ended")
    visit.status = VisitStatus.completed
    visit.ended_at = now
    ended = await invalidate_join_links(session, visit, now=now, reason="visit_ended")
    audit.record(session, actor, "end", "visit", visit.id, patient_id=visit.patient_id, at=now,
                 join_sessions_ended=ended)
    emit(session, "visit.ended",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, status=visit.status.value)
    return _record(visit)


async def alert_long_waits(session: AsyncSession, *, now: datetime, limit: int = 50) -> list[int]:
    """Alert the coordinators of every patient waiting past their alert time; once each.

    Safe to run on every instance: each wait is claimed once (``jobs.claim``).
    Returns the visits alerted.
    """
    waits = await claim(session, VisitWait, (
        VisitWait.ended_at.is_(None), VisitWait.alerted_at.is_(None),
        VisitWait.alert_due_at <= now), (VisitWait.alert_due_at, VisitWait.id),
        {"alerted_at": now}, limit)
    alerted = []
    for wait in waits:
        visit = await session.get(Visit, wait.visit_id)
        assert visit is not None
        if visit.status is not VisitStatus.waiting:
            continue
        recipients = await care_team_ids(session, visit.patient_id, Role.coordinator)
        minutes = int((now - wait.started_at).total_seconds() // 60)
        audit.record(session, SYSTEM, "alert_waiting", "visit", visit.id,
                     patient_id=visit.patient_id, at=now, minutes=minutes)
        emit(session, "visit.waiting_too_long", recipients, visit_id=visit.id,
             patient_id=visit.patient_id, since=wait.started_at.isoformat(),
             scheduled_at=visit.scheduled_at.isoformat(), minutes=minutes)
        alerted.append(visit.id)
    return alerted


async def alert_long_waits_now(services: Services) -> list[int]:
    """One turn of the long-wait job: alert about every wait past its time."""
    async with services.transaction() as session:
        alerted = await alert_long_waits(session, now=services.clock.now())
    if alerted:
        log.info("long-wait alerts sent for visits %s", alerted)
    return alerted


# Nobody waits unseen: coordinators hear of a patient still waiting past the visit's
# start (MENDWELL_WAITING_ALERT_MINUTES).
LONG_WAITS = Job("long-wait alerts", alert_long_waits_now,
                 lambda settings: settings.waiting_alert_poll_seconds)
