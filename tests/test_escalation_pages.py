"""The escalation pages for people: the coordinator's queue and one escalation's page,
rendered by the real app from real escalations (raised by check-ins and by hand)."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.accounts import add_to_care_team, create_user
from server.actors import Actor
from server.models import AuditEntry, Role
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, Person
from tests.conftest import Runner, SignIn

ROW = "escalation-row"


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.text = ""
        self.hrefs: list[str] = []


class MarkedElements(HTMLParser):
    """Every element with a data-testid: its attributes, its text and the links in it."""

    VOID = frozenset({"input", "br", "img", "meta", "link", "hr", "source", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Element] = []
        self.open: list[tuple[str, Element | None]] = []

    def _gap(self) -> None:
        # Elements end words: "<dt>GAD-7</dt><dd>2 of 21</dd>" reads "GAD-7 2 of 21".
        for _, holder in self.open:
            if holder is not None:
                holder.text += " "

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._gap()
        values = {k: v or "" for k, v in attrs}
        element = Element(tag, values) if "data-testid" in values else None
        if element is not None:
            self.found.append(element)
        if tag == "a" and "href" in values:
            for _, holder in self.open:
                if holder is not None:
                    holder.hrefs.append(values["href"])
        if tag not in self.VOID:
            self.open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        self._gap()
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index][0] == tag:
                del self.open[index:]
                return

    def handle_data(self, data: str) -> None:
        for _, holder in self.open:
            if holder is not None:
                holder.text += data


def by_test_id(html: str, test_id: str) -> list[Element]:
    parser = MarkedElements()
    parser.feed(html)
    return [e for e in parser.found if e.attrs["data-testid"] == test_id]


def words(text: str) -> str:
    return " ".join(text.split())


def submit(client: TestClient, visit_id: int, body: dict[str, Any]) -> int:
    response = client.post(f"/api/v1/visits/{visit_id}/checkin", json=body)
    assert response.status_code == 201, response.text
    escalation_id: int = response.json()["escalations"][0]
    return escalation_id


def raise_by_hand(client: TestClient, patient_id: int, level: str, reason: str) -> int:
    response = client.post("/api/v1/escalations", json={
        "patient_id": patient_id, "level": level, "reason": reason, "text": "From a call"})
    assert response.status_code == 201, response.text
    escalation_id: int = response.json()["id"]
    return escalation_id


def team_patient(run: Runner, services: Services, clinic: Clinic, name: str) -> int:
    """Another patient of the clinic's prescriber and coordinator."""

    async def make() -> int:
        async with services.transaction() as session:
            now = services.clock.now()
            admin = Actor(clinic.admin.id, clinic.admin.role, clinic.admin.name,
                          clinic.admin.email)
            patient = await create_user(session, None, name=name, role=Role.patient,
                                        email=f"{name.lower().replace(' ', '.')}@clinic.test",
                                        password=None, now=now)
            for member in (clinic.prescriber, clinic.coordinator):
                await add_to_care_team(session, admin, patient_id=patient.id,
                                       member_id=member.id, now=now)
            return patient.id

    return run(make)


