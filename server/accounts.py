"""Accounts, care teams and break-glass grants: what admins manage."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient, access_user, require_full_session, require_role
from server.actors import Actor
from server.auth import normalise_email
from server.errors import Conflict, NotFound, ValidationFailed
from server.models import BreakGlassGrant, CareTeamMember, PatientProfile, Role, User
from server.passwords import hash_password, password_problem, verify_password
from server.results import Result
from server.timezones import DEFAULT_ZONE, check_zone


class Account(Result):
    """A user account as the admin API and pages show it."""

    id: int
    email: str
    name: str
    role: Role
    is_active: bool

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(id=user.id, email=user.email, name=user.name, role=user.role,
                   is_active=user.is_active)


def _check_email(email: str) -> str:
    email = normalise_email(email)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254 or " " in email:
        raise ValidationFailed("Enter a valid email address.", field="email")
    return email


async def create_user(
    session: AsyncSession,
    actor: Actor | None,
    *,
    email: str,
    name: str,
    role: Role,
    password: str | None,
    now: datetime,
    date_of_birth: date | None = None,
    phone: str | None = None,
    timezone: str | None = None,
) -> User:
    """Create an account. ``actor`` None means the command line (an operator)."""
    if actor is not None:
        require_role(actor, Role.admin)
    email = _check_email(email)
    if not name.strip():
        raise ValidationFailed("Enter a name.", field="name")
    if password is not None and (problem := password_problem(password)):
        raise ValidationFailed(f"The password {problem}.", field="password")
    if timezone is not None:
        if role is not Role.patient:
            raise ValidationFailed("Only a patient has a time zone of their own; staff "
                                   "read the clinic's.", field="timezone")
        check_zone(timezone)
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict("An account with this email already exists.", field="email")
    user = User(email=email, name=name.strip(), role=role, created_at=now,
                password_hash=hash_password(password) if password else None)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("An account with this email already exists.", field="email") from None
    if role is Role.patient:
        session.add(PatientProfile(user_id=user.id, date_of_birth=date_of_birth, phone=phone,
                                   timezone=timezone or DEFAULT_ZONE))
    audit.record(session, actor, "create", "user", user.id,
                 patient_id=user.id if role is Role.patient else None, role=role.value)
    return user


async def list_users(session: AsyncSession, actor: Actor) -> list[Account]:
    require_role(actor, Role.admin)
    users = await session.scalars(select(User).order_by(User.role, User.name))
    return [Account.of(user) for user in users]


async def set_timezone(session: AsyncSession, actor: Actor, user_id: int,
                       zone: str) -> Account:
    """Set the time zone a patient reads their visit times in (they moved, or travel)."""
    require_role(actor, Role.admin)
    user = await access_user(session, actor, user_id)
    profile = await session.get(PatientProfile, user.id) if user.role is Role.patient else None
    if profile is None:
        raise ValidationFailed("Only a patient has a time zone of their own; staff read the "
                               "clinic's.", field="timezone")
    profile.timezone = check_zone(zone)
    audit.record(session, actor, "set_timezone", "user", user.id, patient_id=user.id)
    return Account.of(user)


async def set_own_timezone(session: AsyncSession, actor: Actor, zone: str) -> str:
    """A patient sets the zone they read their times in (they moved, or travel). Not from
    a join-link session: a forwarded link must not move someone's visit times."""
    require_role(actor, Role.patient)
    require_full_session(actor)
    profile = await session.get(PatientProfile, actor.user_id)
    if profile is None:  # a patient account always has one (create_user)
        raise NotFound("There is no profile for this account.", field="timezone")
    profile.timezone = check_zone(zone)
    audit.record(session, actor, "set_timezone", "user", actor.user_id, patient_id=actor.user_id)
    return profile.timezone


async def set_active(session: AsyncSession, actor: Actor, user_id: int,
                     active: bool) -> Account:
    require_role(actor, Role.admin)
    user = await access_user(session, actor, user_id)
    if user.id == actor.user_id and not active:
        raise Conflict("You cannot deactivate your own account.", field="is_active")
    user.is_active = active
    audit.record(session, actor, "activate" if active else "deactivate", "user", user.id)
    return Account.of(user)


