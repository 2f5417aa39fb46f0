"""What the visit room page costs the database, and the session cache that keeps it low:
a cached session never outlives a logout, an expiry or a deactivation, and every read
is still audited (issue 7, docs/performance.md)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, update
from starlette.testclient import TestClient

from server import audit, checkins
from server.actors import Actor
from server.auth import COOKIE_NAME
from server.models import AuditEntry, AuthSession, Role
from server.services import Services
from server.session_cache import SESSION_CACHE_SECONDS
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn


@contextmanager
def statements(services: Services) -> Iterator[list[tuple[str, int]]]:
    """The SQL the app sends while the block runs: (statement, rows of parameters)."""
    seen: list[tuple[str, int]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               executemany: bool) -> None:
        seen.append((" ".join(statement.split()), len(parameters) if executemany else 1))

    engine = services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def reads(run: Runner, services: Services, actor_id: int) -> list[str]:
    async def query() -> list[str]:
        async with services.transaction() as session:
            return list((await session.scalars(
                select(AuditEntry.resource_type).where(
                    AuditEntry.actor_id == actor_id, AuditEntry.action == "read")
                .order_by(AuditEntry.id))).all())

    return run(query)


def room(client: TestClient, visit_id: int) -> int:
    return client.get(f"/visits/{visit_id}", follow_redirects=False).status_code


@pytest.fixture(autouse=True)
def patient_located(client: TestClient, clinic: Clinic, run: Runner,
                    services: Services) -> None:
    """The patient confirmed where they are today, as they must before the room
    (CLINICAL.md invariant 10, tests/test_location_step.py): these tests are about the
    room page itself."""
    patient = Actor(clinic.patient.id, Role.patient, "Patient", clinic.patient.email)

    async def confirm() -> None:
        async with services.transaction() as session:
            await checkins.confirm_emergency_info(
                session, services, patient, clinic.visit_id,
                {"location": {"address": "12 Elm Street, Springfield", "state": "MA"},
                 "callback_phone": "+1 617 555 0100"})

    run(confirm)


# --- what one page costs ------------------------------------------------------------


def test_the_patients_room_page_is_one_read_of_the_visit_and_one_audit_insert(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert room(client, clinic.visit_id) == 200
    with statements(services) as seen:
        assert room(client, clinic.visit_id) == 200
    sql = [s for s, _ in seen]
    # The session came from the cache; the visit, its patient and prescriber and the
    # access answer from one SELECT; the read's audit row from one INSERT.
    assert not [s for s in sql if " FROM sessions" in s]
    assert len([s for s in sql if s.startswith("SELECT visits.id")]) == 1
    assert not [s for s in sql if s.startswith("SELECT users.")]
    assert len([s for s in sql if s.startswith("INSERT INTO audit_log")]) == 1
    assert reads(run, services, clinic.patient.id) == ["visit", "visit"]


def test_the_note_panel_audits_each_read_in_one_insert(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    with statements(services) as seen:
        assert room(client, clinic.visit_id) == 200
    inserts = [rows for s, rows in seen if s.startswith("INSERT INTO audit_log")]
    logged = reads(run, services, clinic.prescriber.id)
    assert sorted(set(logged)) == ["checkin", "lab_monitoring", "measures",
                                   "medication_costs", "medication_trials", "medications",
                                   "note", "pdmp_checks", "visit"]
    assert inserts == [len(logged)]  # one statement carrying every row


def test_the_note_panel_shows_an_open_escalation_in_a_fixed_number_of_queries(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """The safety block summarises the open escalation: the escalation, the names on
    it and a live visit, not the detail's timeline, triggers and answers."""
    sign_in(clinic.prescriber)
    assert room(client, clinic.visit_id) == 200
    with statements(services) as quiet:
        assert room(client, clinic.visit_id) == 200
    raised = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "urgent",
        "reason": "psychosis"})
    assert raised.status_code == 201, raised.text
    with statements(services) as seen:
        page = client.get(f"/visits/{clinic.visit_id}")
    assert page.status_code == 200
    escalation_id = raised.json()["id"]
    assert f'data-open-escalation data-escalation-id="{escalation_id}"' in page.text
    # (Whether the session came from its cache depends on timing, not on the panel.)
    sql = [s for s, _ in seen if " FROM sessions" not in s]
    before = [s for s, _ in quiet if " FROM sessions" not in s]
    assert not [s for s in sql if " FROM escalation_events" in s or
                " FROM escalation_triggers" in s]
    # The names on the escalation and a live visit of the patient: two more reads.
    extra = Counter(sql) - Counter(before)
    assert sum(extra.values()) <= 2, list(extra)
    assert "escalation" in reads(run, services, clinic.prescriber.id)


