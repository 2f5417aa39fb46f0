"""Admin API: accounts, care teams and break-glass access, over the real app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.auth import COOKIE_NAME
from server.models import AuditEntry, BreakGlassGrant, CareTeamMember, User
from server.services import Services
from tests.clinic import PASSWORD, Clinic
from tests.conftest import Runner, SignIn

NEW_PASSWORD = "a long enough password"
REASON = "Patient unreachable after a crisis call; care team unavailable overnight."


def login(client: TestClient, email: str, password: str) -> Any:
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    return client.post("/api/v1/session", json={"email": email, "password": password})


def audit_actions(run: Runner, services: Services, actor_id: int) -> list[tuple[str, str]]:
    async def query() -> list[tuple[str, str]]:
        async with services.transaction() as session:
            rows = await session.execute(
                select(AuditEntry.action, AuditEntry.outcome)
                .where(AuditEntry.actor_id == actor_id).order_by(AuditEntry.id))
            return [(action, outcome) for action, outcome in rows]

    return run(query)


# --- accounts ------------------------------------------------------------------------


def test_admin_creates_an_account_that_can_sign_in(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.admin)
    response = client.post("/api/v1/users", json={
        "email": "  New.Prescriber@Clinic.test ", "name": "Dr New", "role": "prescriber",
        "password": NEW_PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "email": "new.prescriber@clinic.test", "name": "Dr New",
                    "role": "prescriber", "is_active": True}
    listed = client.get("/api/v1/users").json()["users"]
    assert body in listed
    assert ("create", "success") in audit_actions(run, services, clinic.admin.id)

    signed_in = login(client, "new.prescriber@clinic.test", NEW_PASSWORD)
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["role"] == "prescriber"


def test_duplicate_email_is_409_on_email(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.admin)
    response = client.post("/api/v1/users", json={
        "email": clinic.patient.email.upper(), "name": "Someone Else", "role": "patient"})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "email"

    async def names() -> list[str]:
        async with services.transaction() as session:
            return list((await session.scalars(
                select(User.name).where(User.email == clinic.patient.email))).all())

    assert run(names) == [clinic.patient.name]


@pytest.mark.parametrize(("body", "field"), [
    ({"password": "short"}, "password"),
    ({"email": "not-an-email"}, "email"),
    ({"name": "   "}, "name"),
    ({"role": "superuser"}, "role"),
])
def test_invalid_accounts_are_422(
    client: TestClient, clinic: Clinic, sign_in: SignIn, body: dict[str, Any], field: str
) -> None:
    sign_in(clinic.admin)
    account = {"email": "fresh@clinic.test", "name": "Fresh", "role": "coordinator",
               "password": NEW_PASSWORD} | body
    response = client.post("/api/v1/users", json=account)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
    assert login(client, "fresh@clinic.test", NEW_PASSWORD).status_code == 401


@pytest.mark.parametrize("who", ["prescriber", "coordinator", "patient"])
def test_only_admins_manage_accounts(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str
) -> None:
    sign_in(getattr(clinic, who))
    assert client.get("/api/v1/users").status_code == 403
    created = client.post("/api/v1/users", json={
        "email": "sneaky@clinic.test", "name": "Sneaky", "role": "admin",
        "password": NEW_PASSWORD})
    assert created.status_code == 403
    deactivated = client.patch(f"/api/v1/users/{clinic.patient2.id}", json={"is_active": False})
    assert deactivated.status_code == 403
    assert login(client, clinic.patient2.email, PASSWORD).status_code == 200


def test_deactivated_user_loses_their_session_and_cannot_sign_in(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert client.get("/api/v1/visits").status_code == 200
    their_cookie = client.cookies.get(COOKIE_NAME)

    sign_in(clinic.admin)
    response = client.patch(f"/api/v1/users/{clinic.prescriber.id}", json={"is_active": False})
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert ("deactivate", "success") in audit_actions(run, services, clinic.admin.id)

    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, their_cookie or "")
    assert client.get("/api/v1/visits").status_code == 401
    assert client.get("/api/v1/session").status_code == 401
    assert login(client, clinic.prescriber.email, PASSWORD).status_code == 401

    sign_in(clinic.admin)
    assert client.patch(f"/api/v1/users/{clinic.prescriber.id}",
                        json={"is_active": True}).status_code == 200
    assert login(client, clinic.prescriber.email, PASSWORD).status_code == 200


def test_admin_cannot_deactivate_themselves(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.admin)
    response = client.patch(f"/api/v1/users/{clinic.admin.id}", json={"is_active": False})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "is_active"
    assert client.get("/api/v1/users").status_code == 200


# --- care teams ----------------------------------------------------------------------


def test_care_team_membership_grants_and_removes_access(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    visit = f"/api/v1/visits/{clinic.visit_id}"
    team = f"/api/v1/patients/{clinic.patient.id}/care-team"
    sign_in(clinic.other_prescriber)
    assert client.get(visit).status_code == 403

    sign_in(clinic.admin)
    added = client.post(team, json={"member_id": clinic.other_prescriber.id})
    assert added.status_code == 201
    assert added.json() == {"id": added.json()["id"], "patient_id": clinic.patient.id,
                            "member_id": clinic.other_prescriber.id, "role": "prescriber"}
    members = client.get(team).json()["members"]
    assert {m["id"] for m in members} == {clinic.prescriber.id, clinic.coordinator.id,
                                          clinic.other_prescriber.id}

    sign_in(clinic.other_prescriber)
    assert client.get(visit).status_code == 200
    assert [v["id"] for v in client.get("/api/v1/visits").json()["visits"]] == \
        [clinic.visit_id]

    sign_in(clinic.admin)
    assert client.delete(f"{team}/{clinic.other_prescriber.id}").status_code == 204
    again = client.delete(f"{team}/{clinic.other_prescriber.id}")
    assert again.status_code == 404
    assert again.json()["error"]["field"] == "member_id"

    sign_in(clinic.other_prescriber)
    assert client.get(visit).status_code == 403
    assert client.get("/api/v1/visits").json() == {"visits": []}

    actions = [a for a, _ in audit_actions(run, services, clinic.admin.id)]
    assert actions.count("add_care_team_member") >= 5  # the clinic's four, and this one
    assert "remove_care_team_member" in actions


def test_removed_prescriber_loses_a_visit_they_were_assigned(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    # clinic.prescriber is the visit's own prescriber: the care team, not the
    # assignment, decides access.
    sign_in(clinic.admin)
    assert client.delete(f"/api/v1/patients/{clinic.patient.id}/care-team/"
                         f"{clinic.prescriber.id}").status_code == 204
    sign_in(clinic.prescriber)
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 403
    assert client.get(f"/api/v1/visits/{clinic.visit2_id}").status_code == 200
    assert [v["id"] for v in client.get("/api/v1/visits").json()["visits"]] == \
        [clinic.visit2_id]


@pytest.mark.parametrize(("member", "field"), [
    ("patient2", "member_id"),
    ("admin", "member_id"),
])
def test_only_staff_join_care_teams(
    client: TestClient, clinic: Clinic, sign_in: SignIn, member: str, field: str
) -> None:
    sign_in(clinic.admin)
    response = client.post(f"/api/v1/patients/{clinic.patient.id}/care-team",
                           json={"member_id": getattr(clinic, member).id})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_the_care_team_of_no_patient_is_not_found(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.admin)
    for patient_id in (88301702, clinic.prescriber.id):  # nobody; not a patient
        response = client.get(f"/api/v1/patients/{patient_id}/care-team")
        assert response.status_code == 404
        assert response.json()["error"]["field"] == "patient_id"


def test_care_team_changes_are_admin_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    team = f"/api/v1/patients/{clinic.patient.id}/care-team"
    assert client.post(team, json={"member_id": clinic.other_prescriber.id}).status_code == 403
    assert client.delete(f"{team}/{clinic.coordinator.id}").status_code == 403

    async def members() -> set[int]:
        async with services.transaction() as session:
            return set((await session.scalars(select(CareTeamMember.member_id).where(
                CareTeamMember.patient_id == clinic.patient.id))).all())

    assert run(members) == {clinic.prescriber.id, clinic.coordinator.id}


# --- break-glass ---------------------------------------------------------------------


def test_break_glass_reads_one_patient_for_a_limited_time(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    visit = f"/api/v1/visits/{clinic.visit_id}"
    sign_in(clinic.admin)
    assert client.get(visit).status_code == 403

    short = client.post("/api/v1/break-glass", json={"patient_id": clinic.patient.id,
                                                     "reason": "because"})
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "reason"

    granted = client.post("/api/v1/break-glass", json={"patient_id": clinic.patient.id,
                                                       "reason": REASON})
    assert granted.status_code == 201
    grant = granted.json()
    assert grant["patient_id"] == clinic.patient.id
    assert isinstance(grant["id"], int)

    read = client.get(visit)
    assert read.status_code == 200
    assert read.json()["patient"]["id"] == clinic.patient.id
    # One patient only, and reading only.
    assert client.get(f"/api/v1/visits/{clinic.visit2_id}").status_code == 403
    assert client.post(f"{visit}/invite").status_code == 403
    assert client.post("/api/v1/visits", json={
        "patient_id": clinic.patient.id, "kind": "follow_up",
        "scheduled_at": (services.clock.now() + timedelta(days=1)).isoformat()},
    ).status_code == 403

    async def grants() -> list[BreakGlassGrant]:
        async with services.transaction() as session:
            return list((await session.scalars(select(BreakGlassGrant))).all())

    [row] = run(grants)
    assert (row.admin_id, row.patient_id, row.reason) == (clinic.admin.id, clinic.patient.id,
                                                           REASON)
    assert row.expires_at - row.created_at == timedelta(
        minutes=services.settings.break_glass_minutes)
    assert ("break_glass", "success") in audit_actions(run, services, clinic.admin.id)

    # The grant runs out on the app's clock (a fresh sign-in: the idle timeout is shorter).
    services.clock.advance(timedelta(minutes=services.settings.break_glass_minutes - 1))
    sign_in(clinic.admin)
    assert client.get(visit).status_code == 200
    services.clock.advance(timedelta(minutes=2))
    sign_in(clinic.admin)
    assert client.get(visit).status_code == 403


@pytest.mark.parametrize("who", ["prescriber", "coordinator", "patient"])
def test_break_glass_is_for_admins_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str
) -> None:
    sign_in(getattr(clinic, who))
    response = client.post("/api/v1/break-glass", json={"patient_id": clinic.patient2.id,
                                                        "reason": REASON})
    assert response.status_code == 403


def test_break_glass_needs_a_patient(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.admin)
    response = client.post("/api/v1/break-glass", json={"patient_id": clinic.prescriber.id,
                                                        "reason": REASON})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "patient_id"


def test_a_deactivated_member_of_the_care_team_is_sent_nothing_about_the_patient(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """One care-team query for every event and alert (server.accounts.care_team_ids):
    a deactivated account is on the team still, and receives nothing."""
    from server.accounts import care_team_ids
    from server.models import Role

    async def team(role: Role | None = None) -> set[int]:
        async with services.transaction() as session:
            return await care_team_ids(session, clinic.patient.id, role)

    assert {clinic.prescriber.id, clinic.coordinator.id} <= run(team)
    assert run(team, Role.coordinator) == {clinic.coordinator.id}
    sign_in(clinic.admin)
    assert client.patch(f"/api/v1/users/{clinic.coordinator.id}",
                        json={"is_active": False}).status_code == 200
    assert clinic.coordinator.id not in run(team)
    assert run(team, Role.coordinator) == set()
    assert clinic.prescriber.id in run(team, Role.prescriber)
