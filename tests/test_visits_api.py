"""``/api/v1/visits``: the shapes DESIGN.md fixes, who sees what, and scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, Visit, VisitStatus
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

PERSON_KEYS = {"id", "name"}


def when(services: Services, hours: int = 24) -> str:
    return (services.clock.now() + timedelta(hours=hours)).isoformat()


def new_visit(clinic: Clinic, services: Services, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"patient_id": clinic.patient.id, "kind": "intake",
                            "scheduled_at": when(services)}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def assert_visit_shape(body: dict[str, Any]) -> None:
    assert {"id", "patient", "prescriber", "kind", "scheduled_at", "status"} <= set(body)
    assert isinstance(body["id"], int)
    assert set(body["patient"]) == PERSON_KEYS
    assert set(body["prescriber"]) == PERSON_KEYS
    assert body["kind"] in ("intake", "follow_up")
    assert datetime.fromisoformat(body["scheduled_at"]).utcoffset() is not None


def test_one_visit_has_the_documented_shape(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.prescriber)
    response = client.get(f"/api/v1/visits/{clinic.visit_id}")
    assert response.status_code == 200
    body = response.json()
    assert_visit_shape(body)
    assert body["id"] == clinic.visit_id
    assert body["patient"] == {"id": clinic.patient.id, "name": clinic.patient.name}
    assert body["prescriber"] == {"id": clinic.prescriber.id, "name": clinic.prescriber.name}
    assert body["kind"] == "follow_up"
    assert body["status"] == "scheduled"
    # build_clinic schedules it an hour after its own "now".
    scheduled = datetime.fromisoformat(body["scheduled_at"])
    assert abs(scheduled - (services.clock.now() + timedelta(hours=1))) < timedelta(minutes=5)


@pytest.mark.parametrize(("who", "expected"), [
    ("patient", ["visit_id"]),
    ("patient2", ["visit2_id"]),
    ("prescriber", ["visit_id", "visit2_id"]),
    ("coordinator", ["visit_id"]),
    ("other_coordinator", ["visit2_id"]),
    ("other_prescriber", []),
    # Admins read clinical records only through break-glass, one patient at a time.
    ("admin", []),
])
def test_list_is_one_plural_key_with_only_what_the_caller_may_see(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str, expected: list[str]
) -> None:
    sign_in(getattr(clinic, who))
    response = client.get("/api/v1/visits")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["visits"]
    for visit in body["visits"]:
        assert_visit_shape(visit)
    assert [v["id"] for v in body["visits"]] == [getattr(clinic, key) for key in expected]


def test_list_needs_a_session(client: TestClient, clinic: Clinic) -> None:
    response = client.get("/api/v1/visits")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_list_filters_by_time(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.prescriber)
    later = client.get("/api/v1/visits", params={"from": when(services, hours=2)})
    assert later.json() == {"visits": []}
    soon = client.get("/api/v1/visits", params={"from": services.clock.now().isoformat(),
                                                 "to": when(services, hours=2)})
    assert {v["id"] for v in soon.json()["visits"]} == {clinic.visit_id, clinic.visit2_id}
    naive = client.get("/api/v1/visits", params={"from": "2031-01-01T10:00:00"})
    assert naive.status_code == 422
    assert naive.json()["error"]["field"] == "from"


@pytest.mark.parametrize("who", ["prescriber", "coordinator", "patient"])
def test_one_visit_for_those_who_may_see_it(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str
) -> None:
    sign_in(getattr(clinic, who))
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").status_code == 200


@pytest.mark.parametrize("who", ["patient2", "other_prescriber", "other_coordinator", "admin"])
def test_one_visit_is_403_for_everyone_else(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str
) -> None:
    sign_in(getattr(clinic, who))
    response = client.get(f"/api/v1/visits/{clinic.visit_id}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_unknown_visit_is_404(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.prescriber)
    response = client.get("/api/v1/visits/999999")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "visit_id"


def test_prescriber_on_the_care_team_schedules_a_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    # Two hours east of UTC: stored as the same instant, answered in UTC with its offset.
    local = (services.clock.now() + timedelta(days=2)).astimezone(timezone(timedelta(hours=2)))
    response = client.post("/api/v1/visits", json=new_visit(
        clinic, services, scheduled_at=local.isoformat()))
    assert response.status_code == 201
    body = response.json()
    assert_visit_shape(body)
    assert body["patient"] == {"id": clinic.patient.id, "name": clinic.patient.name}
    assert body["prescriber"] == {"id": clinic.prescriber.id, "name": clinic.prescriber.name}
    assert body["kind"] == "intake"
    assert body["status"] == "scheduled"
    assert body["duration_minutes"] == 60  # intake default
    assert datetime.fromisoformat(body["scheduled_at"]) == local
    assert body["scheduled_at"].endswith("+00:00")  # the same instant, said in UTC
    assert client.get(f"/api/v1/visits/{body['id']}").json() == body

    async def stored() -> tuple[Visit | None, list[str]]:
        async with services.transaction() as session:
            visit = await session.get(Visit, body["id"])
            actions = (await session.scalars(select(AuditEntry.action).where(
                AuditEntry.resource_type == "visit",
                AuditEntry.resource_id == str(body["id"]),
                AuditEntry.actor_id == clinic.prescriber.id))).all()
            return visit, list(actions)

    visit, actions = run(stored)
    assert visit is not None
    assert visit.created_by_id == clinic.prescriber.id
    assert visit.scheduled_at == local
    assert visit.scheduled_at.tzinfo is not None
    assert "create" in actions


def test_coordinator_schedules_with_a_named_prescriber(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.coordinator)
    without = client.post("/api/v1/visits", json=new_visit(clinic, services))
    assert without.status_code == 422
    assert without.json()["error"]["field"] == "prescriber_id"
    named = client.post("/api/v1/visits", json=new_visit(
        clinic, services, prescriber_id=clinic.prescriber.id, kind="follow_up"))
    assert named.status_code == 201
    assert named.json()["prescriber"]["id"] == clinic.prescriber.id
    assert named.json()["duration_minutes"] == 15


def test_prescriber_not_on_the_care_team_cannot_schedule(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.other_prescriber)
    response = client.post("/api/v1/visits", json=new_visit(clinic, services))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"

    async def count() -> int:
        async with services.transaction() as session:
            return len((await session.scalars(select(Visit.id))).all())

    assert run(count) == 2  # only the clinic's own


def test_prescriber_must_be_on_the_team_too(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.coordinator)
    response = client.post("/api/v1/visits", json=new_visit(
        clinic, services, prescriber_id=clinic.other_prescriber.id))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "prescriber_id"


@pytest.mark.parametrize(("changes", "field"), [
    ({"kind": "annual_review"}, "kind"),
    ({"scheduled_at": "2031-01-01T10:00:00"}, "scheduled_at"),  # naive: which timezone?
    ({"scheduled_at": "next tuesday"}, "scheduled_at"),
    ({"patient_id": "seven"}, "patient_id"),
    ({"duration_minutes": 1}, "duration_minutes"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_fields_are_422_naming_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services,
    changes: dict[str, Any], field: str
) -> None:
    sign_in(clinic.prescriber)
    response = client.post("/api/v1/visits", json=new_visit(clinic, services, **changes))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == field
    assert field in error["message"]


@pytest.mark.parametrize("missing", ["patient_id", "kind", "scheduled_at"])
def test_missing_fields_are_422_naming_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services, missing: str
) -> None:
    sign_in(clinic.prescriber)
    body = new_visit(clinic, services)
    del body[missing]
    response = client.post("/api/v1/visits", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == missing
    assert response.json()["error"]["message"] == f"{missing} is required."


def test_unknown_patient_and_the_past_are_refused(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.prescriber)
    nobody = client.post("/api/v1/visits", json=new_visit(clinic, services, patient_id=999999))
    assert (nobody.status_code, nobody.json()["error"]["field"]) == (422, "patient_id")
    staff = client.post("/api/v1/visits", json=new_visit(
        clinic, services, patient_id=clinic.coordinator.id))
    assert (staff.status_code, staff.json()["error"]["field"]) == (422, "patient_id")
    past = client.post("/api/v1/visits", json=new_visit(
        clinic, services, scheduled_at=datetime(2020, 1, 1, tzinfo=UTC).isoformat()))
    assert (past.status_code, past.json()["error"]["field"]) == (422, "scheduled_at")


@pytest.mark.parametrize("who", ["patient", "admin"])
def test_patients_and_admins_cannot_schedule(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services, who: str
) -> None:
    sign_in(getattr(clinic, who))
    response = client.post("/api/v1/visits", json=new_visit(clinic, services))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_body_must_be_json(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.prescriber)
    response = client.post("/api/v1/visits", content=b"patient_id=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_media_type"


# --- moving a visit -------------------------------------------------------------------


def test_the_care_team_moves_a_visit_and_it_reads_the_same_everywhere(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    later = (services.clock.now() + timedelta(days=2)).astimezone(
        timezone(timedelta(hours=-5))).replace(microsecond=0)
    moved = client.patch(f"/api/v1/visits/{clinic.visit_id}",
                         json={"scheduled_at": later.isoformat(), "duration_minutes": 30})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert_visit_shape(body)
    # Answered in UTC, as every GET answers it.
    assert body["scheduled_at"] == later.astimezone(UTC).isoformat()
    assert body["duration_minutes"] == 30
    sign_in(clinic.patient)
    assert client.get(f"/api/v1/visits/{clinic.visit_id}").json()["scheduled_at"] == \
        body["scheduled_at"]
    # Only the length: the start stays.
    sign_in(clinic.coordinator)
    shorter = client.patch(f"/api/v1/visits/{clinic.visit_id}", json={"duration_minutes": 20})
    assert (shorter.json()["scheduled_at"], shorter.json()["duration_minutes"]) == \
        (body["scheduled_at"], 20)

    async def audited() -> list[tuple[int | None, Any]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "reschedule").order_by(AuditEntry.id))).all()
            return [(r.actor_id, r.detail["duration_minutes"]) for r in rows]

    assert run(audited) == [(clinic.prescriber.id, 30), (clinic.coordinator.id, 20)]


@pytest.mark.parametrize(("body", "field"), [
    ({}, None),                                   # nothing to change
    ({"duration_minutes": 2}, "duration_minutes"),
    ({"duration_minutes": 241}, "duration_minutes"),
    ({"scheduled_at": "tomorrow at noon"}, "scheduled_at"),
    ({"scheduled_at": "2026-12-06T10:00:00"}, "scheduled_at"),  # no zone: ambiguous
    ({"status": "completed"}, "status"),           # not something a move changes
])
def test_a_bad_move_is_422_naming_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, body: dict[str, Any],
    field: str | None
) -> None:
    sign_in(clinic.prescriber)
    refused = client.patch(f"/api/v1/visits/{clinic.visit_id}", json=body)
    assert refused.status_code == 422, refused.text
    if field is not None:
        assert refused.json()["error"]["field"] == field


def test_a_visit_cannot_be_moved_into_the_past_or_once_under_way(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    past = client.patch(f"/api/v1/visits/{clinic.visit_id}",
                        json={"scheduled_at": when(services, hours=-3)})
    assert (past.status_code, past.json()["error"]["field"]) == (422, "scheduled_at")

    async def waiting() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            visit.status = VisitStatus.waiting

    run(waiting)
    for refused in (client.patch(f"/api/v1/visits/{clinic.visit_id}",
                                 json={"duration_minutes": 30}),
                    client.post(f"/api/v1/visits/{clinic.visit_id}/cancel")):
        assert refused.status_code == 409
        assert refused.json()["error"]["status"] == "waiting"