def sign_medications(client: TestClient, visit_id: int, drugs: list[str]) -> None:
    """Start ``drugs`` by signing the visit's note (the list changes only this way)."""
    rows = [{"action": "start", "drug": drug, "dose": "100", "unit": "mg"} for drug in drugs]
    saved = client.put(f"/api/v1/visits/{visit_id}/note",
                       json={"version": 0, "medication_changes": rows})
    assert saved.status_code == 200, saved.text
    signed = client.post(f"/api/v1/visits/{visit_id}/note/sign",
                         json={"version": saved.json()["version"]})
    assert signed.status_code == 200, signed.text


def test_the_note_panel_reads_medications_and_their_labs_in_a_fixed_number_of_queries(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """The medication list's monitoring (server/labs.py's rules against the results)
    costs the same few queries for one medication or four, with or without results."""
    sign_in(clinic.prescriber)
    first = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    sign_medications(client, first, ["Lithium carbonate"])
    assert room(client, clinic.visit_id) == 200
    with statements(services) as one:
        assert room(client, clinic.visit_id) == 200
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    sign_medications(client, second, ["Clozapine", "Depakote", "Sertraline"])
    for test, value, unit in (("anc", 2000, "/µL"), ("lithium_level", 0.6, "mmol/L"),
                              ("weight", 70, "kg")):
        added = client.post(f"/api/v1/patients/{clinic.patient.id}/labs", json={
            "test": test, "value": value, "unit": unit,
            "taken_on": services.clock.now().astimezone(
                ZoneInfo(services.settings.clinic_timezone)).date().isoformat()})
        assert added.status_code == 201, added.text
    with statements(services) as four:
        page = client.get(f"/visits/{clinic.visit_id}")
    assert page.status_code == 200
    assert page.text.count('data-testid="monitoring-flag"') == 3  # not sertraline
    sql = [s for s, _ in four if " FROM sessions" not in s]
    before = [s for s, _ in one if " FROM sessions" not in s]
    assert len(sql) == len(before), list((Counter(sql) - Counter(before)).elements())


def test_a_failed_transaction_writes_no_audit_rows(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    actor = Actor(clinic.prescriber.id, Role.prescriber, "Prescriber", "p@clinic.test")

    async def fail_then_succeed() -> None:
        async with services.sessions() as session:  # one session, two transactions
            with contextlib.suppress(RuntimeError):
                async with session.begin():
                    audit.record(session, actor, "read", "visit", clinic.visit_id,
                                 patient_id=clinic.patient.id)
                    raise RuntimeError("rolled back")
            async with session.begin():
                audit.record(session, actor, "read", "visit", clinic.visit2_id,
                             patient_id=clinic.patient2.id)

    run(fail_then_succeed)

    async def logged() -> list[str | None]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuditEntry.resource_id).where(
                AuditEntry.actor_id == clinic.prescriber.id))).all())

    # The second transaction does not pick up the entry of the one rolled back.
    assert run(logged) == [str(clinic.visit2_id)]


