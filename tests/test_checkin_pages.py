"""The check-in page, the staff patient page, the patient's progress page and the charts.

Pages are read as HTML by a small parser (what a browser without JavaScript gets); the
flow itself runs in Chromium in tests/test_browser_checkin.py.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server import checkins
from server.demo import seed
from server.instruments import INSTRUMENTS
from server.models import CheckIn, MeasureResult, User, Visit, VisitKind, VisitStatus
from server.services import Services
from server.triage import evaluate
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from web import charts
from web.charts import ChartPoint, TrendChart, trend_chart
from web.pages.checkin import (
    MISSED_DOSE_REASON_LABELS,
    SIDE_EFFECT_LABELS,
    SUBSTANCE_LABELS,
    answer_value,
)

# --- reading pages ------------------------------------------------------------------


@dataclass
class Page:
    """What a page holds: its text, its inputs, elements by id, and their attributes."""

    text: str = ""
    inputs: list[dict[str, str | None]] = field(default_factory=list)
    by_id: dict[str, dict[str, str | None]] = field(default_factory=dict)
    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)

    def checked(self, name: str) -> set[str]:
        return {str(i["value"]) for i in self.inputs
                if i.get("name") == name and "checked" in i}

    def values(self, name: str) -> set[str]:
        return {str(i["value"]) for i in self.inputs if i.get("name") == name}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self.chunks: list[str] = []
        self.textarea: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.page.tags.append((tag, found))
        if found.get("id"):
            self.page.by_id[str(found["id"])] = found | {"tag": tag}
        if tag == "input":
            self.page.inputs.append(found)
        if tag == "textarea":
            self.textarea = found | {"value": ""}
            self.page.inputs.append(self.textarea)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        if self.textarea is not None:
            self.textarea["value"] = str(self.textarea["value"]) + data


def read(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.page.text = " ".join(" ".join(reader.chunks).split())
    return reader.page


def svg(markup: object) -> ET.Element:
    return ET.fromstring(str(markup))  # noqa: S314 (our own markup, not untrusted input)


def words(text: str) -> str:
    return " ".join(text.split())


def checkin_url(visit_id: int) -> str:
    return f"/visits/{visit_id}/checkin"


def add_visit(run: Runner, services: Services, clinic: Clinic, *, at: datetime | None = None,
              status: VisitStatus = VisitStatus.scheduled) -> int:
    async def make() -> int:
        async with services.transaction() as session:
            now = services.clock.now()
            visit = Visit(patient_id=clinic.patient.id, prescriber_id=clinic.prescriber.id,
                          kind=VisitKind.follow_up, scheduled_at=at or now + timedelta(hours=1),
                          duration_minutes=15, status=status, created_at=now)
            session.add(visit)
            await session.flush()
            return visit.id

    return run(make)


def two_phq9_checkins(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
                      services: Services) -> None:
    """PHQ-9 20 then 4 (GAD-7 7 then 2): a response and a remission."""
    sign_in(clinic.patient)
    first = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body(
        phq9=[3, 3, 3, 3, 2, 2, 2, 2, 0], gad7=[1, 1, 1, 1, 1, 1, 1]))
    assert first.status_code == 201, first.text
    second_visit = add_visit(run, services, clinic,
                             at=services.clock.now() + timedelta(days=28, hours=1))
    services.clock.advance(timedelta(days=28))
    sign_in(clinic.patient)
    second = client.post(f"/api/v1/visits/{second_visit}/checkin", json=checkin_body(
        phq9=[1, 1, 1, 1, 0, 0, 0, 0, 0], gad7=[1, 1, 0, 0, 0, 0, 0]))
    assert second.status_code == 201, second.text


# --- the check-in page ----------------------------------------------------------------


def test_checkin_page_has_every_question_and_option(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    needs = client.get(f"/api/v1/visits/{clinic.visit_id}/checkin").json()["needs"]
    assert needs == ["phq9", "gad7", "auditc", "asrm"]
    response = client.get(checkin_url(clinic.visit_id))
    assert response.status_code == 200
    page = read(response.text)
    # The screener is on the page (hidden until item 9 is above 0), with its skip logic.
    for name in [*needs, "cssrs"]:
        instrument = INSTRUMENTS[name]
        assert words(instrument.intro) in page.text
        for item in instrument.items:
            assert words(item.text) in page.text, f"{name} {item.id}"
            input_name = f"responses.{name}.{item.answer_path}"
            assert page.values(input_name) == {answer_value(o.value) for o in item.options}
            for option in item.options:
                assert words(option.label) in page.text
    q3 = page.by_id["responses-cssrs-answers-q3"]
    assert q3["data-asked-if"] == "responses.cssrs.answers.q2=true"
    assert page.by_id["responses-cssrs-answers-q6_recent"]["data-asked-if"] == \
        "responses.cssrs.answers.q6=true"
    assert "hidden" in page.by_id["part-cssrs"]
    # The non-scored parts and the emergency information.
    for labels in (SIDE_EFFECT_LABELS, MISSED_DOSE_REASON_LABELS, SUBSTANCE_LABELS):
        for label in labels.values():
            assert label in page.text
    assert page.values("side_effects.effect") == set(SIDE_EFFECT_LABELS)
    assert page.values("side_effects.tremor.severity") == {"mild", "moderate", "severe"}
    assert page.values("missed_doses.days_missed") == {str(d) for d in range(8)}
    assert page.values("substance_use.cravings") == {str(c) for c in range(11)}
    assert page.values("sleep.quality") == {"good", "fair", "poor"}
    assert page.values("sex") == {"female", "male", ""}
    assert page.checked("sex") == set()  # not known yet, and nothing chosen for them
    for name in ("location.address", "callback_phone", "emergency_contact.name",
                 "emergency_contact.phone", "confirm.location", "confirm.contact"):
        assert page.values(name) or any(i.get("name") == name for i in page.inputs), name
    # Crisis resources are on the page, hidden until a save says so.
    crisis = page.by_id["crisis-resources"]
    assert crisis["data-testid"] == "crisis-resources" and "hidden" in crisis
    assert 'href="tel:988"' in response.text and 'href="sms:988"' in response.text
    assert 'href="tel:911"' in response.text
    assert "press 1 for the Veterans Crisis Line" in page.text


def test_the_form_offers_exactly_what_the_api_accepts() -> None:
    assert tuple(SIDE_EFFECT_LABELS) == checkins.SIDE_EFFECTS
    assert tuple(MISSED_DOSE_REASON_LABELS) == checkins.MISSED_DOSE_REASONS


def test_checkin_page_keeps_to_the_content_security_policy(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    page = read(client.get(checkin_url(clinic.visit_id)).text)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert not [tag for tag, attrs in page.tags if "style" in attrs]
    assert not [tag for tag, attrs in page.tags if any(k.startswith("on") for k in attrs)]


def test_every_question_has_a_label_or_legend(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    html = client.get(checkin_url(clinic.visit_id)).text
    # Every radio and checkbox sits inside its <label>; text fields have a label for=.
    for match in re.finditer(r'<input[^>]*type="(radio|checkbox)"', html):
        opened = html.rfind("<label", 0, match.start())
        closed = html.rfind("</label>", 0, match.start())
        assert opened > closed, html[match.start():match.start() + 120]
    page = read(html)
    labelled = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
    for field_input in page.inputs:
        if field_input.get("type") in ("radio", "checkbox"):
            continue
        assert field_input.get("id") in labelled, field_input
    assert html.count("<fieldset class=\"q\"") == html.count("<legend>") - \
        html.count("<legend>How bad is it?")


@pytest.mark.parametrize("who,status", [
    ("patient2", 403), ("prescriber", 403), ("coordinator", 403), ("admin", 403),
    (None, 303),
])
def test_checkin_page_is_for_the_patient_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str | None, status: int
) -> None:
    sign_in(getattr(clinic, who) if who else None)
    response = client.get(checkin_url(clinic.visit_id), follow_redirects=False)
    assert response.status_code == status
    if status == 303:
        assert response.headers["location"] == "/login"


def test_a_join_link_session_checks_in_for_its_own_visit_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    other = add_visit(run, services, clinic)
    sign_in(clinic.patient, visit_id=clinic.visit_id)
    assert client.get(checkin_url(clinic.visit_id)).status_code == 200
    assert client.get(checkin_url(other)).status_code == 403


def test_the_page_resumes_the_saved_draft(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    draft = {
        "responses": {"phq9": {"answers": [1, 2, None, None, None, None, None, None, 1]},
                      "cssrs": {"answers": {"q1": True, "q2": False, "q3": None}}},
        "sex": "female",
        "side_effects": [{"effect": "tremor", "severity": "moderate"},
                         {"effect": "other", "severity": "mild", "details": "dry <mouth>"}],
        "missed_doses": {"days_missed": 2, "reasons": ["forgot", "felt_better"]},
        "sleep": {"hours": 6.5, "quality": "poor"},
        "substance_use": {"cravings": 4, "used_since_last_visit": True,
                          "substances": ["alcohol"], "details": "a beer"},
    }
    saved = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft", json=draft)
    assert saved.status_code == 200
    assert saved.json()["crisis"] is True  # item 9 above 0 without a finished screener
    html = client.get(checkin_url(clinic.visit_id)).text
    page = read(html)
    assert page.checked("responses.phq9.answers.0") == {"1"}
    assert page.checked("responses.phq9.answers.1") == {"2"}
    assert page.checked("responses.phq9.answers.2") == set()
    assert page.checked("responses.phq9.answers.8") == {"1"}
    assert page.checked("responses.cssrs.answers.q1") == {"true"}
    assert page.checked("responses.cssrs.answers.q2") == {"false"}
    assert page.checked("sex") == {"female"}
    assert page.checked("side_effects.effect") == {"tremor", "other"}
    assert page.checked("side_effects.tremor.severity") == {"moderate"}
    assert page.values("side_effects.other.details") == {"dry <mouth>"}
    assert "dry &lt;mouth&gt;" in html
    assert page.checked("missed_doses.days_missed") == {"2"}
    assert page.checked("missed_doses.reasons") == {"forgot", "felt_better"}
    assert page.values("sleep.hours") == {"6.5"}
    assert page.checked("sleep.quality") == {"poor"}
    assert page.checked("substance_use.cravings") == {"4"}
    assert page.checked("substance_use.used_since_last_visit") == {"true"}
    assert page.checked("substance_use.substances") == {"alcohol"}
    assert page.values("location.address") == {""}  # nothing given, nothing on file
    # The screener stays shown, the crisis resources too, and nothing is confirmed yet.
    assert "hidden" not in page.by_id["part-cssrs"]
    assert page.by_id["checkin-form"]["data-cssrs-shown"] == "1"
    assert "hidden" not in page.by_id["crisis-resources"]
    assert page.by_id["crisis-resources"]["data-level"] == "urgent"
    assert page.checked("confirm.location") == set()
    assert page.checked("confirm.contact") == set()
    # With the visit's risk urgent and no location confirmed today, the form asks where
    # the patient is first: it knows both from the page.
    form = page.by_id["checkin-form"]
    assert form["data-crisis-level"] == "urgent"
    assert form["data-where-confirmed-at"] == ""
    assert page.by_id["where-state"]["data-state"] == "new"


def test_a_draft_from_another_client_cannot_break_the_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    odd = {"responses": {"phq9": "x", "gad7": {"answers": {"a": [1]}}, "cssrs": [True]},
           "side_effects": [1, {"effect": {"x": 1}}], "missed_doses": [],
           "sleep": "well", "substance_use": {"substances": "many"}, "location": None,
           "sex": 3}
    assert client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft",
                      json=odd).status_code == 200
    assert client.get(checkin_url(clinic.visit_id)).status_code == 200
    # Emergency information in a draft is checked as strictly as anywhere (invariant 8).
    odd["emergency_contact"] = ["x"]
    refused = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft", json=odd)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"].startswith("emergency_contact")
    assert client.get(checkin_url(clinic.visit_id)).status_code == 200


def test_emergency_information_is_prefilled_from_last_time_to_confirm_again(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    # A day later: on file from last time, no longer confirmed today.
    services.clock.advance(timedelta(hours=services.settings.location_confirm_hours + 1))
    sign_in(clinic.patient)
    page = read(client.get(checkin_url(add_visit(run, services, clinic))).text)
    assert page.values("location.address") == {"12 Elm Street, Springfield"}
    assert page.values("callback_phone") == {"+1 617-555-0100"}  # stored E.164, shown readable
    assert page.values("emergency_contact.name") == {"Taylor Rivera"}
    assert "We filled this in from last time" in page.text
    assert page.by_id["where-state"]["data-state"] == "on-file"
    assert "not confirmed today" in page.text
    assert page.checked("confirm.location") == set()
    # AUDIT-C was just done, so sex is not asked again; the form sends last time's.
    assert "sex" not in {i.get("name") for i in page.inputs}
    assert page.by_id["checkin-form"]["data-prefill-sex"] == "female"


def test_a_completed_checkin_shows_what_happens_next(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body())
    html = client.get(checkin_url(clinic.visit_id)).text
    page = read(html)
    assert "checkin-form" not in page.by_id
    assert "hidden" not in page.by_id["checkin-done"]
    assert "Thank you. Your check-in is done." in page.text
    assert "What happens next" in page.text
    assert page.by_id["checkin-done"]["data-testid"] == "checkin-done"
    assert f'href="/visits/{clinic.visit_id}"' in html
    assert "checkin.js" not in html


def test_an_emergency_checkin_keeps_the_crisis_resources_after_completion(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    body = checkin_body(phq9=[1, 1, 1, 1, 0, 0, 0, 0, 2], cssrs=HIGH_RISK_CSSRS)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=body).json()[
        "level"] == "emergency"
    page = read(client.get(checkin_url(clinic.visit_id)).text)
    assert "hidden" not in page.by_id["crisis-resources"]
    assert page.by_id["crisis-resources"]["data-level"] == "emergency"


def test_checkin_page_before_it_opens_and_after_the_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    later = add_visit(run, services, clinic, at=services.clock.now() + timedelta(days=5))
    ended = add_visit(run, services, clinic, at=services.clock.now() - timedelta(days=1),
                      status=VisitStatus.completed)
    sign_in(clinic.patient)
    early = read(client.get(checkin_url(later)).text)
    assert "opens 3 days before your visit" in early.text
    assert "checkin-form" not in early.by_id
    over = read(client.get(checkin_url(ended)).text)
    assert "check-in is closed" in over.text


def test_patient_home_links_each_scheduled_visit_to_its_checkin(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    html = client.get("/home").text
    assert f'href="/visits/{clinic.visit_id}/checkin"' in html
    assert 'href="/progress"' in html
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body())
    assert f'href="/visits/{clinic.visit_id}/checkin"' not in client.get("/home").text


# --- draft triage of a screener in progress (server/checkins.py) ---------------------


@pytest.mark.parametrize("answers,level", [
    ({"q1": True, "q2": True, "q3": False, "q4": True}, "emergency"),   # intent
    ({"q1": True, "q2": True, "q3": None, "q4": None, "q5": True}, "emergency"),  # plan
    ({"q1": False, "q2": False, "q6": True}, "urgent"),  # past behaviour, recency unknown
    ({"q1": True, "q2": True, "q3": True}, "urgent"),    # a method
    ({"q1": True}, "urgent"),  # not enough yet: item 9 is still unassessed
])
def test_a_screener_in_progress_counts_at_the_least_risk_it_already_shows(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    answers: dict[str, bool | None], level: str,
) -> None:
    sign_in(clinic.patient)
    draft = {"responses": {"phq9": {"answers": [0, 0, 0, 0, 0, 0, 0, 0, 1]},
                           "cssrs": {"answers": answers}}}
    saved = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft", json=draft).json()
    assert saved["level"] == level
    assert saved["crisis"] is True
    assert saved["requires"] == ["cssrs"]  # the rest of the screener is still asked

    async def stored() -> str | None:
        async with services.transaction() as session:
            checkin = await session.scalar(select(CheckIn))
            assert checkin is not None
            return checkin.level

    assert run(stored) == level


def test_item9_counts_before_the_rest_of_phq9_is_answered(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    draft = {"responses": {"phq9": {"answers": [None] * 8 + [2]}}}
    saved = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft", json=draft).json()
    assert (saved["level"], saved["requires"], saved["crisis"]) == ("urgent", ["cssrs"], True)


def test_a_screener_in_progress_against_skip_logic_is_not_guessed_at(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    draft = {"responses": {"cssrs": {"answers": {"q2": False, "q4": True}}}}
    saved = client.put(f"/api/v1/visits/{clinic.visit_id}/checkin/draft", json=draft).json()
    assert saved["level"] == "none"


# --- the staff patient page and the patient's progress -------------------------------


def test_staff_patient_page_shows_scores_flags_and_charts(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    two_phq9_checkins(client, clinic, sign_in, run, services)
    sign_in(clinic.prescriber)
    response = client.get(f"/patients/{clinic.patient.id}")
    assert response.status_code == 200
    html = response.text
    page = read(html)
    assert clinic.patient.name in page.text
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 2
    phq9 = svg(svgs[0])
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert phq9.get("role") == "img"
    bands = [r.get("data-band") for r in phq9.findall("s:rect", ns)]
    assert bands == ["minimal", "mild", "moderate", "moderately_severe", "severe"]
    desc = phq9.find("s:desc", ns)
    assert desc is not None and desc.text is not None
    assert "20 (severe)" in desc.text and "4 (minimal)" in desc.text
    assert "down 16 from the baseline of 20" in desc.text
    gad7 = svg(svgs[1])
    assert [r.get("data-band") for r in gad7.findall("s:rect", ns)] == [
        "minimal", "mild", "moderate", "severe"]
    section = html[html.index('id="measure-phq9"'):html.index('id="measure-gad7"')]
    assert 'data-flag="response" data-on="true"' in section
    assert 'data-flag="remission" data-on="true"' in section
    assert 'data-flag="worsened" data-on="false"' in section
    assert '<strong class="score" data-testid="latest-score">4</strong>' in section
    assert "AUDIT-C alcohol" in page.text


def test_staff_see_the_patient_page_from_their_visit_lists(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.coordinator)
    assert f'href="/patients/{clinic.patient.id}"' in client.get("/coordinator").text


@pytest.mark.parametrize("who,status", [
    ("prescriber", 200), ("coordinator", 200), ("other_prescriber", 403),
    ("other_coordinator", 403), ("admin", 403), ("patient2", 403), (None, 303),
])
def test_patient_page_access(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str | None, status: int
) -> None:
    sign_in(getattr(clinic, who) if who else None)
    response = client.get(f"/patients/{clinic.patient.id}", follow_redirects=False)
    assert response.status_code == status


def test_a_patient_asking_for_their_own_patient_page_goes_to_progress(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    response = client.get(f"/patients/{clinic.patient.id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/progress"


def test_progress_in_plain_words(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert "You have no scores yet" in read(client.get("/progress").text).text
    two_phq9_checkins(client, clinic, sign_in, run, services)
    html = client.get("/progress").text
    page = read(html)
    assert "Your depression score went from 20 to 4. Lower is better." in page.text
    assert "Your anxiety score went from 7 to 2. Lower is better." in page.text
    assert html.count('role="img"') == 2
    assert "Your depression scores" in page.text  # the chart's title
    assert "cssrs" not in html and "AUDIT-C" not in page.text


@pytest.mark.parametrize("who,status", [("prescriber", 403), ("admin", 403), (None, 303)])
def test_progress_is_the_patients_own(
    client: TestClient, clinic: Clinic, sign_in: SignIn, who: str | None, status: int
) -> None:
    sign_in(getattr(clinic, who) if who else None)
    assert client.get("/progress", follow_redirects=False).status_code == status


def test_progress_is_not_for_a_join_link_session(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient, visit_id=clinic.visit_id)
    assert client.get("/progress").status_code == 403


# --- charts ---------------------------------------------------------------------------

T0 = datetime(2025, 1, 12, 15, 0, tzinfo=UTC)


def series(*totals: int, days: int = 28) -> list[ChartPoint]:
    return [ChartPoint(T0 + timedelta(days=days * i), total) for i, total in enumerate(totals)]


def test_chart_bands_follow_the_instruments_severity_bands() -> None:
    assert [(b.low, b.high, b.name) for b in charts.BANDS["phq9"]] == [
        (0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"),
        (15, 19, "moderately_severe"), (20, 27, "severe")]
    assert [(b.low, b.high, b.name) for b in charts.BANDS["gad7"]] == [
        (0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe")]


def test_chart_coordinates() -> None:
    chart = TrendChart("phq9", tuple(series(20, 12, 4)), "c", "PHQ-9")
    assert chart.y(0) == chart.plot_bottom
    assert chart.y(27) == chart.plot_top
    first, middle, last = (chart.x(p.at) for p in chart.points)
    assert first == chart.plot_left + chart.inset
    assert last == chart.data_right - chart.inset
    assert middle == pytest.approx((first + last) / 2, abs=0.01)
    assert chart.y(20) < chart.y(12) < chart.y(4)  # higher scores are drawn higher
    # Bands tile the plot from 0 to the maximum without gaps or overlaps.
    boxes = [chart.band_box(b) for b in charts.BANDS["phq9"]]
    assert boxes[0][1] == chart.plot_bottom and boxes[-1][0] == chart.plot_top
    for (top, _), (_, bottom) in itertools.pairwise(boxes):
        assert top == bottom
    # A total on a band's lowest value is inside that band, not on its edge.
    mild_top, mild_bottom = chart.band_box(charts.BANDS["phq9"][1])
    assert mild_top < chart.y(5) < mild_bottom


def test_chart_points_line_and_baseline_in_the_svg() -> None:
    tree = svg(trend_chart("phq9", series(20, 12, 4), chart_id="t"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    circles = tree.findall("s:circle", ns)
    assert [c.get("data-total") for c in circles] == ["20", "12", "4"]
    assert "baseline-point" in str(circles[0].get("class"))
    chart = TrendChart("phq9", tuple(series(20, 12, 4)), "t", "x")
    assert [(float(str(c.get("cx"))), float(str(c.get("cy")))) for c in circles] == [
        (chart.x(p.at), chart.y(p.total)) for p in chart.points]
    line = tree.find("s:polyline", ns)
    assert line is not None
    assert len(str(line.get("points")).split()) == 3
    baseline = tree.find("s:line[@class='baseline']", ns)
    assert baseline is not None and baseline.get("data-total") == "20"
    assert baseline.get("y1") == str(chart.y(20))


def test_chart_is_an_image_with_a_title_and_a_description_in_words() -> None:
    tree = svg(trend_chart("gad7", series(15, 8), chart_id="g", title="Anxiety <scores>"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert tree.get("role") == "img"
    assert tree.get("aria-labelledby") == "g-title g-desc"
    title = tree.find("s:title", ns)
    desc = tree.find("s:desc", ns)
    assert title is not None and title.get("id") == "g-title"
    assert title.text == "Anxiety <scores>"  # escaped in the markup, intact as text
    assert desc is not None and desc.get("id") == "g-desc"
    assert desc.text == (
        "2 GAD-7 anxiety scores, out of 21: 15 (severe) on 12 Jan 2025, 8 (mild) on "
        "9 Feb 2025. The latest is down 7 from the baseline of 15. Lower is better.")


def test_chart_with_one_point_centres_it_and_says_it_is_the_baseline() -> None:
    chart = TrendChart("phq9", tuple(series(9)), "one", "PHQ-9")
    assert chart.x(T0) == (chart.plot_left + chart.data_right) / 2
    assert chart.description().endswith("This is the baseline, 9. Lower is better.")
    assert svg(chart.svg()).find("{http://www.w3.org/2000/svg}polyline") is None


def test_chart_without_points_says_so() -> None:
    chart = TrendChart("gad7", (), "none", "GAD-7")
    assert chart.description() == "No GAD-7 anxiety scores yet."
    svg(chart.svg())


@pytest.mark.parametrize("points,problem", [
    ([ChartPoint(T0, 28)], "from 0 to 27"),
    ([ChartPoint(T0, -1)], "from 0 to 27"),
    ([ChartPoint(T0.replace(tzinfo=None), 3)], "timezone-aware"),
    ([ChartPoint(T0, 3), ChartPoint(T0 - timedelta(days=1), 3)], "chronological"),
])
def test_chart_refuses_bad_points(points: list[ChartPoint], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TrendChart("phq9", tuple(points), "bad", "x")


# --- demo data --------------------------------------------------------------------------


def test_demo_has_an_improving_trend_over_the_earlier_visits(
    run: Runner, services: Services
) -> None:
    async def seed_demo() -> None:
        await seed(services, password="demo-password-for-tests")

    run(seed_demo)
    run(seed_demo)  # idempotent

    async def history() -> tuple[list[tuple[str, int | None]], list[CheckIn], int]:
        async with services.transaction() as session:
            patient = await session.scalar(select(User).where(
                User.email == "patient@demo.test"))
            assert patient is not None
            rows = (await session.scalars(select(MeasureResult).where(
                MeasureResult.patient_id == patient.id).order_by(
                MeasureResult.at, MeasureResult.id))).all()
            checkins = (await session.scalars(select(CheckIn))).all()
            return [(r.instrument, r.total) for r in rows], list(checkins), patient.id

    rows, checkins, _ = run(history)
    assert [t for name, t in rows if name == "phq9"] == [17, 10]
    assert [t for name, t in rows if name == "gad7"] == [13, 8]
    assert len(checkins) == 2
    # Stored exactly as a real completion would have stored them.
    for checkin in checkins:
        result = evaluate(checkin.data, services.rules)
        assert checkin.level == result.level.value
        assert checkin.reasons == [r.value for r in result.reasons]
        assert checkin.scores == result.scores.to_json()
        assert checkin.callback_phone and checkin.location_address
