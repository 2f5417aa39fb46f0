"""The demo clinic: named accounts, one care team and visits scheduled today."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from server import audit
from server.accounts import create_user
from server.models import CareTeamMember, PatientProfile, Role, User, Visit, VisitKind, VisitStatus
from server.passwords import hash_password
from server.services import Services

CLINIC_TZ = ZoneInfo("America/New_York")

ACCOUNTS = [
    ("admin@demo.test", "Alex Admin", Role.admin),
    ("prescriber@demo.test", "Dr. Priya Shah", Role.prescriber),
    ("coordinator@demo.test", "Casey Coordinator", Role.coordinator),
    ("patient@demo.test", "Jordan Rivera", Role.patient),
    ("patient2@demo.test", "Sam Lee", Role.patient),
]


@dataclass(frozen=True)
class DemoResult:
    password: str
    password_generated: bool
    created: list[str]
    visits_created: int


async def seed(services: Services, *, password: str | None = None) -> DemoResult:
    """Create the demo clinic (idempotent) and make sure it has visits today."""
    generated = not password
    password = password or secrets.token_urlsafe(12)
    now = services.clock.now()
    created: list[str] = []
    async with services.transaction() as session:
        users: dict[str, User] = {}
        for email, name, role in ACCOUNTS:
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                user = await create_user(session, None, email=email, name=name, role=role,
                                         password=password, now=now)
                created.append(email)
            else:
                # Every start prints the password in force, so it must be the one set.
                user.password_hash = hash_password(password)
                user.is_active = True
            users[email] = user
        await session.flush()
        prescriber = users["prescriber@demo.test"]
        coordinator = users["coordinator@demo.test"]
        for number, email in enumerate(("patient@demo.test", "patient2@demo.test")):
            patient = users[email]
            profile = await session.get(PatientProfile, patient.id)
            if profile is not None and profile.phone is None:
                profile.phone = f"+1 555 010 {1000 + number}"
                profile.date_of_birth = date(1988 + number * 5, 3 + number, 14)
                profile.emergency_contact_name = "Taylor Rivera" if number == 0 else "Morgan Lee"
                profile.emergency_contact_phone = f"+1 555 010 {2000 + number}"
            for member in (prescriber, coordinator):
                exists = await session.scalar(select(CareTeamMember.id).where(
                    CareTeamMember.patient_id == patient.id,
                    CareTeamMember.member_id == member.id))
                if exists is None:
                    session.add(CareTeamMember(patient_id=patient.id, member_id=member.id,
                                               role=member.role, added_at=now))
        visits_created = await _visits_today(session, now, prescriber, [
            users["patient@demo.test"], users["patient2@demo.test"]])
        audit.record(session, None, "seed_demo", "clinic", None, created=len(created))
    return DemoResult(password, generated, created, visits_created)


async def _visits_today(session: object, now: datetime, prescriber: User,
                        patients: list[User]) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    local = now.astimezone(CLINIC_TZ)
    day_start = datetime.combine(local.date(), time.min, tzinfo=CLINIC_TZ)
    existing = await session.scalar(select(Visit.id).where(
        Visit.prescriber_id == prescriber.id, Visit.scheduled_at >= day_start,
        Visit.scheduled_at < day_start + timedelta(days=1)))
    if existing is not None:
        return 0
    # The first visit starts soon so a person trying the demo can join it right away.
    soon = (now + timedelta(minutes=10)).replace(second=0, microsecond=0)
    plan = [
        (patients[0], VisitKind.follow_up, soon),
        (patients[1], VisitKind.follow_up, soon + timedelta(minutes=30)),
        (patients[0], VisitKind.follow_up, now - timedelta(days=28)),
        (patients[0], VisitKind.intake, now - timedelta(days=56)),
    ]
    count = 0
    for patient, kind, when in plan:
        past = when < now - timedelta(hours=1)
        session.add(Visit(
            patient_id=patient.id, prescriber_id=prescriber.id, kind=kind, scheduled_at=when,
            duration_minutes=60 if kind is VisitKind.intake else 15,
            status=VisitStatus.completed if past else VisitStatus.scheduled,
            created_at=now, started_at=when if past else None,
            ended_at=when + timedelta(minutes=15) if past else None))
        count += 1
    return count
