"""Who may see what: one access helper per resource, returning it or raising.

Rules:
- a patient sees their own record; a patient signed in through a join link sees that
  one visit only;
- prescribers and coordinators see the patients of the care teams they belong to;
- admins manage accounts and care teams; they read clinical records only through an
  audited break-glass grant that names a reason and expires;
- admins record prescribers' licences and DEA registrations, which gate controlled
  prescribing; a prescriber reads their own and never writes them.

A refusal raises Forbidden carrying an audit entry, which the error handler writes in
its own transaction (the request's transaction is rolled back with the refusal).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from server.actors import Actor
from server.clock import utcnow
from server.errors import Forbidden, NotFound
from server.models import (
    BreakGlassGrant,
    CareTeamMember,
    Escalation,
    OnCallShift,
    Role,
    User,
    Visit,
)


def _denied(actor: Actor, resource_type: str, resource_id: object, patient_id: int | None,
            message: str, *, code: str | None = None) -> Forbidden:
    error = Forbidden(message, code=code)
    error.audit = {
        "action": "access", "resource_type": resource_type, "resource_id": resource_id,
        "patient_id": patient_id,
    }
    return error


def require_role(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"This needs one of the roles: {allowed}.")


def require_full_session(actor: Actor) -> None:
    """Refuse actions that a join-link session (one visit only) may not take."""
    if actor.scope_visit_id is not None:
        raise Forbidden("Signed in for one visit only. Sign in with your password for this.")


# The two rules, each stated once, over a patient id that may be a value or a column
# (``Visit.patient_id``, to decide access in the statement that loads the visit).
def _care_team(member_id: int, patient_id: Any) -> ColumnElement[bool]:
    return exists().where(CareTeamMember.patient_id == patient_id,
                          CareTeamMember.member_id == member_id)


def _break_glass(admin_id: int, patient_id: Any, now: datetime | None) -> ColumnElement[bool]:
    # Pass the app's clock (``services.clock.now()``): it set the grant's expiry, and
    # tests and drills move it forward.
    return exists().where(BreakGlassGrant.admin_id == admin_id,
                          BreakGlassGrant.patient_id == patient_id,
                          BreakGlassGrant.expires_at > (now or utcnow()))


async def on_care_team(session: AsyncSession, member_id: int, patient_id: int) -> bool:
    return bool(await session.scalar(select(_care_team(member_id, patient_id))))


def on_call_now(now: datetime | None) -> ColumnElement[bool]:
    """Whether ``User.id`` has a current turn on the on-call rota (safety invariant 5).
    Only prescribers and coordinators can be on call: admins are never the backup."""
    return exists().where(OnCallShift.user_id == User.id, OnCallShift.cancelled_at.is_(None),
                          OnCallShift.starts_at <= (now or utcnow()),
                          OnCallShift.ends_at > (now or utcnow()))


async def is_on_call(session: AsyncSession, user_id: int, now: datetime | None = None) -> bool:
    return bool(await session.scalar(select(User.id).where(
        User.id == user_id, User.is_active.is_(True),
        User.role.in_((Role.prescriber, Role.coordinator)), on_call_now(now))))


def access_rota(actor: Actor, *, manage: bool = False) -> None:
    """The on-call rota (safety invariant 5). Every member of staff may read it: a
    coordinator must know who their backup is, a prescriber who covers tonight. Only
    admins change it; they keep the rota but are never on it. Patients have no use for
    it (it names staff and their hours)."""
    if manage:
        require_role(actor, Role.admin)
    else:
        require_role(actor, Role.admin, Role.prescriber, Role.coordinator)


async def has_break_glass(
    session: AsyncSession, admin_id: int, patient_id: int, now: datetime | None = None
) -> bool:
    return bool(await session.scalar(select(_break_glass(admin_id, patient_id, now))))


async def can_read_patient(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> bool:
    if actor.role is Role.patient:
        return actor.user_id == patient_id and actor.scope_visit_id is None
    if actor.role in (Role.prescriber, Role.coordinator):
        return await on_care_team(session, actor.user_id, patient_id)
    return await has_break_glass(session, actor.user_id, patient_id, now)


async def access_patient(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> User:
    """The patient's user row, if the actor may read their record."""
    patient = await session.get(User, patient_id)
    if patient is None or patient.role is not Role.patient:
        raise NotFound(f"There is no patient {patient_id}.", field="patient_id")
    if not await can_read_patient(session, actor, patient_id, now=now):
        raise _denied(actor, "patient", patient_id, patient_id,
                      "You are not on this patient's care team.")
    return patient


def _visit_allowed(actor: Actor, visit_id: int, *, write: bool,
                   now: datetime | None) -> ColumnElement[bool]:
    """Whether the actor may see (``write``: change) the visit, as a column of the query
    that loads it, so the visit and the answer come back in one statement."""
    if actor.role is Role.patient:
        if actor.scope_visit_id not in (None, visit_id):
            return false()
        return Visit.patient_id == actor.user_id
    if actor.role in (Role.prescriber, Role.coordinator):
        return _care_team(actor.user_id, Visit.patient_id)
    # Break-glass is for reading in an emergency, never for changing a record.
    if write:
        return false()
    return _break_glass(actor.user_id, Visit.patient_id, now)


