"""The audit log: reads are recorded, the log is append-only, admins filter and export it."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from server import audit
from server.actors import Actor
from server.api.admin import CSV_COLUMNS
from server.auth import COOKIE_NAME
from server.models import AuditEntry, Role, User
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import PASSWORD, Clinic
from tests.conftest import Runner, SignIn


def entries(run: Runner, services: Services, **where: Any) -> list[AuditEntry]:
    async def query() -> list[AuditEntry]:
        async with services.transaction() as session:
            conditions = [getattr(AuditEntry, k) == v for k, v in where.items()]
            return list((await session.scalars(
                select(AuditEntry).where(*conditions).order_by(AuditEntry.id))).all())

    return run(query)


def count_entries(run: Runner, services: Services) -> int:
    async def query() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    return run(query)


# --- reads are recorded ----------------------------------------------------------------


def test_reading_a_visit_is_audited(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    before = datetime.now(UTC)
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 200
    [entry] = entries(run, services, action="read", resource_type="visit")
    assert entry.actor_id == clinic.prescriber.id
    assert entry.actor_role == "prescriber"
    assert entry.resource_id == str(clinic.visit_id)
    assert entry.patient_id == clinic.patient.id
    assert entry.outcome == "success"
    assert entry.ip == "testclient"  # the TestClient's address
    assert before - timedelta(seconds=1) <= entry.at <= datetime.now(UTC)
    assert entry.at.tzinfo is not None


def test_a_list_records_one_read_per_visit_returned(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert len(client.get("/api/v1/visits").json()["visits"]) == 2
    reads = entries(run, services, action="read", resource_type="visit")
    assert sorted((e.resource_id, e.patient_id) for e in reads) == sorted([
        (str(clinic.visit_id), clinic.patient.id), (str(clinic.visit2_id), clinic.patient2.id)])
    assert {(e.actor_id, e.outcome, e.ip) for e in reads} == \
        {(clinic.prescriber.id, "success", "testclient")}

    sign_in(clinic.other_prescriber)
    assert client.get("/api/v1/visits").json() == {"visits": []}
    assert entries(run, services, action="read", actor_id=clinic.other_prescriber.id) == []


def test_the_patients_home_page_is_audited_too(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.get("/home").status_code == 200
    [entry] = entries(run, services, action="read", actor_id=clinic.patient.id)
    assert (entry.resource_id, entry.patient_id) == (str(clinic.visit_id), clinic.patient.id)


def test_a_page_view_writes_one_read_row_per_record_it_shows(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    # The room: the visit in its header, its note panel and its check-in.
    assert client.get(f"/visits/{clinic.visit_id}").status_code == 200
    reads = [(e.resource_type, e.resource_id)
             for e in entries(run, services, action="read", actor_id=clinic.prescriber.id)]
    assert reads, "the room page audits what it shows"
    assert len(reads) == len(set(reads)), sorted(reads)
    assert ("visit", str(clinic.visit_id)) in reads
    # Read again in another request: audited again.
    assert client.get(f"/visits/{clinic.visit_id}").status_code == 200
    again = [(e.resource_type, e.resource_id)
             for e in entries(run, services, action="read", actor_id=clinic.prescriber.id)]
    assert again.count(("visit", str(clinic.visit_id))) == 2


def test_a_transaction_writes_one_read_row_per_record_and_every_other_entry(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    async def read_twice() -> None:
        async with services.transaction() as session:
            user = await session.get(User, clinic.prescriber.id)
            assert user is not None
            actor = Actor.of(user)
            for _ in range(2):
                audit.record(session, actor, "read", "visit", clinic.visit_id,
                             patient_id=clinic.patient.id)
                audit.record(session, actor, "read", "note", clinic.visit_id,
                             patient_id=clinic.patient.id)
                audit.record(session, actor, "invite", "visit", clinic.visit_id,
                             patient_id=clinic.patient.id)

    run(read_twice)
    rows = [(e.action, e.resource_type)
            for e in entries(run, services, actor_id=clinic.prescriber.id)]
    assert sorted(rows) == sorted([("read", "visit"), ("read", "note"),
                                   ("invite", "visit"), ("invite", "visit")])


def test_a_refused_read_is_audited_as_denied(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.other_prescriber)
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 403
    [entry] = entries(run, services, outcome="denied")
    assert entry.actor_id == clinic.other_prescriber.id
    assert entry.resource_type == "visit"
    assert entry.resource_id == str(clinic.visit_id)
    assert entry.patient_id == clinic.patient.id
    assert entry.ip == "testclient"
    # The refusal is what got recorded, not a read.
    assert entries(run, services, action="read", actor_id=clinic.other_prescriber.id) == []


def test_a_refused_page_is_audited_as_denied(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient2)
    assert client.get(f"/visits/{clinic.visit_id}").status_code == 403
    [entry] = entries(run, services, outcome="denied")
    assert (entry.actor_id, entry.resource_id, entry.patient_id) == (
        clinic.patient2.id, str(clinic.visit_id), clinic.patient.id)


# --- append-only ---------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET outcome = 'success', actor_id = NULL",
    "DELETE FROM audit_log",
    "DELETE FROM audit_log WHERE id = (SELECT MIN(id) FROM audit_log)",
])
def test_the_database_refuses_to_change_the_audit_log(
    client: TestClient, clinic: Clinic, run: Runner, services: Services, statement: str
) -> None:
    before = [(e.id, e.actor_id, e.action, e.outcome) for e in entries(run, services)]
    assert before  # the clinic's accounts and care teams were audited

    async def tamper() -> None:
        async with services.engine.begin() as connection:
            await connection.execute(text(statement))

    with pytest.raises(DBAPIError, match="append-only"):
        run(tamper)
    assert [(e.id, e.actor_id, e.action, e.outcome) for e in entries(run, services)] == before


def test_inserting_still_works(client: TestClient, clinic: Clinic, run: Runner,
                               services: Services) -> None:
    before = count_entries(run, services)

    async def add() -> None:
        async with services.transaction() as session:
            audit.record(session, None, "probe", "test")

    run(add)
    assert count_entries(run, services) == before + 1


# --- admins read and export it -------------------------------------------------------


def _make_some_history(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.prescriber)
    client.get(f"/api/v1/visits/{clinic.visit_id}")
    sign_in(clinic.coordinator)
    client.get(f"/api/v1/visits/{clinic.visit_id}")
    sign_in(clinic.other_prescriber)
    client.get(f"/api/v1/visits/{clinic.visit2_id}")  # denied


def test_admin_filters_the_audit_log(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    _make_some_history(client, clinic, sign_in)
    sign_in(clinic.admin)

    def query(**params: Any) -> list[dict[str, Any]]:
        response = client.get("/api/v1/audit", params=params)
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["entries"]
        found: list[dict[str, Any]] = response.json()["entries"]
        return found

    everything = query()
    assert len(everything) == count_entries(run, services) - 1  # this query's own entry
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert set(everything[0]) == {"id", "at", "actor_id", "actor_role", "action",
                                  "resource_type", "resource_id", "patient_id", "outcome",
                                  "ip", "detail"}

    by_actor = query(actor_id=clinic.coordinator.id)
    assert [(e["action"], e["resource_id"]) for e in by_actor] == \
        [("read", str(clinic.visit_id))]

    by_patient = query(patient_id=clinic.patient2.id, outcome="denied")
    assert [(e["actor_id"], e["resource_id"]) for e in by_patient] == \
        [(clinic.other_prescriber.id, str(clinic.visit2_id))]

    reads = query(action="read", resource_type="visit")
    assert sorted(e["actor_id"] for e in reads) == sorted([clinic.prescriber.id,
                                                           clinic.coordinator.id])
    assert query(action="read", outcome="denied") == []

    # The admin's own look at the log is itself in the log.
    mine = query(actor_id=clinic.admin.id, resource_type="audit_log")
    assert len(mine) == 5
    assert all(e["action"] == "read" for e in mine)


def test_since_and_until_take_any_offset(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner
) -> None:
    sign_in(clinic.prescriber)
    client.get(f"/api/v1/visits/{clinic.visit_id}")
    [first] = entries(run, run.services, action="read")
    sign_in(clinic.coordinator)
    client.get(f"/api/v1/visits/{clinic.visit_id}")

    sign_in(clinic.admin)
    # Just after the first read, said in New York winter time.
    since = (first.at + timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-5)))
    later = client.get("/api/v1/audit", params={"since": since.isoformat(),
                                                "resource_type": "visit"})
    assert [e["actor_id"] for e in later.json()["entries"]] == [clinic.coordinator.id]
    until = client.get("/api/v1/audit", params={"until": since.isoformat(),
                                                "resource_type": "visit"})
    assert [e["actor_id"] for e in until.json()["entries"]] == [clinic.prescriber.id]

    naive = client.get("/api/v1/audit", params={"since": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["error"]["field"] == "since"
    garbage = client.get("/api/v1/audit", params={"actor_id": "me"})
    assert garbage.status_code == 422
    assert garbage.json()["error"]["field"] == "actor_id"


def test_csv_export_has_a_header_and_defuses_formulas(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    hostile = {"=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)"}

    async def add_hostile_entries() -> None:
        # Stand-ins for values an attacker can influence (a resource id, an address).
        async with services.transaction() as session:
            actor = Actor(clinic.patient.id, Role.patient, clinic.patient.name,
                          clinic.patient.email, ip="@SUM(A1)")
            for value in sorted(hostile - {"@SUM(A1)"}):
                audit.record(session, actor, "read", "visit", value,
                             patient_id=clinic.patient.id, note=value)

    run(add_hostile_entries)
    sign_in(clinic.admin)
    response = client.get("/api/v1/audit.csv", params={"patient_id": clinic.patient.id})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == CSV_COLUMNS
    body = rows[1:]
    assert body
    assert all(len(row) == len(CSV_COLUMNS) for row in body)
    # No cell starts with a character a spreadsheet would run as a formula.
    for row in body:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@"), row
    column = {name: index for index, name in enumerate(CSV_COLUMNS)}
    resource_ids = {row[column["resource_id"]] for row in body}
    assert {"'" + value for value in hostile - {"@SUM(A1)"}} <= resource_ids
    assert "'@SUM(A1)" in {row[column["ip"]] for row in body}
    # Only the filtered patient, and the detail column is JSON a program can read back.
    assert {row[column["patient_id"]] for row in body} == {str(clinic.patient.id)}
    details = [json.loads(row[column["detail"]]) for row in body]
    assert {d["note"] for d in details if "note" in d} == hostile - {"@SUM(A1)"}

    exports = entries(run, services, action="export", actor_id=clinic.admin.id)
    assert [(e.resource_type, e.detail["count"]) for e in exports] == [("audit_log", len(body))]


@pytest.mark.parametrize("who", ["prescriber", "coordinator", "patient"])
@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit.csv"])
def test_only_admins_read_the_audit_log(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str, path: str
) -> None:
    sign_in(getattr(clinic, who))
    response = client.get(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "entries" not in response.text


def test_the_audit_log_needs_a_session(client: TestClient, clinic: Clinic) -> None:
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit.csv").status_code == 401


# --- no secrets in the log -----------------------------------------------------------


def test_no_password_or_token_reaches_the_audit_log(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    secrets: list[str] = [PASSWORD, "wrong-password-123"]
    client.post("/api/v1/session", json={"email": clinic.patient.email,
                                         "password": "wrong-password-123"})
    signed_in = client.post("/api/v1/session", json={"email": clinic.patient.email,
                                                     "password": PASSWORD})
    assert signed_in.status_code == 200
    secrets += [signed_in.json()["csrf_token"], client.cookies.get(COOKIE_NAME) or "?"]
    changed = client.put("/api/v1/account/password",
                         headers={"X-CSRF-Token": signed_in.json()["csrf_token"]},
                         json={"current_password": PASSWORD,
                               "new_password": "a brand new password"})
    assert changed.status_code == 204
    secrets.append("a brand new password")

    sign_in(clinic.prescriber)
    invite = client.post(f"/api/v1/visits/{clinic.visit_id}/invite")
    assert invite.status_code == 201

    async def email_body() -> str:
        from server.models import OutboxEmail

        async with services.transaction() as session:
            row = await session.get(OutboxEmail, invite.json()["id"])
            assert row is not None
            return row.body

    match = re.search(r"/visits/(\d+)/join\?t=(\S+)", run(email_body))
    assert match is not None
    token = match.group(2)
    secrets.append(token)
    secrets.append(token.split(".")[-1])  # the signature alone
    client.cookies.clear()
    joined = client.post(f"/visits/{clinic.visit_id}/join", data={"t": token},
                         follow_redirects=False)
    assert joined.status_code == 303
    secrets.append(client.cookies.get(COOKIE_NAME) or "?")

    async def password_hashes() -> list[str]:
        async with services.transaction() as session:
            return [h for h in (await session.scalars(select(User.password_hash))).all() if h]

    secrets += run(password_hashes)

    logged = entries(run, services)
    actions = {e.action for e in logged}
    assert {"login", "set_password", "invite", "join_link"} <= actions
    dumped = json.dumps([audit.audit_record(e).to_json() for e in logged])
    for secret in secrets:
        assert secret not in dumped