def test_queue_lists_open_escalations_by_level_then_deadline_with_emergency_info(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    avery = team_patient(run, services, clinic, "Avery Step")
    blake = team_patient(run, services, clinic, "Blake Early")
    casey = team_patient(run, services, clinic, "Casey Later")
    dana = team_patient(run, services, clinic, "Dana Taken")
    sign_in(clinic.coordinator)
    step_up = raise_by_hand(client, avery, "step_up", "relapse")          # raised first
    taken = raise_by_hand(client, dana, "urgent", "mania")
    assert client.post(f"/api/v1/escalations/{taken}/acknowledge").status_code == 200
    early = raise_by_hand(client, blake, "urgent", "psychosis")
    services.clock.advance(timedelta(minutes=2))
    later = raise_by_hand(client, casey, "urgent", "overdose_risk")
    sign_in(clinic.patient)
    emergency = submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))

    sign_in(clinic.coordinator)
    page = client.get("/coordinator")
    assert page.status_code == 200
    rows = by_test_id(page.text, ROW)
    # Highest level first; within a level the nearest deadline, acknowledged ones
    # (no deadline any more) after the open ones.
    assert [int(r.attrs["data-escalation-id"]) for r in rows] == \
        [emergency, early, later, taken, step_up]
    assert [r.attrs["data-level"] for r in rows] == \
        ["emergency", "urgent", "urgent", "urgent", "step_up"]
    assert [r.attrs["data-status"] for r in rows] == \
        ["open", "open", "open", "acknowledged", "open"]

    top = rows[0]
    text = words(top.text)
    assert "Emergency" in text and clinic.patient.name in text   # level as words, not only colour
    assert "Suicide risk screen high" in text                    # reasons in plain words
    assert "cssrs_high" not in page.text
    assert "12 Elm Street, Springfield" in text
    assert "Taylor Rivera" in text
    assert "tel:+16175550100" in top.hrefs and "tel:+16175550101" in top.hrefs
    assert "Acknowledge within 4 min 59 s" in text or "Acknowledge within 5 min 00 s" in text
    assert f"/escalations/{emergency}" in top.hrefs
    assert "Acknowledged by Coordinator" in words(rows[3].text)
    assert len(by_test_id(page.text, "acknowledge")) == 4          # not for the acknowledged

    # The fragment the live script reloads: the same rows, without the page around them.
    fragment = client.get("/coordinator?part=queue")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert [r.attrs["data-escalation-id"] for r in by_test_id(fragment.text, ROW)] == \
        [r.attrs["data-escalation-id"] for r in rows]

    # The deadline passes: the row says so.
    services.clock.advance(timedelta(minutes=6))
    overdue = by_test_id(client.get("/coordinator?part=queue").text, ROW)[0]
    assert "Overdue by" in words(overdue.text)
    assert "is-overdue" in overdue.attrs["class"]


