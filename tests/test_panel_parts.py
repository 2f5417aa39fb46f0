"""The note panel's live parts (``/visits/{id}?part=NAME``, web/pages/note_panel.py
PARTS), by the real app on SQLite and PostgreSQL: each answers its own block as the
whole panel shows it, audits its reads like the panel, costs a fixed number of queries
however much the patient's record holds, and is the care team's only."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from server import checkins
from server.actors import Actor
from server.models import Role
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_note_panel_pages import LITHIUM, SERTRALINE, previous_signed_visit
from tests.test_room_page_cost import reads, statements

# Each part, the element the panel swaps, and the audited reads it makes (besides the
# visit's own).
PARTS = {
    "safety": {"checkin"},  # and each open escalation's, when there is one
    # The list's "Needs monitoring" comes from the lab rules and the results (labs.py)
    "medications": {"medications", "lab_monitoring"},
    "labs": {"lab_monitoring"},
    "trends": {"measures", "medication_trials"},
    "costs": {"checkin", "medication_costs"},
    "controlled": {"pdmp_checks"},
}


def part(client: TestClient, visit_id: int, name: str) -> str:
    response = client.get(f"/visits/{visit_id}", params={"part": name})
    assert response.status_code == 200, response.text[:300]
    return response.text


def block(html: str, name: str) -> str:
    """The part's element as the panel swaps it: from its tag to the end."""
    found = re.search(rf'<[a-z]+ [^>]*data-part="{name}"', html)
    assert found, f"no data-part={name}"
    return html[found.start():]


@pytest.fixture
def record(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
           services: Services) -> None:
    """A patient with a signed earlier note (sertraline and lithium started), this
    visit's check-in done (scores, side effects, missed doses), in Massachusetts."""
    sign_in(clinic.prescriber)
    previous_signed_visit(client, clinic, run, services, plan="Start both.",
                          changes=[SERTRALINE, LITHIUM])
    sign_in(clinic.patient)
    body = checkin_body() | {"location": {"address": "12 Elm Street, Springfield",
                                          "state": "MA"}}
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=body).status_code == 201


@pytest.mark.usefixtures("record")
def test_each_part_answers_its_block_as_the_panel_shows_it(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{clinic.visit_id}").text
    for name in PARTS:
        assert f'data-part="{name}"' in room, name
    labs = block(part(client, clinic.visit_id, "labs"), "labs")
    assert 'data-check="lithium_level"' in labs
    assert 'data-testid="labs-link"' in labs
    trends = block(part(client, clinic.visit_id, "trends"), "trends")
    assert 'data-testid="current-trial"' in trends
    assert re.search(r'<svg[^>]*id="panel-phq9"', trends)
    costs = block(part(client, clinic.visit_id, "costs"), "costs")
    assert "Feeling sleepy, drowsy or slowed down" in costs
    assert "Missed doses in the last week: <strong>1 day</strong>" in costs
    assert 'data-testid="costs-timeline"' in costs
    controlled = block(part(client, clinic.visit_id, "controlled"), "controlled")
    assert "Massachusetts" in controlled and "no licence here" in controlled
    # The prescriber is told where to see theirs (an admin records new ones).
    assert f'href="/prescribers/{clinic.prescriber.id}/credentials"' in controlled

    # An admin records a licence and DEA registration there: the part says so, and
    # the link goes.
    sign_in(clinic.admin)
    held = client.put(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials", json={
        "credentials": [{"state": "MA", "license_number": "MA-1", "dea_number": "AB1234563"}]})
    assert held.status_code == 200, held.text
    sign_in(clinic.prescriber)
    controlled = block(part(client, clinic.visit_id, "controlled"), "controlled")
    assert "DEA registered" in controlled and "no licence here" not in controlled
    assert 'data-testid="controlled-credentials-link"' not in controlled
    recorded = client.post(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks",
                           json={"state": "MA", "result": "reviewed"})
    assert recorded.status_code == 201
    controlled = block(part(client, clinic.visit_id, "controlled"), "controlled")
    assert f'data-check-id="{recorded.json()["id"]}"' in controlled

    # Ten days into lithium the level is overdue; entered, it is no longer listed.
    services.clock.advance(timedelta(days=10))
    sign_in(clinic.prescriber)
    labs = block(part(client, clinic.visit_id, "labs"), "labs")
    assert re.search(r'data-check="lithium_level" data-status="overdue"', labs)
    level = client.post(f"/api/v1/patients/{clinic.patient.id}/labs", json={
        "test": "lithium_level", "value": 0.7, "unit": "mmol/L",
        "taken_on": clinic_today(services)})
    assert level.status_code == 201, level.text
    labs = block(part(client, clinic.visit_id, "labs"), "labs")
    assert 'data-check="lithium_level"' not in labs


