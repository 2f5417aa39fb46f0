"""The on-call rota (CLINICAL.md safety invariant 5, "A backup who can act").

Admins keep a rota of prescribers and coordinators: who, from, until. While one of
their shifts runs, that person sees and acts on every care team's open escalations
(``server.access.access_escalation``) and is the backup an unacknowledged emergency
reaches (``escalation.notify``). Admins are never on it: an alert must go to someone
who can open it.

Choices, each for a reason:
- Shifts are half-open, ``[starts_at, ends_at)``, so one may start where another ends.
- A person's overlapping shifts are refused (409 ``shift_overlap``, naming the shift in
  the way), never merged: a merge would silently change a shift the admin can already
  see on the rota. To extend a shift, add one that starts where it ends.
- Nothing is deleted, so "who was on call at 03:00 last Tuesday" stays answerable.
  Ending a running shift sets its end to now (it did run until then); ending one that
  has not started marks it cancelled (it never ran). The audit log says who did it.
- Every member of staff may read the rota; only admins change it
  (``server.access.access_rota``). ``actor`` None is the command line or the demo
  seeder (an operator at the server), as for ``server.accounts.create_user``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_rota
from server.actors import Actor
from server.auth import normalise_email
from server.errors import Conflict, NotFound, ValidationFailed
from server.events import emit
from server.locks import lock_row
from server.models import OnCallShift, Role, User
from server.results import Instant, Result

# Longer turns are almost always a typo (a month for a day); a standing backup is
# several shifts, each of which an admin saw.
MAX_SHIFT = timedelta(days=31)
# A shift may start a little before the request arrives: the time it took to fill in
# the form starting "now".
START_GRACE = timedelta(minutes=10)
# A start years ahead is a typo (2062 for 2026).
MAX_AHEAD = timedelta(days=366)
LIST_LIMIT = 500

ON_CALL_ROLES = (Role.prescriber, Role.coordinator)


class ShiftStatus(enum.StrEnum):
    upcoming = "upcoming"
    current = "current"
    ended = "ended"
    cancelled = "cancelled"


class StaffMember(Result):
    """A prescriber or coordinator as the rota names them."""

    id: int
    name: str
    # For the command line and the pages; the API's rota does not list addresses.
    email: str = Field(exclude=True)
    role: Role
    is_active: bool


class Shift(Result):
    id: int
    user: StaffMember
    starts_at: Instant
    ends_at: Instant
    status: ShiftStatus        # as of the ``now`` it was read at
    # Whether this shift makes its person on call at that ``now`` (a deactivated account
    # or one whose role changed is not, whatever the rota says).
    on_call: bool
    created_at: Instant
    created_by_id: int | None
    cancelled_at: Instant | None
    cancelled_by_id: int | None


class OnCall(Result):
    """Someone on call now, and until when."""

    user: StaffMember
    shift_id: int
    until: Instant


def _member(user: User) -> StaffMember:
    return StaffMember(id=user.id, name=user.name, email=user.email, role=user.role,
                       is_active=user.is_active)


def _status(row: OnCallShift, now: datetime) -> ShiftStatus:
    if row.cancelled_at is not None:
        return ShiftStatus.cancelled
    if row.ends_at <= now:
        return ShiftStatus.ended
    if row.starts_at > now:
        return ShiftStatus.upcoming
    return ShiftStatus.current


def _shift(row: OnCallShift, user: User, now: datetime) -> Shift:
    status = _status(row, now)
    return Shift(id=row.id, user=_member(user), starts_at=row.starts_at, ends_at=row.ends_at,
                 status=status,
                 on_call=status is ShiftStatus.current and user.is_active and
                 user.role in ON_CALL_ROLES,
                 created_at=row.created_at, created_by_id=row.created_by_id,
                 cancelled_at=row.cancelled_at, cancelled_by_id=row.cancelled_by_id)


def _with_people() -> Select[OnCallShift, User]:
    return select(OnCallShift, User).join(User, User.id == OnCallShift.user_id)


async def list_shifts(
    session: AsyncSession, actor: Actor | None, *, now: datetime, at: datetime | None = None,
    start: datetime | None = None, end: datetime | None = None,
) -> list[Shift]:
    """The rota, earliest first.

    By default the shifts running now and to come. ``at``: the shifts that covered that
    instant (who was on call then). ``start``/``end``: every shift that overlaps
    ``[start, end)``, cancelled ones included, for looking back.
    """
    if actor is not None:
        access_rota(actor)
    query = _with_people()
    if at is not None:
        if start is not None or end is not None:
            raise ValidationFailed("Ask for one instant (at) or a range (from, to), not both.",
                                   field="at")
        query = query.where(OnCallShift.cancelled_at.is_(None), OnCallShift.starts_at <= at,
                            OnCallShift.ends_at > at)
    elif start is not None or end is not None:
        if start is not None and end is not None and end <= start:
            raise ValidationFailed("to must be after from.", field="to")
        if start is not None:
            query = query.where(OnCallShift.ends_at > start)
        if end is not None:
            query = query.where(OnCallShift.starts_at < end)
    else:
        query = query.where(OnCallShift.cancelled_at.is_(None), OnCallShift.ends_at > now)
    rows = await session.execute(
        query.order_by(OnCallShift.starts_at, OnCallShift.id).limit(LIST_LIMIT))
    return [_shift(row, user, now) for row, user in rows]


async def who_is_on_call(session: AsyncSession, now: datetime) -> list[OnCall]:
    """The prescribers and coordinators on call at ``now``, by name: the same rule as
    ``server.access.on_call_now``, which decides what they may open."""
    rows = await session.execute(
        _with_people().where(OnCallShift.cancelled_at.is_(None),
                             OnCallShift.starts_at <= now, OnCallShift.ends_at > now,
                             User.is_active.is_(True), User.role.in_(ON_CALL_ROLES))
        .order_by(User.name, OnCallShift.ends_at.desc()))
    found: dict[int, OnCall] = {}
    for row, user in rows:
        # One line per person: their latest end, should two of their shifts touch now.
        found.setdefault(user.id, OnCall(user=_member(user), shift_id=row.id,
                                         until=row.ends_at))
    return list(found.values())


async def candidates(session: AsyncSession, actor: Actor) -> list[StaffMember]:
    """The people an admin may put on the rota: active prescribers and coordinators."""
    access_rota(actor, manage=True)
    users = await session.scalars(select(User).where(
        User.is_active.is_(True), User.role.in_(ON_CALL_ROLES)).order_by(User.name))
    return [_member(u) for u in users]


async def staff_id_by_email(session: AsyncSession, email: str) -> int:
    """The command line names people by email."""
    user_id = await session.scalar(select(User.id).where(User.email == normalise_email(email)))
    if user_id is None:
        raise ValidationFailed(f"There is no account {email}.", field="email")
    return int(user_id)


async def _recipients(session: AsyncSession, user_id: int) -> set[int]:
    # The admins who keep the rota, and the person whose hours changed.
    admins = await session.scalars(select(User.id).where(User.role == Role.admin,
                                                         User.is_active.is_(True)))
    return {*admins, user_id}


def _check_times(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None:
            raise ValidationFailed(f"{name} must include a UTC offset.", field=name)
    if starts_at < now - START_GRACE:
        raise ValidationFailed("A shift cannot start in the past.", field="starts_at")
    if starts_at > now + MAX_AHEAD:
        raise ValidationFailed("A shift must start within a year.", field="starts_at")
    if ends_at <= starts_at:
        raise ValidationFailed("The shift must end after it starts.", field="ends_at")
    if ends_at <= now:
        raise ValidationFailed("The shift would be over already.", field="ends_at")
    if ends_at - starts_at > MAX_SHIFT:
        raise ValidationFailed(f"A shift lasts at most {MAX_SHIFT.days} days; add another "
                               "one for the time after.", field="ends_at")


async def add_shift(
    session: AsyncSession, actor: Actor | None, *, user_id: int, starts_at: datetime,
    ends_at: datetime, now: datetime,
) -> Shift:
    """Put a prescriber or coordinator on call from ``starts_at`` until ``ends_at``."""
    if actor is not None:
        access_rota(actor, manage=True)
    user = await session.get(User, user_id)
    if user is None:
        raise ValidationFailed(f"There is no user {user_id}.", field="user_id")
    if user.role not in ON_CALL_ROLES:
        # Admins keep the rota but cannot open an escalation: never the backup.
        raise ValidationFailed("Only prescribers and coordinators can be on call.",
                               field="user_id")
    if not user.is_active:
        raise ValidationFailed(f"{user.name}'s account is deactivated.", field="user_id")
    _check_times(starts_at, ends_at, now)
    # Two admins adding shifts for one person at once: the second waits here, then sees
    # the first one's shift in the overlap check.
    await lock_row(session, User, user.id)
    clash = await session.scalar(select(OnCallShift).where(
        OnCallShift.user_id == user.id, OnCallShift.cancelled_at.is_(None),
        OnCallShift.starts_at < ends_at, OnCallShift.ends_at > starts_at)
        .order_by(OnCallShift.starts_at).limit(1))
    if clash is not None:
        raise Conflict(
            f"{user.name} is already on call from {clash.starts_at.isoformat()} until "
            f"{clash.ends_at.isoformat()} (shift {clash.id}). End that shift, or add one "
            "that starts when it ends.",
            code="shift_overlap", field="starts_at", extra={"shift_id": clash.id})
    row = OnCallShift(user_id=user.id, starts_at=starts_at, ends_at=ends_at, created_at=now,
                      created_by_id=actor.user_id if actor else None)
    session.add(row)
    await session.flush()
    shift = _shift(row, user, now)
    audit.record(session, actor, "add_shift", "on_call_shift", row.id, user_id=user.id,
                 starts_at=row.starts_at.isoformat(), ends_at=row.ends_at.isoformat())
    emit(session, "on_call.shift_added", await _recipients(session, user.id),
         shift_id=row.id, user_id=user.id, starts_at=row.starts_at.isoformat(),
         ends_at=row.ends_at.isoformat(), on_call=shift.on_call)
    return shift


async def end_shift(
    session: AsyncSession, actor: Actor | None, shift_id: int, *, now: datetime
) -> Shift:
    """End a running shift now, or cancel one that has not started."""
    if actor is not None:
        access_rota(actor, manage=True)
    row = await session.get(OnCallShift, shift_id)
    if row is None:
        raise NotFound(f"There is no shift {shift_id}.", field="shift_id")
    await lock_row(session, User, row.user_id)
    await session.refresh(row)  # what another request committed while this one waited
    status = _status(row, now)
    if status in (ShiftStatus.ended, ShiftStatus.cancelled):
        raise Conflict(f'Shift {shift_id} is already over (status "{status.value}").',
                       code="shift_over", field="shift_id", extra={"status": status.value})
    planned_end = row.ends_at
    if status is ShiftStatus.upcoming:
        row.cancelled_at = now
        row.cancelled_by_id = actor.user_id if actor else None
        action, kind = "cancel_shift", "on_call.shift_cancelled"
    else:
        row.ends_at = now
        action, kind = "end_shift", "on_call.shift_ended"
    await session.flush()
    user = await session.get(User, row.user_id)
    assert user is not None  # a foreign key
    audit.record(session, actor, action, "on_call_shift", row.id, user_id=row.user_id,
                 planned_ends_at=planned_end.isoformat())
    emit(session, kind, await _recipients(session, row.user_id), shift_id=row.id,
         user_id=row.user_id, starts_at=row.starts_at.isoformat(),
         ends_at=row.ends_at.isoformat())
    return _shift(row, user, now)


async def covering(session: AsyncSession, user_id: int, now: datetime) -> Shift | None:
    """The person's shift that covers ``now``, if any (the demo seeder's question)."""
    found = (await session.execute(_with_people().where(
        OnCallShift.user_id == user_id, OnCallShift.cancelled_at.is_(None),
        OnCallShift.starts_at <= now, OnCallShift.ends_at > now).limit(1))).first()
    return _shift(*found, now) if found else None


async def next_start(session: AsyncSession, user_id: int, after: datetime) -> datetime | None:
    """When the person's next shift starts after ``after``, if they have one."""
    value: datetime | None = await session.scalar(select(func.min(OnCallShift.starts_at)).where(
        OnCallShift.user_id == user_id, OnCallShift.cancelled_at.is_(None),
        OnCallShift.starts_at > after))
    return value



def gaps(shifts: Iterable[Shift], start: datetime,
         end: datetime) -> list[tuple[datetime, datetime]]:
    """The stretches of ``[start, end)`` that no shift of an active person covers: hours
    in which an unacknowledged emergency has no backup beyond the care team."""
    spans = sorted((max(s.starts_at, start), min(s.ends_at, end)) for s in shifts
                   if s.status in (ShiftStatus.current, ShiftStatus.upcoming)
                   and s.user.is_active and s.starts_at < end and s.ends_at > start)
    found: list[tuple[datetime, datetime]] = []
    cursor = start
    for span_start, span_end in spans:
        if span_start > cursor:
            found.append((cursor, span_start))
        cursor = max(cursor, span_end)
    if cursor < end:
        found.append((cursor, end))
    return found