async def access_patient_consents(
    session: AsyncSession, actor: Actor, patient_id: int, *, write: bool = False,
    now: datetime | None = None,
) -> User:
    """A patient's Part 2 consents and accounting of disclosures: the patient (signed in
    with their password, not a one-visit link) and their care team; ``write`` (signing,
    recording one signed on paper, revoking) never by break-glass."""
    patient = await session.get(User, patient_id)
    if patient is None or patient.role is not Role.patient:
        raise NotFound(f"There is no patient {patient_id}.", field="patient_id")
    if actor.role is Role.patient:
        allowed = actor.user_id == patient_id and actor.scope_visit_id is None
    elif actor.role in (Role.prescriber, Role.coordinator):
        allowed = await on_care_team(session, actor.user_id, patient_id)
    else:
        allowed = not write and await has_break_glass(session, actor.user_id, patient_id, now)
    if not allowed:
        raise _denied(actor, "consent", None, patient_id,
                      "Only the patient and their care team can see or change consents.")
    return patient


async def access_visit(
    session: AsyncSession, actor: Actor, visit_id: int, *, write: bool = False,
    now: datetime | None = None, with_people: bool = False,
) -> Visit:
    """The visit, if the actor may see it (``write``: may change it).

    ``now`` (the app's clock) decides whether a break-glass grant is still current.
    ``with_people`` loads its patient and prescriber in the same statement.
    """
    query = select(Visit, _visit_allowed(actor, visit_id, write=write, now=now).label("allowed"))
    if with_people:
        query = query.options(joinedload(Visit.patient), joinedload(Visit.prescriber)) \
            .execution_options(populate_existing=True)
    found = (await session.execute(query.where(Visit.id == visit_id))).first()
    if found is None:
        raise NotFound(f"There is no visit {visit_id}.", field="visit_id")
    visit, allowed = found
    if not allowed:
        raise _denied(actor, "visit", visit_id, visit.patient_id,
                      "You do not have access to this visit.")
    return visit


async def access_user(session: AsyncSession, actor: Actor, user_id: int) -> User:
    """A user account, for account management (admins) or one's own account."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user {user_id}.", field="user_id")
    if actor.role is not Role.admin and actor.user_id != user_id:
        raise _denied(actor, "user", user_id, None, "You can only manage your own account.")
    return user


def records_prescriber_credentials(actor: Actor) -> bool:
    """Who adds, changes and removes prescribers' licences and DEA registrations: the
    clinic's admins (its credentialing staff), who verify them against the state boards
    and the DEA. They gate controlled-substance signing (``server.controlled``), so the
    prescriber the gate checks must not be able to write them; a page asks this to
    decide whether to show the form, ``access_prescriber_credentials`` to refuse."""
    return actor.role is Role.admin


async def access_prescriber_credentials(session: AsyncSession, actor: Actor,
                                        prescriber_id: int, *, write: bool) -> User:
    """The prescriber whose licences and DEA registrations the actor reads (admins, and
    the prescriber themself) or, with ``write``, records (admins only)."""
    user = await session.get(User, prescriber_id)
    if user is None:
        raise NotFound(f"There is no prescriber {prescriber_id}.", field="prescriber_id")
    admin = records_prescriber_credentials(actor)
    if not admin and actor.user_id != prescriber_id:
        raise _denied(actor, "prescriber_credentials", prescriber_id, None,
                      "Only the clinic's admins and the prescriber can see a prescriber's "
                      "licences and DEA registrations.")
    if user.role is not Role.prescriber:
        raise NotFound(f"There is no prescriber {prescriber_id}.", field="prescriber_id")
    if write and not admin:
        raise _denied(actor, "prescriber_credentials", prescriber_id, None,
                      "Licences and DEA registrations are recorded by the clinic's admins, "
                      "who verify them. Ask them to add or correct one.",
                      code="credentials_recorded_by_admins")
    return user


async def access_escalation(
    session: AsyncSession, actor: Actor, escalation_id: int, *, write: bool = False,
    now: datetime | None = None,
) -> Escalation:
    """An escalation, for the prescribers and coordinators on the patient's care team
    (admins read it with a break-glass grant; nobody else)."""
    escalation = await session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"There is no escalation {escalation_id}.", field="escalation_id")
    if not await _may_see_escalations(session, actor, escalation.patient_id, write=write,
                                      now=now):
        raise _denied(actor, "escalation", escalation_id, escalation.patient_id,
                      "You are not on this patient's care team.")
    return escalation


async def access_patient_escalations(session: AsyncSession, actor: Actor, patient_id: int,
                                     *, now: datetime | None = None) -> None:
    """Reading a patient's escalations: the same people as ``access_escalation``."""
    if not await _may_see_escalations(session, actor, patient_id, write=False, now=now):
        raise _denied(actor, "escalation", None, patient_id,
                      "You are not on this patient's care team.")


async def _may_see_escalations(session: AsyncSession, actor: Actor, patient_id: int, *,
                               write: bool, now: datetime | None) -> bool:
    if actor.role in (Role.prescriber, Role.coordinator):
        # On-call staff are the backup for every care team: they must be able to act.
        return await on_care_team(session, actor.user_id, patient_id) or \
            await is_on_call(session, actor.user_id, now)
    if actor.role is Role.admin:
        return not write and await has_break_glass(session, actor.user_id, patient_id, now)
    return False


async def access_visit_room(session: AsyncSession, actor: Actor, visit_id: int) -> Visit:
    """The visit, if the actor may join its video room.

    The patient (by a full or this visit's join-link session) and the prescribers and
    coordinators of the care team. Never an admin: break-glass is for reading a record
    in an emergency, not for entering a live consultation. Invited guests have no
    account and are checked by their invitation instead (``server.guests``).
    """
    if actor.role not in (Role.patient, Role.prescriber, Role.coordinator):
        visit = await session.get(Visit, visit_id)
        raise _denied(actor, "visit", visit_id, visit.patient_id if visit else None,
                      "Only the patient and the care team can join this visit.")
    return await access_visit(session, actor, visit_id, write=True)
