"""Named people for tests, created through the real domain functions."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.accounts import add_to_care_team, create_user
from server.actors import Actor
from server.models import Role, User, Visit, VisitKind, VisitStatus
from server.passwords import hash_password
from server.services import Services

PASSWORD = "correct horse battery"


@functools.cache
def password_hash() -> str:
    # argon2 is slow on purpose; hash the shared test password once per run, not seven
    # times per test.
    return hash_password(PASSWORD)


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    name: str
    role: Role


@dataclass(frozen=True)
class Clinic:
    admin: Person
    prescriber: Person            # on the patient's care team
    other_prescriber: Person      # on nobody's care team
    coordinator: Person           # on the patient's care team
    other_coordinator: Person     # on patient2's care team only
    patient: Person
    patient2: Person
    visit_id: int                 # patient's visit with prescriber, in an hour
    visit2_id: int                # patient2's visit with prescriber


def _person(user: User) -> Person:
    return Person(user.id, user.email, user.name, user.role)


def clear_of_midnight(services: Services) -> None:
    """Tests find the clinic's visit, an hour away, on the pages of "today" in the clinic's
    zone. Within three hours of the clinic's midnight that hour falls on tomorrow, so the
    app's clock is moved to just after midnight first (a run at 23:30 in New York failed
    six such tests)."""
    zone = ZoneInfo(services.settings.clinic_timezone)
    local = services.clock.now().astimezone(zone)
    if (local + timedelta(hours=3)).date() != local.date():
        after_midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 5),
                                          tzinfo=zone)
        services.clock.advance(after_midnight - local)


async def build_clinic(services: Services) -> Clinic:
    clear_of_midnight(services)
    now = services.clock.now()
    people: dict[str, User] = {}
    async with services.transaction() as session:
        for key, role in [("admin", Role.admin), ("prescriber", Role.prescriber),
                          ("other_prescriber", Role.prescriber),
                          ("coordinator", Role.coordinator),
                          ("other_coordinator", Role.coordinator),
                          ("patient", Role.patient), ("patient2", Role.patient)]:
            people[key] = await create_user(
                session, None, email=f"{key.replace('_', '-')}@clinic.test",
                name=key.replace("_", " ").title(), role=role, password=None, now=now)
            people[key].password_hash = password_hash()
        admin = Actor.of(people["admin"])
        for patient, members in [("patient", ["prescriber", "coordinator"]),
                                 ("patient2", ["prescriber", "other_coordinator"])]:
            for member in members:
                await add_to_care_team(session, admin, patient_id=people[patient].id,
                                       member_id=people[member].id, now=now)
        visit_ids = []
        for patient in ("patient", "patient2"):
            visit = Visit(patient_id=people[patient].id, prescriber_id=people["prescriber"].id,
                          kind=VisitKind.follow_up, scheduled_at=now + timedelta(hours=1),
                          duration_minutes=15, status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            visit_ids.append(visit.id)
    return Clinic(**{k: _person(v) for k, v in people.items()},  # type: ignore[arg-type]
                  visit_id=visit_ids[0], visit2_id=visit_ids[1])


async def add_visit(services: Services, patient_id: int, prescriber_id: int,
                    at: timedelta = timedelta(hours=1),
                    status: VisitStatus = VisitStatus.scheduled) -> int:
    """Another visit, ``at`` from the app's now: a second visit of one patient."""
    async with services.transaction() as session:
        now = services.clock.now()
        visit = Visit(patient_id=patient_id, prescriber_id=prescriber_id,
                      kind=VisitKind.follow_up, scheduled_at=now + at, duration_minutes=15,
                      status=status, created_at=now)
        session.add(visit)
        await session.flush()
        return visit.id


def in_an_hour(now: datetime) -> str:
    return (now + timedelta(hours=1)).isoformat()
