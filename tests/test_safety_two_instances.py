"""Two instances over real Redis and one database: a re-armed escalation reaches the
coordinator whose dashboard is on the other instance, and check-ins of one patient on
both instances at once keep one open escalation (CLINICAL.md, invariants 3 and 4)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.app import create_app
from server.auth import COOKIE_NAME
from server.models import Escalation, EscalationTrigger
from server.services import Services
from server.settings import Settings
from tests import app_server
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn
from tests.signaling_support import (
    REDIS_URL,
    Socket,
    connect,
    redis_unavailable,
    service_or_skip,
)

ROUNDS = 4


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    service_or_skip(redis_unavailable())
    return {"redis_url": REDIS_URL, "redis_namespace": f"mendwell-test-{uuid.uuid4().hex[:8]}"}


def until_both(events: Socket) -> dict[str, dict[str, Any]]:
    """The next ``escalation.alert`` and ``escalation.raised``, in whichever order."""
    found: dict[str, dict[str, Any]] = {}
    while len(found) < 2:
        message = events.receive()
        if message["type"] in ("escalation.alert", "escalation.raised"):
            found.setdefault(message["type"], message)
    return found


def another_visit(run: Runner, services: Services, clinic: Clinic, hours: int) -> int:
    return run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
               timedelta(hours=hours))


def test_a_re_arm_on_one_instance_alerts_the_dashboard_on_the_other(
    client: TestClient, settings: Settings, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    with app_server.test_client(create_app(settings)) as other:
        csrf = sign_in(clinic.coordinator)
        coordinator = client.cookies.get(COOKIE_NAME) or ""
        client.cookies.clear()
        staff = {"cookie": f"{COOKIE_NAME}={coordinator}", "X-CSRF-Token": csrf}
        with connect(other, "/ws/events", coordinator) as events:
            events.expect("subscribed")
            sign_in(clinic.patient)  # the patient is on the first instance
            first = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                                json=checkin_body(cssrs=HIGH_RISK_CSSRS))
            assert first.status_code == 201, first.text
            [escalation_id] = first.json()["escalations"]
            raised = until_both(events)
            assert raised["escalation.raised"]["escalation_id"] == escalation_id
            taken = other.post(f"/api/v1/escalations/{escalation_id}/acknowledge",
                               headers=staff)
            assert taken.status_code == 200, taken.text
            events.expect("escalation.updated", where=lambda m: m["status"] == "acknowledged")

            services.clock.advance(timedelta(minutes=20))
            later = another_visit(run, services, clinic, hours=2)
            second = client.post(f"/api/v1/visits/{later}/checkin",
                                 json=checkin_body(cssrs=HIGH_RISK_CSSRS))
            assert second.status_code == 201, second.text
            assert second.json()["escalations"] == [escalation_id]
            found = until_both(events)
            rearmed = found["escalation.raised"]
            assert (rearmed["escalation_id"], rearmed["status"], rearmed["visit_id"]) == \
                (escalation_id, "open", later)
            assert found["escalation.alert"]["why"] == "raised"
            detail = other.get(f"/api/v1/escalations/{escalation_id}", headers=staff).json()
            armed = datetime.fromisoformat(detail["armed_at"])
            assert datetime.fromisoformat(detail["ack_due_at"]) == armed + timedelta(minutes=5)
            assert [t["effect"] for t in detail["triggers"]] == ["raised", "rearmed"]


def test_check_ins_on_two_instances_at_once_keep_one_open_escalation(
    client: TestClient, settings: Settings, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    with app_server.test_client(create_app(settings)) as other:
        csrf = sign_in(clinic.patient)
        headers = {"cookie": f"{COOKIE_NAME}={client.cookies.get(COOKIE_NAME)}",
                   "X-CSRF-Token": csrf}
        client.cookies.clear()
        start = threading.Barrier(2)

        def check_in(instance: TestClient, visit_id: int) -> int:
            start.wait()
            return instance.post(f"/api/v1/visits/{visit_id}/checkin", headers=headers,
                                 json=checkin_body(cssrs=HIGH_RISK_CSSRS)).status_code

        # Each instance on its own event loop (its TestClient's), as two servers would be.
        # Several rounds: each writes rows that refer to the patient before it takes the
        # patient's lock, which once deadlocked on PostgreSQL (server/locks.py).
        for _ in range(ROUNDS):
            visits = [another_visit(run, services, clinic, hours=2) for _ in range(2)]
            with ThreadPoolExecutor(2) as pool:
                statuses = list(pool.map(check_in, [client, other], visits))
            assert statuses == [201, 201]

        async def counts() -> tuple[int, int]:
            async with services.transaction() as session:
                escalations = await session.scalar(select(func.count()).select_from(
                    Escalation))
                triggers = await session.scalar(select(func.count()).select_from(
                    EscalationTrigger))
                return int(escalations or 0), int(triggers or 0)

        # One escalation; every check-in (each of another visit) is a trigger of its own.
        assert run(counts) == (1, 2 * ROUNDS)
