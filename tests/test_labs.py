"""Lab monitoring (CLINICAL.md, "Measurement-based care in the visit"; server/labs.py,
server/lab_rules.toml): every interval at its boundaries, the rules file's checks, the
labs API (422s with their field, the audit), the signing gate (an overdue clozapine ANC
or lithium level is a `review` reason, lifted by entering the result) and the note
panel's top.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server import labs
from server.labs import OnMedication, Taken, add_months, due_labs, load_rules
from server.medication_catalogue import catalogue
from server.models import AuditEntry
from server.services import Services
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

START = date(2025, 1, 15)
RULES = labs.rules()


def status(drug: str, check: str, day: int | date, taken: list[tuple[str, int | date]] = (),
           changed: int = 0) -> labs.LabDue:
    """The check for ``drug`` started on START, on ``day`` (days after START, or a date)."""
    def on(when: int | date) -> date:
        return when if isinstance(when, date) else START + timedelta(days=when)
    medication = OnMedication(id=1, drug=drug, started_on=START, changed_on=on(changed))
    found = [d for d in due_labs(RULES, [medication], [Taken(t, on(w)) for t, w in taken],
                                 on(day)) if d.check == check]
    assert len(found) == 1, found
    return found[0]


def months(n: int, plus_days: int = 0) -> date:
    return add_months(START, n) + timedelta(days=plus_days)


# --- lithium ---------------------------------------------------------------------------

@pytest.mark.parametrize(("day", "expected"), [
    (4, "upcoming"), (5, "due"), (7, "due"), (8, "overdue")])
def test_lithium_level_5_to_7_days_after_a_start(day: int, expected: str) -> None:
    found = status("Lithium carbonate", "lithium_level", day)
    assert found.status == expected
    assert found.review_reason == ("lab_overdue_lithium_level" if expected == "overdue"
                                   else None)


@pytest.mark.parametrize(("day", "expected"), [
    (103, "upcoming"), (104, "due"), (106, "due"), (107, "overdue")])
def test_lithium_level_5_to_7_days_after_a_dose_change(day: int, expected: str) -> None:
    # A steady level on day 20, then a dose change on day 99: the 3-6 months from day 20
    # no longer apply, the new dose needs its own level.
    assert status("Lithium", "lithium_level", day, [("lithium_level", 20)],
                  changed=99).status == expected


def test_a_level_before_steady_state_does_not_count() -> None:
    assert status("Lithium", "lithium_level", 8, [("lithium_level", 4)]).status == "overdue"
    assert status("Lithium", "lithium_level", 8, [("lithium_level", 5)]).status == "upcoming"


@pytest.mark.parametrize(("day", "expected"), [
    (months(3, -1), "upcoming"), (months(3), "due"), (months(6), "due"),
    (months(6, 1), "overdue")])
def test_lithium_level_every_3_to_6_months(day: date, expected: str) -> None:
    # The steady level on START + 0 days after a change dated START - 5 days.
    medication = OnMedication(id=1, drug="Lithium", started_on=START - timedelta(days=5),
                              changed_on=START - timedelta(days=5))
    found = next(d for d in due_labs(RULES, [medication], [Taken("lithium_level", START)],
                                     day) if d.check == "lithium_level")
    assert found.status == expected
    assert (found.due_on, found.due_by) == (months(3), months(6))


@pytest.mark.parametrize("check", ["thyroid", "renal", "calcium"])
@pytest.mark.parametrize(("day", "expected"), [
    (months(6, -1), "upcoming"), (months(6), "due"), (months(12), "due"),
    (months(12, 1), "overdue")])
def test_lithium_tsh_renal_calcium_every_6_to_12_months(check: str, day: date,
                                                        expected: str) -> None:
    found = status("lithium", check, day)
    assert found.status == expected
    assert found.review_reason is None  # only the level gates signing


def test_either_creatinine_or_egfr_counts() -> None:
    assert status("lithium", "renal", months(12, 1)).status == "overdue"
    assert status("lithium", "renal", months(12, 1), [("egfr", 30)]).status == "due"
    assert status("lithium", "renal", months(12, 1), [("creatinine", 30)]).status == "due"
    assert status("lithium", "renal", months(12, 1), [("tsh", 30)]).status == "overdue"


# --- clozapine ---------------------------------------------------------------------------

def test_clozapine_anc_at_baseline() -> None:
    assert status("Clozapine", "anc", 0).status == "due"
    found = status("Clozapine", "anc", 1)
    assert found.status == "overdue"
    assert found.review_reason == "lab_overdue_clozapine_anc"


@pytest.mark.parametrize(("taken", "every"), [
    (months(6, -1), timedelta(weeks=1)),   # weekly for the first 6 months
    (months(6), timedelta(weeks=2)),       # every 2 weeks from 6 months
    (months(12, -1), timedelta(weeks=2)),  # to 12 months
])
def test_clozapine_anc_weekly_then_every_2_weeks(taken: date, every: timedelta) -> None:
    assert status("clozapine", "anc", taken + every - timedelta(days=1),
                  [("anc", taken)]).status == "upcoming"
    assert status("clozapine", "anc", taken + every, [("anc", taken)]).status == "due"
    assert status("clozapine", "anc", taken + every + timedelta(days=1),
                  [("anc", taken)]).status == "overdue"


def test_clozapine_anc_monthly_after_12_months() -> None:
    taken = months(12)
    assert status("Clozaril", "anc", add_months(taken, 1), [("anc", taken)]).status == "due"
    assert status("Clozaril", "anc", add_months(taken, 1) - timedelta(days=1),
                  [("anc", taken)]).status == "upcoming"
    assert status("Clozaril", "anc", add_months(taken, 1) + timedelta(days=1),
                  [("anc", taken)]).status == "overdue"


# --- valproate and carbamazepine ---------------------------------------------------------

@pytest.mark.parametrize(("drug", "check"), [
    ("Divalproex sodium ER", "valproate_level"), ("valproate", "liver"),
    ("Depakote", "blood_count"), ("Carbamazepine", "blood_count"),
    ("Tegretol", "liver"), ("carbamazepine", "sodium")])
def test_baseline_then_3_monthly_in_year_one_then_yearly(drug: str, check: str) -> None:
    test = RULES.checks[check].tests[0]
    assert status(drug, check, 0).status == "due"
    assert status(drug, check, 1).status == "overdue"
    # Year one: every 3 months.
    assert status(drug, check, months(3), [(test, 0)]).status == "due"
    assert status(drug, check, months(3, 1), [(test, 0)]).status == "overdue"
    last = months(12, -1)
    assert status(drug, check, add_months(last, 3), [(test, last)]).status == "due"
    assert status(drug, check, add_months(last, 3) + timedelta(days=1),
                  [(test, last)]).status == "overdue"
    # Then yearly.
    last = months(12)
    assert status(drug, check, add_months(last, 3) + timedelta(days=1),
                  [(test, last)]).status == "upcoming"
    assert status(drug, check, add_months(last, 12), [(test, last)]).status == "due"
    assert status(drug, check, add_months(last, 12) + timedelta(days=1),
                  [(test, last)]).status == "overdue"


def test_a_baseline_counts_from_30_days_before_the_start() -> None:
    assert status("valproate", "liver", 0, [("alt", -30)]).status == "upcoming"
    assert status("valproate", "liver", 0, [("alt", -31)]).status == "due"


# --- second-generation antipsychotics ---------------------------------------------------

@pytest.mark.parametrize(("last", "next_due"), [
    (0, 28), (28, 56), (56, 84),      # baseline, 4, 8, 12 weeks
    (83, 83 + 28),                    # before 12 weeks: still 4-weekly
])
def test_sga_weight_at_4_8_12_weeks(last: int, next_due: int) -> None:
    assert status("Olanzapine", "weight", next_due - 1, [("weight", last)]).status == \
        "upcoming"
    assert status("Olanzapine", "weight", next_due, [("bmi", last)]).status == "due"
    assert status("Olanzapine", "weight", next_due + 1, [("weight", last)]).status == \
        "overdue"


def test_sga_weight_quarterly_after_12_weeks() -> None:
    last = START + timedelta(weeks=12)
    quarter = add_months(last, 3)
    assert status("quetiapine", "weight", quarter - timedelta(days=1),
                  [("weight", last)]).status == "upcoming"
    assert status("quetiapine", "weight", quarter, [("weight", last)]).status == "due"
    assert status("quetiapine", "weight", quarter + timedelta(days=1),
                  [("weight", last)]).status == "overdue"


@pytest.mark.parametrize(("check", "test"), [
    ("glycaemia", "glucose"), ("glycaemia", "hba1c"), ("lipids", "ldl"),
    ("lipids", "lipid_panel")])
def test_sga_glucose_and_lipids_at_12_weeks_then_yearly(check: str, test: str) -> None:
    assert status("Risperidone", check, 0).status == "due"
    assert status("Risperidone", check, 83, [(test, 0)]).status == "upcoming"
    assert status("Risperidone", check, 84, [(test, 0)]).status == "due"
    assert status("Risperidone", check, 85, [(test, 0)]).status == "overdue"
    last = START + timedelta(weeks=12)
    year = add_months(last, 12)
    assert status("Risperidone", check, year - timedelta(days=1), [(test, last)]).status == \
        "upcoming"
    assert status("Risperidone", check, year, [(test, last)]).status == "due"
    assert status("Risperidone", check, year + timedelta(days=1), [(test, last)]).status == \
        "overdue"


# --- matching and the rules file --------------------------------------------------------

@pytest.mark.parametrize(("drug", "checks"), [
    ("Lithium carbonate ER", {"lithium_level", "thyroid", "renal", "calcium"}),
    ("Clozapine", {"anc", "weight", "glycaemia", "lipids"}),
    ("Olanzapine/samidorphan", {"weight", "glycaemia", "lipids"}),
    ("valproic acid", {"valproate_level", "liver", "blood_count"}),
    ("Oxcarbazepine", set()),     # not carbamazepine
    ("Haloperidol", set()),       # first-generation: not in the SGA list
    ("Sertraline", set()),
])
def test_drugs_match_by_whole_words(drug: str, checks: set[str]) -> None:
    assert {rule.check for rule in RULES.rules_for(drug)} == checks


def test_the_sgas_are_listed() -> None:
    for name in ("aripiprazole", "asenapine", "brexpiprazole", "cariprazine", "clozapine",
                 "iloperidone", "lumateperone", "lurasidone", "olanzapine", "paliperidone",
                 "quetiapine", "risperidone", "ziprasidone"):
        assert "sga" in catalogue().lab_groups_of(name), name


def test_add_months_keeps_the_day_or_takes_the_last() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 8, 31), 6) == date(2025, 2, 28)
    assert add_months(date(2025, 11, 15), 3) == date(2026, 2, 15)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('tests = ["anc"]', 'tests = ["neutrophils"]', "unknown tests"),
    ('every = "1w" }', 'every = "1 week" }', "not an interval"),
    ('phases = [{ every = ["3m", "6m"] }]', 'phases = [{ every = ["6m", "3m"] }]',
     "outer bound"),
    ('review_reason = "lab_overdue_clozapine_anc"', 'review_reason = "anc_late"',
     "unknown review_reason"),
    ('{ every = "1m" }]', '{ until = "18m", every = "1m" }]', "the last does not"),
])
def test_a_bad_rules_file_is_refused(tmp_path: Path, old: str, new: str,
                                     message: str) -> None:
    text = labs.RULES_PATH.read_text()
    assert old in text
    path = tmp_path / "lab_rules.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        load_rules(path)


# --- over the API -------------------------------------------------------------------------

def today(services: Services) -> date:
    return services.clock.now().astimezone(
        ZoneInfo(services.settings.clinic_timezone)).date()


def labs_url(clinic: Clinic) -> str:
    return f"/api/v1/patients/{clinic.patient.id}/labs"


def start_medication(client: TestClient, visit_id: int, drug: str) -> None:
    """Sign a note that starts ``drug`` (the medication list changes only this way)."""
    row = {"action": "start", "drug": drug, "dose": "100", "unit": "mg"}
    saved = client.put(f"/api/v1/visits/{visit_id}/note",
                       json={"version": 0, "medication_changes": [row]})
    assert saved.status_code == 200, saved.text
    signed = client.post(f"/api/v1/visits/{visit_id}/note/sign",
                         json={"version": saved.json()["version"]})
    assert signed.status_code == 200, signed.text


@pytest.mark.parametrize(("body", "field"), [
    ({"test": "anc", "value": 2000, "unit": "/µL", "taken_on": "FUTURE"}, "taken_on"),
    ({"test": "anc", "value": 2000, "unit": "/µL", "taken_on": "1999-12-31"}, "taken_on"),
    ({"test": "anc", "value": 2000, "unit": "/µL"}, "taken_on"),
    ({"test": "neutrophils", "value": 2000, "unit": "/µL", "taken_on": "TODAY"}, "test"),
    ({"test": "anc", "value": 2000, "taken_on": "TODAY"}, "unit"),
    ({"test": "anc", "value": 2000, "unit": "mg/dL", "taken_on": "TODAY"}, "unit"),
    ({"test": "anc", "unit": "/µL", "taken_on": "TODAY"}, "value"),
    ({"test": "anc", "value": -1, "unit": "/µL", "taken_on": "TODAY"}, "value"),
    ({"test": "lithium_level", "value": 80, "unit": "mmol/L", "taken_on": "TODAY"}, "value"),
    ({"test": "weight", "value": 0, "unit": "kg", "taken_on": "TODAY"}, "value"),
    ({"test": "cbc", "value": 5, "unit": "10^9/L", "taken_on": "TODAY"}, "text_value"),
    ({"test": "cbc", "text_value": "Normal", "value": 5, "taken_on": "TODAY"}, "value"),
    ({"test": "anc", "value": 2000, "unit": "/µL", "taken_on": "TODAY", "by": 1}, "by"),
])
def test_a_result_that_cannot_be_right_is_refused_naming_its_field(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        body: dict[str, Any], field: str) -> None:
    sign_in(clinic.coordinator)
    dated = {"TODAY": today(services).isoformat(),
             "FUTURE": (today(services) + timedelta(days=1)).isoformat()}
    body = {k: dated.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = client.post(labs_url(clinic), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert client.get(labs_url(clinic)).json()["results"] == []


def test_staff_enter_results_and_read_them_back_audited(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    sign_in(clinic.coordinator)
    day = today(services)
    added = client.post(labs_url(clinic), json={
        "test": "anc", "value": 2100, "unit": "/µL", "taken_on": day.isoformat()})
    assert added.status_code == 201, added.text
    assert added.json() | {"id": 0, "entered_at": ""} == {
        "id": 0, "patient_id": clinic.patient.id, "test": "anc", "label": "ANC",
        "value": 2100.0, "unit": "/µL", "text_value": None, "taken_on": day.isoformat(),
        "entered_by": {"id": clinic.coordinator.id, "name": clinic.coordinator.name},
        "entered_at": ""}
    text = client.post(labs_url(clinic), json={
        "test": "cbc", "text_value": "  Within normal limits ",
        "taken_on": (day - timedelta(days=3)).isoformat()})
    assert text.status_code == 201, text.text
    listed = client.get(labs_url(clinic)).json()
    assert [(r["test"], r["text_value"]) for r in listed["results"]] == [
        ("anc", None), ("cbc", "Within normal limits")]
    assert listed["monitoring"]["items"] == []  # no medication on the list

    async def audit() -> list[tuple[str, str, int | None]]:
        async with services.transaction() as session:
            rows = await session.execute(select(
                AuditEntry.action, AuditEntry.resource_type, AuditEntry.patient_id).where(
                AuditEntry.resource_type.in_(("lab_result", "lab_monitoring"))))
            return [tuple(r) for r in rows]  # type: ignore[misc]

    entries = run(audit)
    assert entries.count(("create", "lab_result", clinic.patient.id)) == 2
    assert entries.count(("read", "lab_result", clinic.patient.id)) == 2
    assert ("read", "lab_monitoring", clinic.patient.id) in entries


# --- the signing gate --------------------------------------------------------------------

ASSESSMENT = {"safety_assessed": "Reviewed the missed blood test, fever and sore throat.",
              "safety_risk_judgement": "low",
              "safety_plan": "Blood test today at the lab; hold the dose if the count is low."}


def test_an_overdue_clozapine_anc_gates_signing_until_the_result_is_entered(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    sign_in(clinic.prescriber)
    start_medication(client, clinic.visit_id, "Clozapine")
    services.clock.advance(timedelta(days=2))
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    url = f"/api/v1/visits/{second}/note"
    note = client.get(url).json()
    assert note.get("safety_required") is True, note
    assert note["safety_reasons"] == ["lab_overdue_clozapine_anc"]
    check = client.post(f"{url}/sign-check", json={"version": 0}).json()
    assert (check["ready"], check["reasons"]) == (False, ["lab_overdue_clozapine_anc"])
    refused = client.post(f"{url}/sign", json={"version": 0})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "safety_assessment_required"
    assert refused.json()["error"]["reasons"] == ["lab_overdue_clozapine_anc"]
    # Entering the result lifts it.
    added = client.post(labs_url(clinic), json={
        "test": "anc", "value": 2500, "unit": "/µL",
        "taken_on": today(services).isoformat()})
    assert added.status_code == 201, added.text
    assert client.get(url).json()["safety_required"] is False
    signed = client.post(f"{url}/sign", json={"version": 0})
    assert signed.status_code == 200, signed.text


def test_an_overdue_lithium_level_is_addressed_like_the_other_reasons(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    sign_in(clinic.prescriber)
    start_medication(client, clinic.visit_id, "Lithium carbonate")
    services.clock.advance(timedelta(days=7))
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    url = f"/api/v1/visits/{second}/note"
    assert client.get(url).json()["safety_required"] is False  # day 7: due, not overdue
    services.clock.advance(timedelta(days=1))
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    assert client.get(url).json()["safety_reasons"] == ["lab_overdue_lithium_level"]
    saved = client.put(url, json={"version": 0, "sections": ASSESSMENT})
    assert saved.status_code == 200, saved.text
    signed = client.post(f"{url}/sign", json={"version": saved.json()["version"]})
    assert signed.status_code == 200, signed.text


def test_an_overdue_lab_that_does_not_gate_does_not(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    sign_in(clinic.prescriber)
    start_medication(client, clinic.visit_id, "Olanzapine")
    services.clock.advance(timedelta(days=2))  # baseline weight, glucose, lipids overdue
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    assert client.get(labs_url(clinic)).json()["monitoring"]["items"][0]["status"] == \
        "overdue"
    assert client.get(f"/api/v1/visits/{second}/note").json()["safety_required"] is False


# --- pages -------------------------------------------------------------------------------

def test_the_panel_top_shows_an_overdue_lab_as_a_review_reason(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    sign_in(clinic.prescriber)
    start_medication(client, clinic.visit_id, "Lithium carbonate")
    started = today(services)
    services.clock.advance(timedelta(days=9))
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    page = client.get(f"/visits/{second}")
    assert page.status_code == 200
    html = page.text
    top = html[html.index('data-testid="panel-labs"'):]
    top = top[:top.index("</section>")]
    overdue = started + timedelta(days=8)
    assert 'data-check="lithium_level" data-status="overdue"' in top
    assert 'data-reason="lab_overdue_lithium_level"' in top
    assert f"overdue since {overdue.day} {overdue:%b}" in " ".join(top.split())
    assert "(none on record)" in top
    # At the top: before the scores and the note.
    assert html.index('data-testid="panel-labs"') < html.index("Scores and trends")
    # The gate lists it with the other reasons, in words.
    assert "Lithium level overdue" in html[html.index('id="safety-why"'):]


def test_the_medication_list_and_the_labs_block_say_the_same(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn,
        run: Runner) -> None:
    """"Needs monitoring" on the medication list is the lab rules' verdict, the labs
    block's: overdue in both, then, once the result is entered, due in neither (each
    part as note-panel.js fetches it again after a lab.added event)."""
    sign_in(clinic.prescriber)
    start_medication(client, clinic.visit_id, "Lithium carbonate")
    started = today(services)
    services.clock.advance(timedelta(days=9))
    sign_in(clinic.prescriber)  # the session timed out meanwhile
    second = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    overdue = started + timedelta(days=8)

    def parts() -> tuple[str, str]:
        labs_part = client.get(f"/visits/{second}?part=labs")
        meds_part = client.get(f"/visits/{second}?part=medications")
        assert labs_part.status_code == meds_part.status_code == 200
        return " ".join(labs_part.text.split()), " ".join(meds_part.text.split())

    labs_html, meds_html = parts()
    assert 'data-part="labs"' in labs_html
    assert 'data-check="lithium_level" data-status="overdue"' in labs_html
    assert f"overdue since {overdue.day} {overdue:%b}" in labs_html
    assert 'data-testid="monitoring-flag" data-due="true" data-status="overdue"' in meds_html
    assert f"Monitoring due now:</strong> Lithium level overdue since {overdue:%-d %b %Y}." \
        in meds_html
    listed = client.get(f"/api/v1/patients/{clinic.patient.id}/medications").json()
    [lithium] = listed["medications"]
    monitoring = client.get(labs_url(clinic)).json()["monitoring"]
    assert lithium["monitoring"]["labs"] == monitoring["items"]
    assert lithium["monitoring"]["status"] == "overdue"

    added = client.post(labs_url(clinic), json={
        "test": "lithium_level", "value": 0.7, "unit": "mmol/L",
        "taken_on": today(services).isoformat()})
    assert added.status_code == 201, added.text
    labs_html, meds_html = parts()
    assert 'data-status="overdue"' not in labs_html and 'data-status="due"' not in labs_html
    assert 'data-due="false" data-status="upcoming"' in meds_html
    assert "Needs monitoring:</strong> Lithium level, TSH, Creatinine/eGFR, Calcium; " \
        "next due" in meds_html


def test_the_labs_page_form_saves_a_result_and_refuses_a_wrong_one(
        client: TestClient, clinic: Clinic, services: Services, sign_in: SignIn) -> None:
    csrf = sign_in(clinic.coordinator)
    url = f"/patients/{clinic.patient.id}/labs"
    page = client.get(url)
    assert page.status_code == 200 and 'data-testid="lab-form"' in page.text
    wrong = client.post(url, data={"csrf_token": csrf, "test": "lithium_level",
                                   "value": "0.8", "taken_on": today(services).isoformat()})
    assert wrong.status_code == 422
    assert 'data-field="unit"' in wrong.text
    saved = client.post(url, data={"csrf_token": csrf, "test": "lithium_level",
                                   "value": "0.8", "unit": "mmol/L",
                                   "taken_on": today(services).isoformat()},
                        follow_redirects=False)
    assert saved.status_code == 303
    listed = client.get(saved.headers["location"]).text
    assert 'data-testid="lab-added"' in listed
    assert 'data-testid="lab-result" data-test="lithium_level"' in listed
