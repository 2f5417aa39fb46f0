"""The note panel in the visit room and the after-visit summary page, rendered by the
real app from real check-ins, notes and escalations; and the call-drop alert."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, OutboxEmail, Visit, VisitStatus
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import connect, cookie_of

SEVERE_ANXIETY = [3, 3, 3, 3, 3, 0, 0]  # GAD-7 15: gad7_severe, level review


class Page(HTMLParser):
    """Elements with attributes (by data-testid and by id), and every inline script or
    style the page would need the CSP to allow."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_testid: dict[str, list[dict[str, str | None]]] = {}
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.inline: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        found["_tag"] = tag
        if "data-testid" in found:
            self.by_testid.setdefault(str(found["data-testid"]), []).append(found)
        if "id" in found:
            self.by_id[str(found["id"])] = found
        if "style" in found or tag == "style":
            self.inline.append(f"<{tag} style>")
        if any(name.startswith("on") for name in found):
            self.inline.append(f"<{tag} on...>")
        if tag == "script" and not found.get("src"):
            self.inline.append("<script> without src")

    def has(self, testid: str) -> bool:
        return testid in self.by_testid


def previous_signed_visit(client: TestClient, clinic: Clinic, run: Runner,
                          services: Services, *, plan: str,
                          changes: list[dict[str, Any]]) -> None:
    """The patient's earlier visit (the clinic's second visit, moved to this patient) with
    a signed note: the last plan, and the medication list it starts."""

    async def move() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit2_id)
            assert visit is not None
            visit.patient_id = clinic.patient.id

    run(move)
    url = f"/api/v1/visits/{clinic.visit2_id}/note"
    saved = client.put(url, json={"version": 0, "sections": {"plan": plan},
                                  "medication_changes": changes})
    assert saved.status_code == 200, saved.text
    assert client.post(f"{url}/sign", json={"version": 1}).status_code == 200


SERTRALINE = {"action": "start", "drug": "Sertraline", "dose": "50", "unit": "mg",
              "route": "oral", "frequency": "once daily", "reason": "Depression"}
LITHIUM = {"action": "start", "drug": "Lithium", "dose": "300", "unit": "mg",
           "route": "oral", "frequency": "twice daily", "reason": "Mood stabilisation"}


def test_the_prescribers_room_has_the_panel_on_first_paint(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    previous_signed_visit(client, clinic, run, services, plan="Start sertraline; labs for "
                          "lithium in 4 weeks.", changes=[SERTRALINE, LITHIUM])
    sign_in(clinic.patient)
    checked_in = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                             json=checkin_body(gad7=SEVERE_ANXIETY))
    assert checked_in.status_code == 201, checked_in.text

    sign_in(clinic.prescriber)
    response = client.get(f"/visits/{clinic.visit_id}")
    assert response.status_code == 200
    html = response.text
    page = Page(html)
    assert page.has("note-panel")
    panel = page.by_testid["note-panel"][0]
    assert panel["data-can-write"] == "1"
    assert panel["data-user-id"] == str(clinic.prescriber.id)
    # Emergency information from this visit's check-in, the number as a tel: link.
    assert "12 Elm Street, Springfield" in html
    callback = page.by_testid["escalation-callback"][0]
    assert callback["href"] == "tel:+16175550100"
    assert "Taylor Rivera" in html
    # Confirmed by the patient in this check-in, with when; not "not confirmed today".
    assert not page.has("location-not-confirmed")
    assert page.by_testid["emergency-info"][0]["data-confirmed"] == "1"
    # This check-in's reasons with their levels.
    assert re.search(r'data-reason="gad7_severe" data-level="review"', html)
    # Scores with server-rendered trend charts.
    assert re.search(r'<svg[^>]*id="panel-gad7"[^>]*role="img"', html)
    assert re.search(r'<svg[^>]*id="panel-phq9"', html)
    # Current medications with the monitoring flag, and the last plan.
    assert re.search(r'data-drug="Sertraline" data-dose="50"', html)
    flags = page.by_testid["monitoring-flag"]
    assert len(flags) == 1 and flags[0]["data-status"] == "upcoming"
    assert "<strong>Needs monitoring:</strong> Lithium level, TSH, Creatinine/eGFR, " \
        "Calcium; next due" in html
    assert "Start sertraline; labs for lithium in 4 weeks." in html
    # What the patient reported: side effects and missed doses.
    assert "Feeling sleepy, drowsy or slowed down" in html
    assert "Missed doses in the last week: <strong>1 day</strong>" in html
    # The structured note: the safety assessment is required (a review reason).
    assert page.has("note-save-state")
    assert "Required before signing" in html
    assert page.by_id["note-safety_plan"]["aria-required"] == "true"
    assert 'data-testid="follow-up-reason"' in html
    assert page.by_id["note-sign"]["_tag"] == "button"
    assert page.by_id["panel-handle"]["role"] == "separator"
    assert json.loads(str(panel["data-note"]))["safety_reasons"] == ["gad7_severe"]
    # Nothing the CSP (script-src 'self'; style-src 'self') would block.
    assert page.inline == []


