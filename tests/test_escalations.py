"""Escalations over the real API: raising from check-ins, the lifecycle, deadlines,
re-alerts and the backup, exactly-once timers, emails and care-team scoping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from escalation.deadlines import add_business_days, fire_due_timers
from server import oncall
from server.bus import LocalBus
from server.db import create_engine, session_factory
from server.models import AuditEntry, Escalation, OutboxEmail, Timer
from server.outbox import deliver_due
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn


def submit(client: TestClient, visit_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/api/v1/visits/{visit_id}/checkin", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def count(run: Runner, services: Services, model: Any, *where: Any) -> int:
    async def q() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)
                                             .where(*where)) or 0)
    return run(q)


@pytest.mark.parametrize("body,level,reasons", [
    (checkin_body(cssrs=HIGH_RISK_CSSRS, phq9=[3, 3, 3, 3, 3, 2, 2, 2, 1]), "emergency",
     ["cssrs_high", "phq9_severe", "phq9_item9_positive"]),
    (checkin_body(cssrs={"q1": True, "q2": True, "q3": True, "q4": False, "q5": False,
                         "q6": False}, phq9=[0, 0, 0, 0, 0, 0, 0, 0, 1]), "urgent",
     ["cssrs_moderate", "phq9_item9_positive"]),
    (checkin_body(phq9=[0, 0, 0, 0, 0, 0, 0, 0, 2]), "urgent", ["phq9_item9_unassessed"]),
    (checkin_body(asrm=[2, 2, 1, 1, 0]), "step_up", ["asrm_positive"]),
])
def test_checkin_raises_one_escalation_with_all_reasons(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    body: dict[str, Any], level: str, reasons: list[str],
) -> None:
    sign_in(clinic.patient)
    result = submit(client, clinic.visit_id, body)
    assert len(result["escalations"]) == 1
    sign_in(clinic.coordinator)
    queue = client.get("/api/v1/escalations?status=open").json()["escalations"]
    assert len(queue) == 1
    row = queue[0]
    assert row["id"] == result["escalations"][0]
    assert row["level"] == level
    assert row["reasons"] == reasons
    assert row["status"] == "open"
    assert row["patient"] == {"id": clinic.patient.id, "name": clinic.patient.name}
    assert row["location"] == {"address": "12 Elm Street, Springfield", "state": "MA"}
    assert row["callback_phone"] == "+16175550100"
    assert row["emergency_contact"] == {"name": "Taylor Rivera", "phone": "+16175550101"}
    assert row["ack_due_at"] is not None
    assert count(run, services, Escalation) == 1


def test_review_level_raises_no_coordinator_task(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    result = submit(client, clinic.visit_id, checkin_body(gad7=[3, 3, 3, 3, 3, 0, 0]))
    assert result["level"] == "review"
    assert result["escalations"] == []
    assert count(run, services, Escalation) == 0


def test_later_higher_checkin_raises_the_open_one(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    # The draft with item 9 is escalated at once (urgent) ...
    client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft",
               json={"responses": {"phq9": {"answers": [0, 0, 0, 0, 0, 0, 0, 0, 1]}}})
    # ... and completing it with a high-risk C-SSRS raises that same escalation.
    result = submit(client, clinic.visit_id, checkin_body(
        cssrs=HIGH_RISK_CSSRS, phq9=[0, 0, 0, 0, 0, 0, 0, 0, 1]))
    assert count(run, services, Escalation) == 1
    sign_in(clinic.coordinator)
    detail = client.get(f"/api/v1/escalations/{result['escalations'][0]}").json()
    assert detail["level"] == "emergency"
    assert detail["reasons"] == ["phq9_item9_unassessed", "cssrs_high", "phq9_item9_positive"]
    # The completion confirmed the emergency information (the escalation follows it),
    # then its intent answer raised the level: a new deadline for an emergency.
    assert [e["kind"] for e in detail["timeline"]] == [
        "raised", "emergency_info_confirmed", "level_raised"]


def test_lifecycle_with_timeline_and_audit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id,
                           checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"][0]
    sign_in(clinic.coordinator)
    base = f"/api/v1/escalations/{escalation_id}"
    early = client.post(f"{base}/resolve", json={"disposition": "mobile_crisis",
                                                 "note": "Mobile crisis team sent"})
    assert early.status_code == 409
    assert early.json()["error"]["status"] == "open"
    note_first = client.post(f"{base}/events", json={"kind": "note",
                                                     "text": "Seen the answers"})
    assert note_first.status_code == 409
    ack = client.post(f"{base}/acknowledge")
    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"]["id"] == clinic.coordinator.id
    assert client.post(f"{base}/acknowledge").status_code == 409
    call = client.post(f"{base}/events", json={"kind": "contact_attempt",
                                               "text": "Called callback number",
                                               "outcome": "reached"})
    assert call.status_code == 201
    assert client.get(base).json()["status"] == "in_progress"
    assign = client.post(f"{base}/assign", json={"assignee_id": clinic.prescriber.id})
    assert assign.json()["assigned_to"]["id"] == clinic.prescriber.id
    bad_assign = client.post(f"{base}/assign", json={"assignee_id": clinic.other_prescriber.id})
    assert bad_assign.status_code == 422
    bad = client.post(f"{base}/resolve", json={"disposition": "vacation",
                                               "note": "Went on holiday"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "disposition"
    # An emergency is closed by action (CLINICAL.md invariant 6), whatever the reason.
    no_action = client.post(f"{base}/resolve", json={
        "disposition": "no_action_needed", "note": "Talked it through",
        "reason": "She says she is safe and has no plan now"})
    assert no_action.status_code == 422
    assert no_action.json()["error"]["field"] == "disposition"
    assert no_action.json()["error"]["code"] == "action_required"
    short = client.post(f"{base}/resolve", json={"disposition": "mobile_crisis", "note": "x"})
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "note"
    done = client.post(f"{base}/resolve", json={"disposition": "mobile_crisis",
                                                "note": "Mobile crisis team dispatched"})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "resolved"
    assert body["disposition"] == "mobile_crisis"
    assert [e["kind"] for e in body["timeline"]] == [
        "raised", "acknowledged", "started", "contact_attempt", "assigned", "resolved"]
    assert client.post(f"{base}/acknowledge").status_code == 409
    assert client.get("/api/v1/escalations?status=open").json()["escalations"] == []

    async def actions() -> list[str]:
        async with services.transaction() as session:
            rows = await session.scalars(select(AuditEntry.action).where(
                AuditEntry.resource_type == "escalation", AuditEntry.outcome == "success",
                AuditEntry.action != "read").order_by(AuditEntry.id))
            return list(rows.all())

    assert run(actions) == ["raise", "acknowledge", "contact_attempt", "assign", "resolve"]


def test_manual_escalation(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.prescriber)
    body = {"patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "urgent",
            "reason": "psychosis"}
    response = client.post("/api/v1/escalations", json=body)
    assert response.status_code == 201
    assert response.json()["reasons"] == ["psychosis"]
    assert response.json()["source"] == "manual"
    other = client.post("/api/v1/escalations", json={**body, "reason": "other"})
    assert other.status_code == 422
    assert other.json()["error"]["field"] == "text"
    review = client.post("/api/v1/escalations", json={**body, "level": "review"})
    assert review.status_code == 422
    sign_in(clinic.other_prescriber)
    assert client.post("/api/v1/escalations", json=body).status_code == 403
    sign_in(clinic.patient)
    assert client.post("/api/v1/escalations", json=body).status_code == 403


def test_coordinators_see_only_their_care_teams(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id,
                           checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"][0]
    sign_in(clinic.other_coordinator)
    assert client.get("/api/v1/escalations").json()["escalations"] == []
    assert client.get(f"/api/v1/escalations/{escalation_id}").status_code == 403
    assert client.post(f"/api/v1/escalations/{escalation_id}/acknowledge").status_code == 403
    sign_in(clinic.patient)
    assert client.get("/api/v1/escalations").status_code == 403


def test_unacknowledged_emergency_realerts_then_reaches_the_backup(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id,
                           checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"][0]

    def emails_to(email: str) -> int:
        return count(run, services, OutboxEmail, OutboxEmail.to_addr == email)

    assert emails_to(clinic.coordinator.email) == 1
    assert emails_to(clinic.prescriber.email) == 1  # emergency: prescriber alerted now
    assert emails_to(clinic.admin.email) == 0
    services.clock.advance(timedelta(minutes=4))
    assert run(fire_due_timers, services) == 0
    services.clock.advance(timedelta(minutes=1, seconds=1))
    assert run(fire_due_timers, services) == 1
    assert emails_to(clinic.coordinator.email) == 2
    assert emails_to(clinic.admin.email) == 0
    services.clock.advance(timedelta(minutes=5, seconds=1))
    assert run(fire_due_timers, services) == 1
    assert emails_to(clinic.coordinator.email) == 3
    # Nobody is on call: the team is alerted again, never the admins, who cannot open
    # an escalation (CLINICAL.md invariant 5).
    assert emails_to(clinic.admin.email) == 0
    sign_in(clinic.coordinator)
    client.post(f"/api/v1/escalations/{escalation_id}/acknowledge")
    services.clock.advance(timedelta(hours=1))
    assert run(fire_due_timers, services) == 0
    assert emails_to(clinic.coordinator.email) == 3
    sign_in(clinic.coordinator)  # an hour idle signed the coordinator out
    detail = client.get(f"/api/v1/escalations/{escalation_id}")
    assert detail.status_code == 200, detail.text
    timeline = detail.json()["timeline"]
    assert [e["kind"] for e in timeline] == ["raised", "realert", "realert", "acknowledged"]


def test_on_call_staff_are_alerted_for_emergencies_and_are_the_backup(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    async def put_on_call() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            await oncall.add_shift(session, None, user_id=clinic.other_coordinator.id,
                                   starts_at=now, ends_at=now + timedelta(hours=8), now=now)

    run(put_on_call)
    sign_in(clinic.patient)
    submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    assert count(run, services, OutboxEmail,
                 OutboxEmail.to_addr == clinic.other_coordinator.email) == 1
    for _ in range(2):
        services.clock.advance(timedelta(minutes=5, seconds=1))
        run(fire_due_timers, services)
    assert count(run, services, OutboxEmail, OutboxEmail.to_addr == clinic.admin.email) == 0
    assert count(run, services, OutboxEmail,
                 OutboxEmail.to_addr == clinic.other_coordinator.email) == 2
    # The on-call coordinator is not on this care team but can open and take it.
    sign_in(clinic.other_coordinator)
    escalation_id = client.get("/api/v1/escalations").json()["escalations"][0]["id"]
    ack = client.post(f"/api/v1/escalations/{escalation_id}/acknowledge")
    assert ack.status_code == 200


def test_step_up_deadline_is_one_business_day() -> None:
    friday = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert add_business_days(friday, 1) == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    tuesday = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert add_business_days(tuesday, 1) == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def test_two_instances_fire_each_deadline_exactly_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    sign_in(clinic.patient2)
    submit(client, clinic.visit2_id, checkin_body(cssrs=HIGH_RISK_CSSRS))

    async def race() -> list[int]:
        # A second instance: its own engine and pool on the same database.
        engine = create_engine(services.settings.database_url.get_secret_value())
        other = Services(services.settings, engine, session_factory(engine), LocalBus(),
                         clock=services.clock, triage_rules=services.triage_rules)
        try:
            results = await asyncio.gather(
                fire_due_timers(services, instance="a"), fire_due_timers(other, instance="b"),
                fire_due_timers(services, instance="a2"), fire_due_timers(other, instance="b2"))
        finally:
            await engine.dispose()
        return list(results)

    services.clock.advance(timedelta(minutes=6))
    fired = run(race)
    assert sum(fired) == 2
    assert count(run, services, Timer, Timer.fired_at.is_not(None)) == 2
    # Each escalation got exactly one re-alert email to its coordinator.
    assert count(run, services, OutboxEmail, OutboxEmail.kind == "escalation_realert",
                 OutboxEmail.to_addr == clinic.coordinator.email) == 1
    assert count(run, services, OutboxEmail, OutboxEmail.kind == "escalation_realert",
                 OutboxEmail.to_addr == clinic.other_coordinator.email) == 1


def test_timers_survive_a_restart(
    app: Any, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    client: TestClient,
) -> None:
    sign_in(clinic.patient)
    submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))

    async def restart_and_fire() -> int:
        # A fresh instance that knows nothing of the first one's memory.
        engine = create_engine(services.settings.database_url.get_secret_value())
        fresh = Services(services.settings, engine, session_factory(engine), LocalBus(),
                         clock=services.clock, triage_rules=services.triage_rules)
        try:
            return await fire_due_timers(fresh)
        finally:
            await engine.dispose()

    services.clock.advance(timedelta(minutes=5, seconds=1))
    assert run(restart_and_fire) == 1


@pytest.fixture
def settings_overrides(smtp_server: Any) -> dict[str, Any]:
    return {"smtp_url": smtp_server.url}


def test_alert_emails_arrive_once_without_clinical_content(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    smtp_server: Any,
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id,
                           checkin_body(cssrs=HIGH_RISK_CSSRS))["escalations"][0]
    smtp_server.stop()
    run(deliver_due, services)  # SMTP is down: nothing lost, retried later
    smtp_server.start()
    services.clock.advance(timedelta(seconds=5))
    run(deliver_due, services)
    run(deliver_due, services)
    messages = smtp_server.inbox.wait_for(2)
    assert sorted(m["To"] for m in messages) == sorted(
        [clinic.coordinator.email, clinic.prescriber.email])
    for message in messages:
        text = message.get_payload()
        assert message["Subject"] == "An escalation needs your attention"
        assert f"/escalations/{escalation_id}" in text
        for clinical in ("suicid", "C-SSRS", "emergency", "Elm Street", "555", "cssrs"):
            assert clinical.lower() not in text.lower()


def test_urgent_checkin_alerts_the_prescriber_and_tops_the_day(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    async def patient2_first() -> None:
        # Both today in the clinic's time zone, patient2's visit first.
        from zoneinfo import ZoneInfo

        from server.models import Visit

        today = services.clock.now().astimezone(ZoneInfo("America/New_York")).date()
        noon = datetime(today.year, today.month, today.day, 12,
                        tzinfo=ZoneInfo("America/New_York"))
        async with services.transaction() as session:
            for visit_id, when in ((clinic.visit_id, noon),
                                   (clinic.visit2_id, noon - timedelta(hours=1))):
                visit = await session.get(Visit, visit_id)
                assert visit is not None
                visit.scheduled_at = when

    run(patient2_first)
    sign_in(clinic.patient)
    submit(client, clinic.visit_id, checkin_body(phq9=[0, 0, 0, 0, 0, 0, 0, 0, 2]))
    assert count(run, services, OutboxEmail, OutboxEmail.to_addr == clinic.prescriber.email,
                 OutboxEmail.kind == "escalation_raised") == 1
    sign_in(clinic.prescriber)
    page = client.get("/day").text
    first, second = page.index(f'data-visit-id="{clinic.visit_id}"'), \
        page.index(f'data-visit-id="{clinic.visit2_id}"')
    assert first < second  # the urgent patient is on top, though scheduled later
    assert 'data-testid="safety-flag" data-level="urgent"' in page
