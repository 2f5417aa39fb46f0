"""What it costs and substance use (issue 19): FIBSER and its decisions, the Brief
Addiction Monitor and its scores, when each is asked, the substance-use track, days in
continuous MOUD treatment and the outreach after a missed visit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from escalation.deadlines import fire_due_timers
from server import part2
from server.bus import LocalBus
from server.db import create_engine, session_factory
from server.errors import ValidationFailed
from server.instruments import bam, fibser
from server.models import AuditEntry, Escalation, Medication, PatientProfile, Timer
from server.psychotropics import is_psychotropic
from server.services import Services
from server.substance_use import OUTREACH_TIMER, continuous_since
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

# --- FIBSER ---------------------------------------------------------------------------


@pytest.mark.parametrize(("burden", "decision"), [
    (0, "continue"), (2, "continue"),
    (3, "address_side_effects"), (4, "address_side_effects"),
    (5, "lower_dose_or_change"), (6, "lower_dose_or_change"),
])
def test_fibser_burden_bands_at_every_boundary(burden: int, decision: str) -> None:
    score = fibser.score({"answers": [6, 6, burden]})
    assert score.decision == decision
    assert score.to_json() == {"frequency": 6, "intensity": 6, "burden": burden,
                               "decision": decision}


def test_fibser_decision_follows_burden_only() -> None:
    # Frequent, intense side effects that do not get in the way: keep going.
    assert fibser.score({"answers": [6, 6, 0]}).decision == "continue"
    assert fibser.score({"answers": [0, 0, 5]}).decision == "lower_dose_or_change"


@pytest.mark.parametrize(("answers", "field"), [
    ([0, 0, 7], "responses.fibser.answers.2"),
    ([0, 0], "responses.fibser.answers"),
    ([0, True, 0], "responses.fibser.answers.1"),
])
def test_fibser_refuses_bad_answers(answers: list[Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        fibser.score({"answers": answers})
    assert refused.value.field == field


def test_fibser_items_are_0_to_6_with_the_published_anchors() -> None:
    items = fibser.DEFINITION.items
    assert [item.id for item in items] == ["frequency", "intensity", "burden"]
    for item in items:
        assert [o.value for o in item.options] == list(range(7))
    assert items[2].options[6].label == "Unable to function"
    assert items[0].options[4].label == "Present 50% of the time"


# --- BAM ------------------------------------------------------------------------------


def bam_answers(**by_item: int) -> list[int | None]:
    """All zeros (income: No) but the published item numbers given (``i14=4``)."""
    answers: list[int | None] = [0] * bam.ANSWER_COUNT
    for key, value in by_item.items():
        answers[bam.INDEX[key[1:]]] = value
    return answers


def test_bam_has_17_items_in_23_answers() -> None:
    ids = [item.id for item in bam.DEFINITION.items]
    assert len(ids) == 23
    assert len({i.rstrip("abcdefg") for i in ids}) == 17
    assert ids[6:13] == ["7a", "7b", "7c", "7d", "7e", "7f", "7g"]
    assert bam.DEFINITION.recall == "past 30 days"


def test_bam_worked_example() -> None:
    # Physical health fair (3), 4-8 nights of poor sleep (2), 9-15 upset days (3), drank
    # on 1-3 days (1), never heavily (0), drugs on 16-30 days (4) - cannabis 16-30 (4) -,
    # cravings moderate (2), confidence slight (1), no meetings (0), risky situations on
    # 4-8 days (2), spirituality considerably (3), work on 16-30 days (4), enough income
    # (4), family problems slight (1), sober support on 9-15 days (3), progress
    # moderate (2).
    answers = bam_answers(i1=3, i2=2, i3=3, i4=1, i5=0, i6=4, i7a=4, i8=2, i9=1, i10=0,
                          i11=2, i12=3, i13=4, i14=4, i15=1, i16=3, i17=2)
    score = bam.score({"answers": answers})
    assert (score.use, score.risk, score.protective) == (1 + 0 + 4, 3 + 2 + 3 + 2 + 2 + 1,
                                                         1 + 0 + 3 + 4 + 4 + 3)
    assert score.to_json() == {"use": 5, "risk": 13, "protective": 15,
                               "use_significant": True, "risk_significant": True,
                               "protective_significant": False}


def test_bam_items_7_and_17_are_in_no_score() -> None:
    plain = bam.score({"answers": bam_answers(i6=1)})
    more = bam.score({"answers": bam_answers(i6=1, i7a=4, i7e=4, i17=4)})
    assert (plain.use, plain.risk, plain.protective) == (more.use, more.risk,
                                                         more.protective)


@pytest.mark.parametrize(("risk_item", "protective", "flags"), [
    (11, 13, (False, False)), (12, 12, (True, True))])
def test_bam_cutoffs(risk_item: int, protective: int, flags: tuple[bool, bool]) -> None:
    # Risk from items 2 (4) + 3 (4) + 11 (3 or 4); protective 4+4+4 and item 16.
    answers = bam_answers(i2=4, i3=4, i11=risk_item - 8, i13=4, i14=4, i10=4,
                          i16=protective - 12)
    score = bam.score({"answers": answers})
    assert (score.risk, score.protective) == (risk_item, protective)
    assert (score.risk_significant, score.protective_significant) == flags
    assert not score.use_significant
    assert bam.score({"answers": bam_answers(i4=1)}).use_significant


def test_bam_skip_logic_and_income() -> None:
    skipped = bam_answers()
    for index in bam.DRUG_PARTS:
        skipped[index] = None
    assert bam.score({"answers": skipped}).use == 0
    asked = bam_answers(i6=2)
    asked[bam.DRUG_PARTS[0]] = None
    with pytest.raises(ValidationFailed) as refused:
        bam.score({"answers": asked})
    assert refused.value.field == f"responses.bam.answers.{bam.DRUG_PARTS[0]}"
    with pytest.raises(ValidationFailed) as refused:
        bam.score({"answers": bam_answers(i14=2)})
    assert refused.value.field == f"responses.bam.answers.{bam.INCOME}"
    assert "0 (No) or 4 (Yes)" in refused.value.message


def test_bam_is_a_part2_measure() -> None:
    assert part2.rules().of_instrument("bam") == "sud_measures"
    assert part2.rules().of_instrument("fibser") is None


def test_psychotropic_names() -> None:
    assert is_psychotropic("Sertraline")
    assert is_psychotropic("Adderall XR")
    assert is_psychotropic("buprenorphine-naloxone")
    assert not is_psychotropic("Metformin")
    assert not is_psychotropic("Lisinopril 10 mg")


# --- MOUD retention -------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_continuous_since_one_span() -> None:
    assert continuous_since([(day(0), None)], day(180)) == day(0)


@pytest.mark.parametrize(("gap", "joined"), [(7, True), (7.01, False), (8, False)])
def test_a_gap_of_up_to_7_days_keeps_the_run(gap: float, joined: bool) -> None:
    spans = [(day(0), day(30)), (day(30 + gap), None)]
    assert continuous_since(spans, day(200)) == (day(0) if joined else day(30 + gap))


def test_overlapping_moud_spans_are_one_run_and_stopped_is_none() -> None:
    # Buprenorphine, then a switch to naltrexone the same day.
    assert continuous_since([(day(0), day(50)), (day(50), None)], day(100)) == day(0)
    assert continuous_since([(day(0), day(50))], day(100)) is None


# --- over the API ---------------------------------------------------------------------


def needs(client: TestClient, visit_id: int) -> list[str]:
    response = client.get(f"/api/v1/visits/{visit_id}/checkin")
    assert response.status_code == 200, response.text
    found: list[str] = response.json()["needs"]
    return found


def add_medication(run: Runner, services: Services, patient_id: int, drug: str,
                   *, started: timedelta = timedelta(days=30), active: bool = True) -> None:
    async def add() -> None:
        now = services.clock.now()
        async with services.transaction() as session:
            session.add(Medication(patient_id=patient_id, drug=drug, dose="8", unit="mg",
                                   active=active, started_at=now - started,
                                   changed_at=now - started,
                                   stopped_at=None if active else now - timedelta(days=1)))
    run(add)


def count(run: Runner, services: Services, model: Any, *where: Any) -> int:
    async def q() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)
                                             .where(*where)) or 0)
    return run(q)


def test_fibser_asked_only_with_a_psychotropic(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert "fibser" not in needs(client, clinic.visit_id)
    add_medication(run, services, clinic.patient.id, "Metformin")
    assert "fibser" not in needs(client, clinic.visit_id)
    add_medication(run, services, clinic.patient.id, "Sertraline", active=False)
    assert "fibser" not in needs(client, clinic.visit_id)
    add_medication(run, services, clinic.patient.id, "Escitalopram")
    assert "fibser" in needs(client, clinic.visit_id)
    body = checkin_body()
    body["responses"]["fibser"] = {"answers": [4, 4, 3]}
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["scores"]["fibser"]["decision"] == "address_side_effects"
    # No triage reason follows from side effects.
    assert "fibser" not in str(response.json()["reasons"])


def test_bam_monthly_in_the_substance_use_track(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert "bam" not in needs(client, clinic.visit_id)
    sign_in(clinic.coordinator)
    put = client.put(f"/api/v1/patients/{clinic.patient.id}/substance-use-track",
                     json={"on": True})
    assert put.status_code == 200, put.text
    assert put.json() == {"patient_id": clinic.patient.id, "on": True}
    assert count(run, services, AuditEntry, AuditEntry.resource_type == "substance_use_track",
                 AuditEntry.patient_id == clinic.patient.id) == 1
    sign_in(clinic.patient)
    assert "bam" in needs(client, clinic.visit_id)
    body = checkin_body()
    body["responses"]["bam"] = {"answers": bam_answers(i4=2, i14=4)}
    done = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=body)
    assert done.status_code == 201, done.text
    assert done.json()["scores"]["bam"]["use"] == 2
    # On the patient's trend, with its three scores.
    sign_in(clinic.prescriber)
    measures = client.get(f"/api/v1/patients/{clinic.patient.id}/measures").json()
    bam_trend = next(t for t in measures["measures"] if t["instrument"] == "bam")
    assert bam_trend["points"][0]["use"] == 2
    # Monthly: not again 27 days later, again from 28.
    soon = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
               timedelta(days=27, minutes=59))
    later = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                timedelta(days=28, hours=1))
    services.clock.advance(timedelta(days=27))
    sign_in(clinic.patient)
    assert "bam" not in needs(client, soon)
    assert "bam" in needs(client, later)


@pytest.mark.parametrize(("role", "status"), [
    ("patient", 403), ("other_prescriber", 403), ("prescriber", 200), ("admin", 403)])
def test_who_sets_the_track(client: TestClient, clinic: Clinic, sign_in: SignIn,
                            run: Runner, services: Services, role: str, status: int) -> None:
    sign_in(getattr(clinic, role))
    response = client.put(f"/api/v1/patients/{clinic.patient.id}/substance-use-track",
                          json={"on": True})
    assert response.status_code == status, response.text

    async def on() -> bool:
        async with services.transaction() as session:
            profile = await session.get(PatientProfile, clinic.patient.id)
            return bool(profile and profile.substance_use_track)
    assert run(on) is (status == 200)


def test_track_body_is_checked(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.coordinator)
    response = client.put(f"/api/v1/patients/{clinic.patient.id}/substance-use-track",
                          json={"on": "yes"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "on"


def missed_visit(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
                 services: Services) -> int:
    visit_id = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                   timedelta(minutes=-20))
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{visit_id}/no-show")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "no_show"
    return visit_id


def outreach_escalations(run: Runner, services: Services) -> list[Escalation]:
    async def q() -> list[Escalation]:
        async with services.transaction() as session:
            return list((await session.scalars(select(Escalation))).all())
    return run(q)


def test_missed_moud_visit_and_nothing_rebooked_is_one_step_up(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Buprenorphine-naloxone")
    visit_id = missed_visit(client, clinic, sign_in, run, services)
    assert count(run, services, Timer, Timer.kind == OUTREACH_TIMER) == 1
    services.clock.advance(timedelta(days=6, hours=23))
    run(fire_due_timers, services)
    assert outreach_escalations(run, services) == []
    services.clock.advance(timedelta(hours=1))
    assert run(fire_due_timers, services) == 1
    found = outreach_escalations(run, services)
    assert [(e.level, e.reasons, e.source, e.visit_id) for e in found] == [
        ("step_up", ["moud_missed_visit"], "outreach", visit_id)]
    services.clock.advance(timedelta(days=7))
    run(fire_due_timers, services)
    assert len(outreach_escalations(run, services)) == 1
    sign_in(clinic.coordinator)
    queue = client.get("/api/v1/escalations?status=open").json()["escalations"]
    assert [row["reasons"] for row in queue] == [["moud_missed_visit"]]
    page = client.get(f"/escalations/{found[0].id}")
    assert page.status_code == 200
    assert "nothing rebooked within 7 days" in page.text


def test_rebooked_within_7_days_raises_nothing(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Methadone")
    missed_visit(client, clinic, sign_in, run, services)
    services.clock.advance(timedelta(days=3))
    sign_in(clinic.coordinator)
    booked = client.post("/api/v1/visits", json={
        "patient_id": clinic.patient.id, "prescriber_id": clinic.prescriber.id,
        "kind": "follow_up",
        "scheduled_at": (services.clock.now() + timedelta(days=2)).isoformat()})
    assert booked.status_code == 201, booked.text
    assert count(run, services, Timer, Timer.kind == OUTREACH_TIMER,
                 Timer.cancelled_at.is_not(None)) == 1
    services.clock.advance(timedelta(days=10))
    run(fire_due_timers, services)
    assert outreach_escalations(run, services) == []


def test_no_outreach_without_moud(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Sertraline")
    missed_visit(client, clinic, sign_in, run, services)
    assert count(run, services, Timer, Timer.kind == OUTREACH_TIMER) == 0


def test_a_visit_not_yet_started_is_not_a_no_show(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/no-show")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "visit_not_started"


def test_two_instances_raise_the_outreach_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Suboxone")
    missed_visit(client, clinic, sign_in, run, services)

    async def race() -> list[int]:
        engine = create_engine(services.settings.database_url.get_secret_value())
        other = Services(services.settings, engine, session_factory(engine), LocalBus(),
                         clock=services.clock, triage_rules=services.triage_rules)
        try:
            return list(await asyncio.gather(
                fire_due_timers(services, instance="a"), fire_due_timers(other, instance="b"),
                fire_due_timers(services, instance="a2"),
                fire_due_timers(other, instance="b2")))
        finally:
            await engine.dispose()

    services.clock.advance(timedelta(days=8))
    fired = run(race)
    assert sum(fired) == 1
    assert count(run, services, Timer, Timer.kind == OUTREACH_TIMER,
                 Timer.fired_at.is_not(None)) == 1
    assert len(outreach_escalations(run, services)) == 1


def test_the_panel_shows_what_it_costs(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Buprenorphine", started=timedelta(days=40))
    add_medication(run, services, clinic.patient.id, "Sertraline")
    sign_in(clinic.patient)
    body = checkin_body()
    body["responses"]["fibser"] = {"answers": [4, 4, 5]}
    body["missed_doses"] = {"days_missed": 3, "reasons": ["side_effects"]}
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=body).status_code == 201
    sign_in(clinic.prescriber)
    page = client.get(f"/visits/{clinic.visit_id}")
    assert page.status_code == 200
    html = page.text
    assert 'data-decision="lower_dose_or_change"' in html
    assert "Side-effect burden 5/6: lower the dose or change the drug." in html
    assert 'data-testid="moud-retention" data-days="40"' in html
    assert 'data-testid="missed-doses-trend"' in html
    assert "Patient reported: Feeling sleepy, drowsy or slowed down (mild)" in html


def test_a_completion_without_fibser_or_bam_is_kept(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    add_medication(run, services, clinic.patient.id, "Sertraline")
    sign_in(clinic.coordinator)
    client.put(f"/api/v1/patients/{clinic.patient.id}/substance-use-track", json={"on": True})
    sign_in(clinic.patient)
    assert {"fibser", "bam"} <= set(needs(client, clinic.visit_id))
    done = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body())
    assert done.status_code == 201, done.text
    assert done.json()["missing"] == []


def test_the_patient_page_has_the_track_toggle(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.coordinator)
    page = client.get(f"/patients/{clinic.patient.id}")
    assert page.status_code == 200
    assert 'data-testid="substance-use-track">' in page.text
    client.put(f"/api/v1/patients/{clinic.patient.id}/substance-use-track", json={"on": True})
    assert 'data-testid="substance-use-track" checked' in \
        client.get(f"/patients/{clinic.patient.id}").text