def test_patients_never_get_the_panel(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=checkin_body())
    response = client.get(f"/visits/{clinic.visit_id}")
    assert response.status_code == 200
    page = Page(response.text)
    assert not page.has("note-panel")
    assert "data-note" not in response.text
    assert "note-panel.js" not in response.text
    for part in ("safety", "labs", "medications"):
        assert client.get(f"/visits/{clinic.visit_id}?part={part}").status_code == 404


def test_coordinators_read_the_panel_without_writing(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    note = f"/api/v1/visits/{clinic.visit_id}/note"
    client.put(note, json={"version": 0, "sections": {"plan": "Walk daily."}})
    sign_in(clinic.coordinator)
    page = Page(html := client.get(f"/visits/{clinic.visit_id}").text)
    assert page.by_testid["note-panel"][0]["data-can-write"] == "0"
    assert "Walk daily." in html
    assert "readonly" in page.by_id["note-plan"]
    assert "note-sign" not in page.by_id
    # Nothing confirmed yet: the panel says to ask where the patient is.
    assert page.has("location-not-confirmed")
    assert page.by_testid["emergency-info"][0]["data-confirmed"] == "0"


def test_the_panel_stays_after_the_visit_has_ended(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    async def end() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            visit.status = VisitStatus.completed

    run(end)
    sign_in(clinic.prescriber)
    html = client.get(f"/visits/{clinic.visit_id}").text
    page = Page(html)
    assert page.has("note-panel")  # the note is often finished after the call
    assert "/static/note-panel.js" in html and "/static/visit-room.js" not in html
    assert "panel-handle" not in page.by_id


def test_emergency_mode_shows_where_the_patient_is_and_what_to_do(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                json=checkin_body(cssrs=HIGH_RISK_CSSRS))
    sign_in(clinic.prescriber)
    html = client.get(f"/visits/{clinic.visit_id}").text
    page = Page(html)
    assert page.has("emergency-mode")
    location = "12 Elm Street, Springfield"
    assert re.search(rf'data-testid="emergency-location">{location} — <span[^>]*>'
                     r'Massachusetts</span></dd>', html)
    assert page.by_testid["emergency-callback"][0]["href"] == "tel:+16175550100"
    for step in ("Keep the patient on the call", "Confirm where they are right now",
                 "get 911 to the patient's location", "Warm handoff to the coordinator",
                 "Document"):
        assert step in html
    assert re.search(r'data-open-escalation data-escalation-id="\d+"\s+data-level="emergency"',
                     html)
    assert page.has("call-drop-alert")
    # The part the panel fetches again when an escalation changes.
    part = client.get(f"/visits/{clinic.visit_id}?part=safety")
    assert part.status_code == 200
    assert 'data-testid="emergency-mode"' in part.text
    assert "<html" not in part.text
    # And the raise form for more reasons, with the manual vocabulary.
    assert 'value="suicidal_ideation_plan_or_intent"' in html


def test_emergency_mode_after_the_visit_no_longer_says_keep_them_on_the_call(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                json=checkin_body(cssrs=HIGH_RISK_CSSRS))

    async def end_visit() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            visit.status = VisitStatus.completed
            visit.ended_at = services.clock.now()

    sign_in(clinic.prescriber)
    live = Page(client.get(f"/visits/{clinic.visit_id}").text)
    assert live.has("emergency-steps-live") and not live.has("emergency-steps-after")
    run(end_visit)
    html = client.get(f"/visits/{clinic.visit_id}?part=safety").text
    page = Page(html)
    assert page.has("emergency-mode")  # the escalation is still open
    assert page.has("emergency-steps-after") and not page.has("emergency-steps-live")
    assert "Keep the patient on the call" not in html
    assert "The visit has ended" in html
    assert page.by_testid["emergency-callback"][0]["href"] == "tel:+16175550100"


def test_a_dropped_call_alerts_the_care_team_at_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    raised = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                         json=checkin_body(cssrs=HIGH_RISK_CSSRS)).json()["escalations"][0]
    coordinator = cookie_of(sign_in, clinic.coordinator)
    with connect(client, "/ws/events", coordinator) as events:
        events.expect("subscribed")
        sign_in(clinic.prescriber)
        # Not yet acknowledged: exactly when nobody may miss it.
        dropped = client.post(f"/api/v1/escalations/{raised}/call-dropped",
                              json={"visit_id": clinic.visit_id})
        assert dropped.status_code == 201, dropped.text
        assert "+1 617-555-0100" in dropped.json()["text"]
        alert = events.expect("escalation.alert", where=lambda m: m["why"] == "call_dropped")
        assert (alert["escalation_id"], alert["level"]) == (raised, "emergency")
        assert "555" not in str(alert)  # events carry ids, never clinical text
    detail = client.get(f"/api/v1/escalations/{raised}").json()
    assert detail["status"] == "open"
    assert detail["timeline"][-1]["kind"] == "call_dropped"
    wrong_visit = client.post(f"/api/v1/escalations/{raised}/call-dropped",
                              json={"visit_id": clinic.visit2_id})
    assert wrong_visit.status_code == 422

    async def written() -> tuple[list[str], list[str]]:
        async with services.transaction() as session:
            emails = await session.scalars(select(OutboxEmail.to_addr).where(
                OutboxEmail.kind == "escalation_call_dropped"))
            actions = await session.scalars(select(AuditEntry.action).where(
                AuditEntry.action == "call_dropped"))
            return sorted(emails.all()), list(actions.all())

    emails, actions = run(written)
    assert clinic.coordinator.email in emails
    assert actions == ["call_dropped"]


def test_summary_after_signing_shows_the_dose_change_and_988(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    previous_signed_visit(client, clinic, run, services, plan="Start sertraline.",
                          changes=[SERTRALINE])
    note = f"/api/v1/visits/{clinic.visit_id}/note"
    increase = {"action": "increase", "drug": "Sertraline", "dose": "100", "unit": "mg",
                "route": "oral", "frequency": "once daily", "reason": "Partial response"}
    saved = client.put(note, json={"version": 0, "medication_changes": [increase],
                                   "sections": {"side_effect_actions":
                                                "Call if nausea lasts more than a week."}})
    assert saved.status_code == 200
    assert client.post(f"{note}/sign", json={"version": 1}).status_code == 200
    client.post(f"/api/v1/visits/{clinic.visit_id}/next-visit", json={"days": 28})

    sign_in(clinic.patient)
    response = client.get(f"/visits/{clinic.visit_id}/summary")
    assert response.status_code == 200
    html = response.text
    page = Page(html)
    assert "Take more Sertraline: the dose goes up to 100 mg, by mouth, once daily." in html
    assert "Why: Partial response" in html
    assert "Call if nausea lasts more than a week." in html
    assert page.has("summary-next-visit")
    crisis = html[html.index('data-testid="crisis-resources"'):]
    assert 'href="tel:988"' in crisis and 'href="tel:911"' in crisis
    assert "data-print" in html and "/static/print-button.js" in html
    assert page.inline == []
    home = client.get("/home").text
    assert f'href="/visits/{clinic.visit_id}/summary"' in home


def test_summary_before_signing_says_it_is_not_ready(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    response = client.get(f"/visits/{clinic.visit_id}/summary")
    assert response.status_code == 200
    page = Page(response.text)
    assert page.has("summary-not-ready")
    assert "not ready yet" in response.text
    assert not page.has("summary-change")
    assert page.has("crisis-resources") and 'href="tel:988"' in response.text
    assert f'/visits/{clinic.visit_id}/summary' not in client.get("/home").text
    sign_in(clinic.patient2)
    assert client.get(f"/visits/{clinic.visit_id}/summary").status_code == 403