def test_queue_keeps_todays_visits_and_shows_clinic_measures(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    sign_in(clinic.coordinator)
    services.clock.advance(timedelta(minutes=3))
    assert client.post(f"/api/v1/escalations/{escalation_id}/acknowledge").status_code == 200

    page = client.get("/coordinator?days=7")
    assert page.status_code == 200
    measures = by_test_id(page.text, "escalation-measures")[0]
    text = words(measures.text)
    assert "last 7 days" in text
    assert "median 3 min 00 s" in text and "90th percentile 3 min 00 s" in text
    assert 'value="7" selected' in page.text
    # Today's visits stay below the queue.
    assert "Today's visits for your care teams" in page.text
    assert f'data-visit-id="{clinic.visit_id}"' in page.text
    # An unknown period falls back to 30 days rather than failing the page.
    assert 'value="30" selected' in client.get("/coordinator?days=12").text


def test_escalation_page_shows_emergency_info_triggering_answers_and_timeline(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id, checkin_body(
        cssrs=HIGH_RISK_CSSRS, phq9=[3, 3, 3, 3, 3, 2, 2, 2, 1]))
    sign_in(clinic.coordinator)
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    call = client.post(f"{base}/events", json={"kind": "contact_attempt", "outcome": "voicemail",
                                               "text": "Left the crisis line number"})
    assert call.status_code == 201

    page = client.get(f"/escalations/{escalation_id}")
    assert page.status_code == 200
    html = page.text
    # Emergency information first, before the actions and the answers.
    assert html.index("12 Elm Street, Springfield") < html.index("What triggered it")
    assert html.index('data-testid="emergency-info"') < html.index('data-form="contact"')
    assert 'href="tel:+16175550100"' in html

    scores = words(by_test_id(html, "triggering-scores")[0].text)
    assert "C-SSRS suicide risk screen risk high" in scores
    assert "PHQ-9 depression 22 of 27, severe" in scores
    answers = words(by_test_id(html, "cssrs-answers")[0].text)
    assert "have you wished you were dead, or wished you could go to sleep and not wake " \
        "up? Yes" in answers
    assert "to end your life? For example" in answers
    assert "tried to hurt yourself to die. No" in answers
    assert "Was this within the past 3 months? Not asked" in answers
    assert "Thoughts that you would be better off dead" in html     # PHQ-9 item 9, as asked

    timeline = words(by_test_id(html, "escalation-timeline")[0].text)
    steps = ["Raised from the check-in at level Emergency", "Coordinator Acknowledged",
             "Coordinator Started working on it",
             "Coordinator Call to the patient: Left a voicemail Left the crisis line number"]
    positions = [timeline.index(step) for step in steps]
    assert positions == sorted(positions)

    # The actions the state allows are shown; the others are rendered hidden.
    assert re.search(r'data-when="open"\s+hidden', html)
    assert re.search(r'data-when="acknowledged in_progress">', html)
    for disposition in ("emergency_services", "mobile_crisis", "inpatient"):
        assert f'value="{disposition}"' in html
    # An emergency is closed by action: the form does not offer "no action needed".
    assert 'value="no_action_needed"' not in html
    assert by_test_id(html, "resolve-rule")
    assert "Mobile crisis team" in html

    live = client.get(f"/escalations/{escalation_id}?part=live")
    assert live.status_code == 200
    assert 'data-part="summary"' in live.text and 'data-part="timeline"' in live.text
    assert 'data-form="resolve"' not in live.text


def test_resolved_escalation_shows_its_disposition_and_no_open_actions(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.coordinator)
    escalation_id = raise_by_hand(client, clinic.patient.id, "urgent", "psychosis")
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    # An urgent escalation closes once someone reached the patient (invariant 6).
    assert client.post(f"{base}/events", json={
        "kind": "contact_attempt", "outcome": "reached"}).status_code == 201
    assert client.post(f"{base}/resolve", json={
        "disposition": "no_action_needed", "note": "Spoke with the patient and family",
        "reason": "Known voices, unchanged, safety plan in place"}).status_code == 200

    html = client.get(f"/escalations/{escalation_id}").text
    resolution = words(by_test_id(html, "resolution")[0].text)
    assert "Resolved: No action needed" in resolution
    assert "Known voices, unchanged, safety plan in place" in resolution
    assert re.search(r'data-form="assign" data-when="open acknowledged in_progress" novalidate'
                     r'\s+aria-labelledby="assign-title"\s+hidden', html)
    assert "Raised by hand by Coordinator" in html
    # Resolved escalations leave the queue.
    assert by_test_id(client.get("/coordinator").text, ROW) == []


def test_pages_carry_no_inline_script_or_style(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    # The CSP (server/middleware.py) allows neither: they would silently not work.
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    sign_in(clinic.coordinator)
    for path in ("/coordinator", f"/escalations/{escalation_id}"):
        html = client.get(path).text
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert re.search(r" on[a-z]+=", html) is None, path


# --- who may see them ------------------------------------------------------------------

PAGES = ("/coordinator", "/coordinator?part=queue", "/escalations/{id}",
         "/escalations/{id}?part=live")


@pytest.mark.parametrize(("role", "expected"), [
    ("anonymous", (303, 303, 303, 303)),
    ("patient", (403, 403, 403, 403)),
    ("patient2", (403, 403, 403, 403)),
    ("prescriber", (403, 403, 200, 200)),
    ("other_prescriber", (403, 403, 403, 403)),
    ("coordinator", (200, 200, 200, 200)),
    ("other_coordinator", (200, 200, 403, 403)),
    ("admin", (403, 403, 403, 403)),
])
def test_who_may_open_the_escalation_pages(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    role: str, expected: tuple[int, ...],
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    person: Person | None = None if role == "anonymous" else getattr(clinic, role)
    sign_in(person)
    for path, status in zip(PAGES, expected, strict=True):
        url = path.format(id=escalation_id)
        response = client.get(url, follow_redirects=False)
        assert response.status_code == status, (url, response.text[:200])
        if status == 303:
            assert response.headers["location"] == "/login"
        if status == 200 and path.startswith("/coordinator"):
            # Another team's coordinator gets a queue, without this patient in it.
            ids = [r.attrs["data-escalation-id"] for r in by_test_id(response.text, ROW)]
            assert ids == ([str(escalation_id)] if role == "coordinator" else [])
        if status == 403:
            assert "text/html" in response.headers["content-type"]
            assert "12 Elm Street" not in response.text


@pytest.mark.parametrize("role", ["patient2", "other_coordinator", "other_prescriber"])
def test_refused_escalation_reads_are_audited(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    role: str,
) -> None:
    sign_in(clinic.patient)
    escalation_id = submit(client, clinic.visit_id, checkin_body(cssrs=HIGH_RISK_CSSRS))
    person: Person = getattr(clinic, role)
    sign_in(person)
    assert client.get(f"/escalations/{escalation_id}").status_code == 403

    async def denials() -> list[tuple[int | None, str, str | None]]:
        async with services.transaction() as session:
            rows = await session.execute(
                select(AuditEntry.patient_id, AuditEntry.resource_type,
                       AuditEntry.resource_id)
                .where(AuditEntry.actor_id == person.id, AuditEntry.outcome == "denied"))
            return [(p, t, i) for p, t, i in rows]

    assert (clinic.patient.id, "escalation", str(escalation_id)) in run(denials)