def test_the_checkin_writes_its_audit_rows_in_one_statement(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.patient)
    with statements(services) as seen:
        response = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                               json=checkin_body())
    assert response.status_code == 201, response.text
    assert len([s for s, _ in seen if s.startswith("INSERT INTO audit_log")]) == 1


# --- the session cache never outlives the session ------------------------------------


def test_a_logged_out_session_cannot_load_the_room_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.patient)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    assert room(client, clinic.visit_id) == 200  # now held in the cache
    assert len(services.session_cache) == 1
    response = client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert len(services.session_cache) == 0
    client.cookies.set(COOKIE_NAME, cookie)  # a copy of the old cookie, replayed at once
    assert room(client, clinic.visit_id) == 303
    assert client.get("/api/v1/session").status_code == 401
    assert reads(run, services, clinic.patient.id) == ["visit"]


def test_the_logout_form_drops_the_cached_session_too(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    csrf = sign_in(clinic.prescriber)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    assert room(client, clinic.visit_id) == 200
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.set(COOKIE_NAME, cookie)
    assert room(client, clinic.visit_id) == 303


def test_an_idle_session_ends_although_it_was_cached(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert room(client, clinic.visit_id) == 200
    services.clock.advance(timedelta(minutes=services.settings.patient_idle_minutes,
                                     seconds=1))
    assert room(client, clinic.visit_id) == 303
    assert len(services.session_cache) == 0

    async def ended() -> list[tuple[str | None, int]]:
        async with services.transaction() as session:
            reason = await session.scalar(select(AuthSession.end_reason))
            logouts = (await session.scalars(select(AuditEntry.id).where(
                AuditEntry.action == "logout", AuditEntry.actor_id == clinic.patient.id)
            )).all()
            return [(reason, len(logouts))]

    assert run(ended) == [("idle", 1)]


def test_activity_is_still_recorded_while_the_session_is_cached(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    """A request answered from the cache is activity all the same: a page read every
    few minutes keeps the session alive past the idle timeout."""
    sign_in(clinic.prescriber)
    for _ in range(8):  # 8 x 3 minutes: past the 15-minute staff timeout
        services.clock.advance(timedelta(minutes=3))
        assert room(client, clinic.visit_id) == 200


def test_a_deactivated_account_is_refused_at_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    patient_cookie = client.cookies.get(COOKIE_NAME) or ""
    assert room(client, clinic.visit_id) == 200
    sign_in(clinic.admin)
    response = client.patch(f"/api/v1/users/{clinic.patient.id}", json={"is_active": False})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, patient_cookie)
    assert room(client, clinic.visit_id) == 303


def test_a_load_that_raced_a_logout_is_not_stored(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    """A request that read the session row just before a logout committed must not put
    it back in the cache after the logout dropped it."""
    sign_in(clinic.patient)
    assert room(client, clinic.visit_id) == 200
    cache = services.session_cache
    [key] = list(cache._entries)
    current = cache.get(key, services.clock.now())
    assert current is not None
    read_before_logout = cache.generation
    cache.drop_session(current.session.id)  # what end_session does after its commit
    now = services.clock.now()
    cache.put(key, current, now + timedelta(seconds=30), now, generation=read_before_logout)
    assert len(cache) == 0


def test_a_logout_elsewhere_is_noticed_within_the_cache_lifetime(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """Another instance ends the session in the database only (here: a statement on a
    connection of its own, which this app's listeners do not see). This instance keeps
    answering from its cache for at most SESSION_CACHE_SECONDS."""
    sign_in(clinic.patient)
    assert room(client, clinic.visit_id) == 200

    async def end_elsewhere() -> None:
        async with services.engine.begin() as connection:
            await connection.execute(update(AuthSession).values(
                ended_at=services.clock.now(), end_reason="logout"))

    run(end_elsewhere)
    services.clock.advance(timedelta(seconds=SESSION_CACHE_SECONDS))
    assert room(client, clinic.visit_id) == 303