async def change_password(
    session: AsyncSession, actor: Actor, *, current: str | None, new: str
) -> None:
    """Set one's own password. A join-link session may set the first one only."""
    user = await access_user(session, actor, actor.user_id)
    if user.password_hash is not None:
        require_full_session(actor)
        if not current or not verify_password(user.password_hash, current):
            raise ValidationFailed("The current password is not right.", field="current_password")
    if problem := password_problem(new):
        raise ValidationFailed(f"The new password {problem}.", field="new_password")
    user.password_hash = hash_password(new)
    audit.record(session, actor, "set_password", "user", user.id)


async def care_team_ids(session: AsyncSession, patient_id: int,
                        role: Role | None = None) -> set[int]:
    """The active members of a patient's care team (``role``: only those): who events
    and alerts about the patient go to. A deactivated account receives nothing."""
    query = select(CareTeamMember.member_id).join(
        User, User.id == CareTeamMember.member_id).where(
        CareTeamMember.patient_id == patient_id, User.is_active.is_(True))
    if role is not None:
        query = query.where(CareTeamMember.role == role)
    return set((await session.scalars(query)).all())


async def care_team(session: AsyncSession, actor: Actor, patient_id: int) -> list[Account]:
    """The members of a patient's care team (admins, and the team itself)."""
    if actor.role is not Role.admin:
        await access_patient(session, actor, patient_id)
    else:
        patient = await session.get(User, patient_id)
        if patient is None or patient.role is not Role.patient:
            raise NotFound(f"There is no patient {patient_id}.", field="patient_id")
    rows = await session.scalars(
        select(User).join(CareTeamMember, CareTeamMember.member_id == User.id)
        .where(CareTeamMember.patient_id == patient_id).order_by(User.role, User.name)
    )
    audit.record(session, actor, "read", "care_team", patient_id, patient_id=patient_id)
    return [Account.of(user) for user in rows]


async def add_to_care_team(
    session: AsyncSession, actor: Actor, *, patient_id: int, member_id: int, now: datetime
) -> CareTeamMember:
    require_role(actor, Role.admin)
    patient = await session.get(User, patient_id)
    if patient is None or patient.role is not Role.patient:
        raise ValidationFailed("There is no such patient.", field="patient_id")
    member = await session.get(User, member_id)
    if member is None or member.role not in (Role.prescriber, Role.coordinator):
        raise ValidationFailed("Care team members are prescribers or coordinators.",
                               field="member_id")
    existing = await session.scalar(select(CareTeamMember).where(
        CareTeamMember.patient_id == patient_id, CareTeamMember.member_id == member_id))
    if existing is not None:
        return existing
    row = CareTeamMember(patient_id=patient_id, member_id=member_id, role=member.role,
                         added_at=now)
    session.add(row)
    await session.flush()
    audit.record(session, actor, "add_care_team_member", "care_team", patient_id,
                 patient_id=patient_id, member_id=member_id)
    return row


async def remove_from_care_team(
    session: AsyncSession, actor: Actor, *, patient_id: int, member_id: int
) -> None:
    require_role(actor, Role.admin)
    result = await session.execute(delete(CareTeamMember).where(
        CareTeamMember.patient_id == patient_id, CareTeamMember.member_id == member_id))
    if not getattr(result, "rowcount", 0):
        raise NotFound("That person is not on this care team.", field="member_id")
    audit.record(session, actor, "remove_care_team_member", "care_team", patient_id,
                 patient_id=patient_id, member_id=member_id)


async def break_glass(
    session: AsyncSession, actor: Actor, *, patient_id: int, reason: str, now: datetime,
    minutes: int,
) -> BreakGlassGrant:
    """An admin's emergency read access to one patient, justified and time-limited."""
    require_role(actor, Role.admin)
    require_full_session(actor)
    if len(reason.strip()) < 10:
        raise ValidationFailed("Say why you need access (at least 10 characters).",
                               field="reason")
    patient = await session.get(User, patient_id)
    if patient is None or patient.role is not Role.patient:
        raise ValidationFailed("There is no such patient.", field="patient_id")
    grant = BreakGlassGrant(admin_id=actor.user_id, patient_id=patient_id,
                            reason=reason.strip()[:500], created_at=now,
                            expires_at=now + timedelta(minutes=minutes))
    session.add(grant)
    await session.flush()
    # The reason is the admin's own words about why, kept in the grant row; the audit
    # entry points at it.
    audit.record(session, actor, "break_glass", "patient", patient_id, patient_id=patient_id,
                 grant_id=grant.id, expires_at=grant.expires_at.isoformat())
    return grant
