"""Medication trials on the pages: the note panel's "Current trial" line and the
patient's page, rendered by the real app from real check-ins and signed notes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, Visit, VisitKind, VisitStatus
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

PHQ9_19 = [3, 3, 3, 3, 3, 2, 2, 0, 0]
PHQ9_16 = [3, 3, 3, 2, 2, 2, 1, 0, 0]
PHQ9_15 = [3, 3, 3, 2, 2, 1, 1, 0, 0]
PHQ9_9 = [2, 2, 2, 1, 1, 1, 0, 0, 0]
PHQ9_3 = [1, 1, 1, 0, 0, 0, 0, 0, 0]
SERTRALINE = {"action": "start", "drug": "Sertraline", "dose": "50", "unit": "mg",
              "route": "oral", "frequency": "once daily", "reason": "Depression"}


def add_visit(run: Runner, services: Services, clinic: Clinic) -> int:
    async def make() -> int:
        async with services.transaction() as session:
            now = services.clock.now()
            visit = Visit(patient_id=clinic.patient.id, prescriber_id=clinic.prescriber.id,
                          kind=VisitKind.follow_up, scheduled_at=now + timedelta(hours=1),
                          duration_minutes=15, status=VisitStatus.scheduled, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    return run(make)


def check_in(client: TestClient, sign_in: SignIn, clinic: Clinic, visit_id: int,
             phq9: list[int]) -> None:
    sign_in(clinic.patient)
    done = client.post(f"/api/v1/visits/{visit_id}/checkin", json=checkin_body(phq9=phq9))
    assert done.status_code == 201, done.text


def sign_with(client: TestClient, sign_in: SignIn, clinic: Clinic, visit_id: int,
              changes: list[dict[str, Any]]) -> None:
    sign_in(clinic.prescriber)
    url = f"/api/v1/visits/{visit_id}/note"
    saved = client.put(url, json={"version": 0, "sections": {"plan": "Sertraline."},
                                  "medication_changes": changes})
    assert saved.status_code == 200, saved.text
    signed = client.post(f"{url}/sign", json={"version": 1})
    assert signed.status_code == 200, signed.text


def trial_after(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
                services: Services, *, weeks: timedelta, latest: list[int]) -> int:
    """PHQ-9 19, sertraline started in that visit's note, and ``weeks`` later a check-in
    with ``latest``: the later visit's id."""
    check_in(client, sign_in, clinic, clinic.visit_id, PHQ9_19)
    services.clock.advance(timedelta(minutes=30))
    sign_with(client, sign_in, clinic, clinic.visit_id, [SERTRALINE])
    # The later check-in an hour before the prescriber opens the panel, ``weeks`` after
    # the start.
    services.clock.advance(weeks - timedelta(hours=1))
    later = add_visit(run, services, clinic)
    check_in(client, sign_in, clinic, later, latest)
    services.clock.advance(timedelta(hours=1))
    sign_in(clinic.prescriber)
    return later


def line(html: str, instrument: str) -> str:
    found = re.search(rf'<li data-testid="trial-{instrument}".*?</li>', html, re.S)
    assert found, f"no trial line for {instrument}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())


def test_the_panel_shows_a_trial_that_is_not_on_track_after_six_weeks(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    later = trial_after(client, clinic, sign_in, run, services, weeks=timedelta(weeks=6),
                        latest=PHQ9_16)
    html = client.get(f"/visits/{later}").text
    assert 'data-testid="current-trial"' in html
    assert "Current trial:</strong> Start Sertraline 50 mg" in html
    assert re.search(r'data-testid="trial-weeks">6 weeks<', html)
    text = line(html, "phq9")
    assert "19 → 16 (-3, 15 % better)" in text
    assert "no reliable change" in text
    assert "Not on track: under 25 % better after 6 weeks. Reconsider the dose or the drug." \
        in text
    assert 'data-not-on-track="true"' in html
    assert "response" not in text and "remission" not in text
    # The chart marks the start on the time axis and says it in words.
    chart = html[html.index('id="panel-phq9"'):]
    chart = chart[:chart.index("</svg>")]
    assert 'class="med-event"' in chart and 'data-label="Start Sertraline 50 mg"' in chart
    assert "Medication changes: Start Sertraline 50 mg on" in chart
    assert "The latest is down 3 from the baseline of 19 (the last score before Start " \
        "Sertraline 50 mg on" in chart


def test_the_panel_has_no_prompt_before_six_weeks(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    later = trial_after(client, clinic, sign_in, run, services,
                        weeks=timedelta(weeks=5, days=6), latest=PHQ9_16)
    html = client.get(f"/visits/{later}").text
    assert re.search(r'data-testid="trial-weeks">5 weeks 6 days<', html)
    assert 'data-not-on-track="false"' in html and "Not on track" not in html


def test_the_panel_shows_a_response_and_reliable_recovery(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    later = trial_after(client, clinic, sign_in, run, services, weeks=timedelta(weeks=8),
                        latest=PHQ9_9)
    html = client.get(f"/visits/{later}").text
    text = line(html, "phq9")
    assert "19 → 9 (-10, 52 % better)" in text
    assert "reliable recovery" in text and "response" in text
    assert "remission" not in text and "Not on track" not in html
    assert 'data-reliable-change="reliable_recovery"' in html
    # Reading the trials is audited.
    rows = run(lambda: _audit(services, clinic.patient.id))
    assert rows


async def _audit(services: Services, patient_id: int) -> list[AuditEntry]:
    async with services.transaction() as session:
        return list((await session.scalars(select(AuditEntry).where(
            AuditEntry.resource_type == "medication_trials",
            AuditEntry.patient_id == patient_id))).all())


def test_the_patients_page_shows_the_trial_and_its_baseline(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    trial_after(client, clinic, sign_in, run, services, weeks=timedelta(weeks=6),
                latest=PHQ9_15)
    html = client.get(f"/patients/{clinic.patient.id}").text
    assert 'data-testid="current-trial"' in html
    text = line(html, "phq9")
    assert "19 → 15 (-4, 21 % better)" in text and "Not on track" in text
    assert re.search(r'data-testid="baseline">19 <span class="hint">on [^<]*, this trial',
                     html)
    assert "Medication changes on this chart: Start Sertraline 50 mg on" in html
    assert "Response: no" in html and "Remission: no" in html


def test_a_first_and_only_score_is_not_a_remission(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    check_in(client, sign_in, clinic, clinic.visit_id, PHQ9_3)
    sign_in(clinic.prescriber)
    html = client.get(f"/patients/{clinic.patient.id}").text
    assert "Remission: yes" not in html
    assert "Response and remission: not judged (no later score than the baseline)" in html
    assert 'data-testid="current-trial"' not in html
    panel = client.get(f"/visits/{clinic.visit_id}").text
    assert ">remission<" not in panel
    measures = client.get(f"/api/v1/patients/{clinic.patient.id}/measures").json()
    phq9 = next(m for m in measures["measures"] if m["id"] == "phq9")
    assert phq9["points"][0]["remission"] is False
