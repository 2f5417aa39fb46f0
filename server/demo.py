"""The demo clinic: named accounts, one care team and visits scheduled today."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import JsonValue
from sqlalchemy import select

from server import audit, oncall
from server.accounts import create_user
from server.models import CareTeamMember, PatientProfile, Role, User, Visit, VisitKind, VisitStatus
from server.passwords import hash_password
from server.services import Services

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
    # The demo coordinator's shift on the on-call rota covers the start until this.
    on_call_until: datetime | None = None


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
                # Stored as every number is (E.164); 555-01xx numbers are fictional.
                profile.phone = f"+1413555010{number}"
                profile.date_of_birth = date(1988 + number * 5, 3 + number, 14)
                profile.emergency_contact_name = "Taylor Rivera" if number == 0 else "Morgan Lee"
                profile.emergency_contact_phone = f"+1413555011{number}"
            for member in (prescriber, coordinator):
                exists = await session.scalar(select(CareTeamMember.id).where(
                    CareTeamMember.patient_id == patient.id,
                    CareTeamMember.member_id == member.id))
                if exists is None:
                    session.add(CareTeamMember(patient_id=patient.id, member_id=member.id,
                                               role=member.role, added_at=now))
        on_call_until = await _on_call(session, coordinator, now)
        zone = ZoneInfo(services.settings.clinic_timezone)
        visits_created = await _visits_today(session, now, zone, prescriber, [
            users["patient@demo.test"], users["patient2@demo.test"]])
        await _past_checkins(session, users["patient@demo.test"], now)
        audit.record(session, None, "seed_demo", "clinic", None, created=len(created))
    return DemoResult(password, generated, created, visits_created, on_call_until)


ON_CALL_DAYS = 7


async def _on_call(session: object, coordinator: User, now: datetime) -> datetime:
    """Keep the demo coordinator on call (safety invariant 5: someone must be the backup),
    so that trying the demo shows the rota at work. A shift covering this start is kept;
    otherwise a new one runs from now for ``ON_CALL_DAYS``, or until the coordinator's
    next shift (an admin may have planned one), since shifts of one person never overlap.
    Through ``server.oncall`` like any other shift: audited, announced."""
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    current = await oncall.covering(session, coordinator.id, now)
    if current is not None:
        return current.ends_at
    until = now + timedelta(days=ON_CALL_DAYS)
    following = await oncall.next_start(session, coordinator.id, now)
    if following is not None:
        until = min(until, following)
    shift = await oncall.add_shift(session, None, user_id=coordinator.id, starts_at=now,
                                   ends_at=until, now=now)
    return shift.ends_at


async def _visits_today(session: object, now: datetime, zone: ZoneInfo, prescriber: User,
                        patients: list[User]) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    local = now.astimezone(zone)
    day_start = datetime.combine(local.date(), time.min, tzinfo=zone)
    existing = await session.scalar(select(Visit.id).where(
        Visit.prescriber_id == prescriber.id, Visit.scheduled_at >= day_start,
        Visit.scheduled_at < day_start + timedelta(days=1)))
    if existing is not None:
        return 0
    # The first visit starts soon so a person trying the demo can join it right away;
    # late in the evening both still fall on today's list (the prescriber's day).
    soon = min((now + timedelta(minutes=10)).replace(second=0, microsecond=0),
               day_start + timedelta(days=1) - timedelta(minutes=40))
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


# Completed check-ins for the demo patient's two earlier visits (intake 56 days ago,
# follow-up 28 days ago), improving, so the prescriber sees a trend in `make run`.
# They are written as rows rather than through server.checkins.complete, which only
# accepts a check-in while its visit is open. Scores come from the instrument modules;
# every answer is chosen so that no triage reason fires (PHQ-9 under 20 with item 9 at
# 0, GAD-7 under 15, AUDIT-C under 3, ASRM under 6), so the stored level is "none" —
# tests/test_checkin_pages.py checks that against server.triage.evaluate.
DEMO_CHECKINS = (
    # days before now, PHQ-9 answers, PHQ-9 difficulty, GAD-7 answers, AUDIT-C, ASRM
    (56, [2, 3, 2, 2, 2, 2, 2, 2, 0], 2, [2, 2, 2, 2, 1, 2, 2], [1, 1, 0], [0, 0, 1, 0, 0]),
    (28, [1, 2, 1, 2, 1, 1, 1, 1, 0], 1, [1, 1, 2, 1, 1, 1, 1], None, None),
)


async def _past_checkins(session: object, patient: User, now: datetime) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from server.instruments import asrm, auditc, gad7, phq9
    from server.models import CheckIn, CheckInStatus, CheckInVersion, MeasureResult

    assert isinstance(session, AsyncSession)
    if await session.scalar(select(CheckIn.id).where(CheckIn.patient_id == patient.id)):
        return 0  # the demo already has its history (or the patient checked in)
    profile = await session.get(PatientProfile, patient.id)
    count = 0
    for days, phq9_answers, difficulty, gad7_answers, auditc_answers, asrm_answers in \
            DEMO_CHECKINS:
        visit = await session.scalar(select(Visit).where(
            Visit.patient_id == patient.id, Visit.status == VisitStatus.completed,
            Visit.scheduled_at <= now - timedelta(days=days - 1),
            Visit.scheduled_at >= now - timedelta(days=days + 1)).limit(1))
        if visit is None:
            continue
        at = visit.scheduled_at - timedelta(hours=2)
        responses: dict[str, object] = {
            "phq9": {"answers": phq9_answers, "difficulty": difficulty},
            "gad7": {"answers": gad7_answers}}
        scores: dict[str, dict[str, JsonValue]] = {
            "phq9": phq9.from_answers(tuple(phq9_answers), difficulty).to_json(),
            "gad7": gad7.from_answers(tuple(gad7_answers)).to_json()}
        if auditc_answers and asrm_answers:
            responses["auditc"] = {"answers": auditc_answers}
            responses["asrm"] = {"answers": asrm_answers}
            scores["auditc"] = auditc.from_answers(tuple(auditc_answers), None).to_json()
            scores["asrm"] = asrm.from_answers(tuple(asrm_answers)).to_json()
        address = "221 Maple Avenue, Apt 3, Springfield"
        phone = profile.phone if profile and profile.phone else "+14135550100"
        contact = {"name": "Taylor Rivera", "phone": "+14135550110"}
        emergency = {"location": {"address": address, "state": "MA"}, "callback_phone": phone,
                     "emergency_contact": contact}
        checkin = CheckIn(
            visit_id=visit.id, patient_id=patient.id, status=CheckInStatus.completed,
            started_at=at, updated_at=at, completed_at=at,
            data={"responses": responses, "sex": None, **emergency,
                  "side_effects": [{"effect": "sedation", "severity": "mild"}],
                  "missed_doses": {"days_missed": 1, "reasons": ["forgot"]},
                  "sleep": {"hours": 6.5, "quality": "fair"},
                  "substance_use": {"cravings": 2, "used_since_last_visit": False}},
            scores=scores, level="none", reasons=[],
            location_address=address, location_state="MA", callback_phone=phone,
            emergency_contact_name=contact["name"], emergency_contact_phone=contact["phone"],
            # Confirmed when given, as a completion confirms them (server.checkins): so
            # the next check-in offers them, labelled as not confirmed today.
            location_confirmed_at=at, contact_confirmed_at=at, version=1)
        session.add(checkin)
        await session.flush()
        # Its one saved version, as server.checkins keeps every version it stores.
        session.add(CheckInVersion(checkin_id=checkin.id, seq=1, kind="completion", at=at,
                                   data=checkin.data, scores=scores, level="none",
                                   reasons=[]))
        for name, score in scores.items():
            total = score.get("total")
            session.add(MeasureResult(checkin_id=checkin.id, patient_id=patient.id,
                                      instrument=name, at=at,
                                      total=total if isinstance(total, int) else None,
                                      result=score))
        count += 1
    return count