def clinic_today(services: Services) -> str:
    zone = ZoneInfo(services.settings.clinic_timezone)
    return services.clock.now().astimezone(zone).date().isoformat()


@pytest.mark.usefixtures("record")
def test_each_part_audits_its_reads_like_the_panel(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    for name, expected in PARTS.items():
        before = len(reads(run, services, clinic.prescriber.id))
        part(client, clinic.visit_id, name)
        logged = reads(run, services, clinic.prescriber.id)[before:]
        assert set(logged) == {"visit"} | expected, name


@pytest.mark.usefixtures("record")
def test_each_part_costs_the_same_queries_however_much_the_record_holds(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)

    def cost() -> dict[str, Counter[str]]:
        found = {}
        for name in PARTS:
            part(client, clinic.visit_id, name)  # the session in its cache first
            with statements(services) as seen:
                part(client, clinic.visit_id, name)
            found[name] = Counter(s.split(" WHERE ")[0] for s, _ in seen
                                  if " FROM sessions" not in s)
        return found

    before = cost()
    # More of everything each part reads: lab results, PDMP checks, medications and
    # their changes, check-ins with scores.
    for value in (0.5, 0.6, 0.7):
        assert client.post(f"/api/v1/patients/{clinic.patient.id}/labs", json={
            "test": "lithium_level", "value": value, "unit": "mmol/L",
            "taken_on": clinic_today(services)}).status_code == 201
    for state in ("MA", "NY", "CT"):
        assert client.post(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks",
                           json={"state": state, "result": "reviewed"}).status_code == 201
    patient = Actor(clinic.patient.id, Role.patient, "Patient", clinic.patient.email)

    async def another_checkin() -> None:
        async with services.transaction() as session:
            await checkins.confirm_emergency_info(
                session, services, patient, clinic.visit_id,
                {"location": {"address": "40 Pearl Street, Albany", "state": "NY"},
                 "callback_phone": "+1 518 555 0142"})

    run(another_checkin)
    more = client.put(f"/api/v1/visits/{clinic.visit_id}/note", json={
        "version": 0, "medication_changes": [
            {"action": "start", "drug": "Bupropion", "dose": "150", "unit": "mg",
             "reason": "Depression"},
            {"action": "increase", "drug": "Sertraline", "dose": "100", "unit": "mg",
             "reason": "Partial response"}]})
    assert more.status_code == 200, more.text
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/note/sign",
                       json={"version": 1}).status_code == 200
    after = cost()
    for name in PARTS:
        assert sum(after[name].values()) == sum(before[name].values()), (
            name, after[name] - before[name], before[name] - after[name])


def test_a_part_is_the_care_teams_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    for name in PARTS:
        sign_in(clinic.patient)
        assert client.get(f"/visits/{clinic.visit_id}",
                          params={"part": name}).status_code == 404
        sign_in(clinic.other_prescriber)
        assert client.get(f"/visits/{clinic.visit_id}",
                          params={"part": name}).status_code == 403
        sign_in(clinic.coordinator)
        assert client.get(f"/visits/{clinic.visit_id}",
                          params={"part": name}).status_code == 200
    sign_in(clinic.prescriber)
    assert client.get(f"/visits/{clinic.visit_id}",
                      params={"part": "everything"}).status_code == 404
