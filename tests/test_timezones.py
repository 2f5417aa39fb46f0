"""Time zones: patients read times in their own zone, staff in the clinic's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from escalation.deadlines import add_business_days
from server.auth import make_join_token
from server.models import AuditEntry, PatientProfile, User, Visit
from server.services import Services
from server.settings import Settings, SettingsError
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn
from web.rendering import moment

PACIFIC = "America/Los_Angeles"
CLINIC = "America/Chicago"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"clinic_timezone": CLINIC}


def scheduled_at(run: Runner, services: Services, visit_id: int) -> datetime:
    async def query() -> datetime:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            return visit.scheduled_at

    return run(query)


def set_zone(run: Runner, services: Services, patient_id: int, zone: str) -> None:
    async def update() -> None:
        async with services.transaction() as session:
            profile = await session.get(PatientProfile, patient_id)
            assert profile is not None
            profile.timezone = zone

    run(update)


def shown(at: datetime, zone: str, fmt: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime(fmt)


def test_the_clinic_zone_must_be_a_real_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("Mars/Olympus", "/etc/localtime", "../zoneinfo", ""):
        monkeypatch.setenv("MENDWELL_CLINIC_TIMEZONE", bad)
        with pytest.raises(SettingsError, match="MENDWELL_CLINIC_TIMEZONE"):
            Settings.from_env()
    monkeypatch.setenv("MENDWELL_CLINIC_TIMEZONE", "Europe/Dublin")
    assert Settings.from_env().clinic_timezone == "Europe/Dublin"


def test_a_patient_reads_times_in_their_own_zone_and_staff_in_the_clinics(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    at = scheduled_at(run, services, clinic.visit_id)

    csrf = sign_in(clinic.patient)
    home = client.get("/home")
    assert home.status_code == 200
    assert shown(at, PACIFIC, "%H:%M") in home.text
    assert "America/Los Angeles" in home.text
    checkin = client.get(f"/visits/{clinic.visit_id}/checkin")
    now = services.clock.now()
    assert moment(at, PACIFIC, now) in checkin.text
    # Where they are first (invariant 10), then the room.
    client.post(f"/visits/{clinic.visit_id}/where", data={
        "csrf_token": csrf, "address": "12 Elm Street, Springfield", "state": "MA",
        "callback_phone": "617 555 0100", "confirm": "yes"})
    room = client.get(f"/visits/{clinic.visit_id}")
    assert moment(at, PACIFIC, now) in room.text

    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}")
    assert moment(at, CLINIC, now) in room.text
    assert moment(at, PACIFIC, now) not in room.text
    day = client.get("/day")
    assert shown(at, CLINIC, "%H:%M") in day.text


def test_the_join_page_shows_the_patients_zone(
    client: TestClient, clinic: Clinic, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)

    async def token() -> tuple[str, datetime]:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            return make_join_token(services, visit), visit.scheduled_at

    value, at = run(token)
    page = client.get(f"/visits/{clinic.visit_id}/join", params={"t": value})
    assert page.status_code == 200
    assert moment(at, PACIFIC, services.clock.now()) in page.text
    assert "Eastern" not in page.text


def test_admins_set_a_patients_zone_and_it_is_checked_and_audited(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    sign_in(clinic.admin)
    created = client.post("/api/v1/users", json={
        "email": "west@clinic.test", "name": "West Patient", "role": "patient",
        "timezone": PACIFIC})
    assert created.status_code == 201, created.text

    bad = client.post("/api/v1/users", json={
        "email": "nowhere@clinic.test", "name": "Nowhere", "role": "patient",
        "timezone": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "timezone"
    staff = client.post("/api/v1/users", json={
        "email": "dr@clinic.test", "name": "Dr Zone", "role": "prescriber",
        "timezone": PACIFIC})
    assert staff.status_code == 422
    assert staff.json()["error"]["field"] == "timezone"

    moved = client.patch(f"/api/v1/users/{clinic.patient.id}", json={"timezone": "America/Denver"})
    assert moved.status_code == 200, moved.text
    assert client.patch(f"/api/v1/users/{clinic.patient.id}",
                        json={"timezone": "../../etc/passwd"}).status_code == 422
    assert client.patch(f"/api/v1/users/{clinic.prescriber.id}",
                        json={"timezone": PACIFIC}).json()["error"]["field"] == "timezone"
    empty = client.patch(f"/api/v1/users/{clinic.patient.id}", json={})
    assert empty.status_code == 422

    async def stored() -> tuple[dict[str, str], list[int | None]]:
        async with services.transaction() as session:
            zones = dict((await session.execute(
                select(PatientProfile.user_id, PatientProfile.timezone))).all())
            audited = list((await session.scalars(
                select(AuditEntry.patient_id).where(AuditEntry.action == "set_timezone",
                                                    AuditEntry.outcome == "success"))).all())
            return {str(k): v for k, v in zones.items()}, audited

    zones, audited = run(stored)
    assert zones[str(created.json()["id"])] == PACIFIC
    assert zones[str(clinic.patient.id)] == "America/Denver"
    assert audited == [clinic.patient.id]

    sign_in(clinic.coordinator)
    assert client.patch(f"/api/v1/users/{clinic.patient.id}",
                        json={"timezone": PACIFIC}).status_code == 403


def test_business_days_are_counted_in_the_clinics_zone() -> None:
    # 23:30 on Friday in Honolulu is already Saturday in UTC: counted in Honolulu, one
    # business day later is Monday 23:30 there; counted in UTC it would be a day earlier.
    friday_night = datetime(2026, 11, 27, 23, 30, tzinfo=ZoneInfo("Pacific/Honolulu"))
    monday = add_business_days(friday_night.astimezone(UTC), 1, "Pacific/Honolulu")
    assert monday.astimezone(ZoneInfo("Pacific/Honolulu")) == datetime(
        2026, 11, 30, 23, 30, tzinfo=ZoneInfo("Pacific/Honolulu"))
    in_utc = add_business_days(friday_night.astimezone(UTC), 1, "UTC")
    assert monday - in_utc == timedelta(days=1)


def test_the_admin_form_sets_a_new_patients_zone_and_explains_a_wrong_one(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    csrf = sign_in(clinic.admin)
    page = client.get("/admin")
    assert 'name="timezone"' in page.text
    form = {"name": "Hana Patient", "email": "hana@clinic.test", "role": "patient",
            "timezone": "Pacific/Honolulu", "csrf_token": csrf}
    assert client.post("/admin/users", data=form, follow_redirects=False).status_code == 303
    wrong = client.post("/admin/users", data={**form, "email": "x@clinic.test",
                                              "timezone": "Hawaii time"},
                        follow_redirects=False)
    assert wrong.status_code == 422
    assert "Enter a time zone by its name" in wrong.text

    async def zone_of(email: str) -> str | None:
        async with services.transaction() as session:
            zone: str | None = await session.scalar(
                select(PatientProfile.timezone).join(User, User.id == PatientProfile.user_id)
                .where(User.email == email))
            return zone

    assert run(zone_of, "hana@clinic.test") == "Pacific/Honolulu"
    assert run(zone_of, "x@clinic.test") is None


def test_a_patient_sets_their_own_zone_but_not_from_a_join_link(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    csrf = sign_in(clinic.patient)
    page = client.get("/account/time-zone")
    assert page.status_code == 200
    assert "America/New York" in page.text
    saved = client.post("/account/time-zone",
                        data={"timezone": "America/Denver", "csrf_token": csrf})
    assert saved.status_code == 200
    assert 'data-testid="time-zone-saved"' in saved.text
    assert "America/Denver" in client.get("/home").text.replace(" ", "_")
    wrong = client.post("/account/time-zone",
                        data={"timezone": "Mountain time", "csrf_token": csrf})
    assert wrong.status_code == 422
    assert "Enter a time zone by its name" in wrong.text

    # A join-link session shows the zone but cannot move the patient's visit times.
    joined = sign_in(clinic.patient, visit_id=clinic.visit_id)
    refused = client.post("/account/time-zone",
                          data={"timezone": "Pacific/Honolulu", "csrf_token": joined})
    assert refused.status_code == 403

    async def state() -> tuple[str | None, int]:
        async with services.transaction() as session:
            zone = await session.scalar(select(PatientProfile.timezone).where(
                PatientProfile.user_id == clinic.patient.id))
            audited = len((await session.scalars(select(AuditEntry.id).where(
                AuditEntry.action == "set_timezone", AuditEntry.outcome == "success",
                AuditEntry.actor_id == clinic.patient.id))).all())
            return zone, audited

    assert run(state) == ("America/Denver", 1)


def test_visit_lists_name_the_day_unless_it_is_today_and_always_the_zone(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    later_id = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                   timedelta(days=3))
    soon, later = (scheduled_at(run, services, v) for v in (clinic.visit_id, later_id))

    sign_in(clinic.patient)
    home = client.get("/home").text
    # Three days away: the day first, then the time in the patient's zone, named.
    assert f'>{shown(later, PACIFIC, "%a %-d %b, %H:%M %Z")}</time>' in home
    assert f'<time datetime="{later.isoformat()}">' in home

    sign_in(clinic.prescriber)
    day = client.get("/day").text
    # Today (the clinic fixture keeps its visit on the clinic's today): no date.
    assert f'>{shown(soon, CLINIC, "%H:%M %Z")}</time>' in day
