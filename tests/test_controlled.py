"""Controlled substances by telehealth (CLINICAL.md; server/controlled.py): the
catalogue, every rule to its numbers on both sides, and the signing gate over the real
API with prescriber credentials and PDMP checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.controlled import (
    Credential,
    Facts,
    Prescription,
    add_months,
    prescriptions_of,
    rule_gaps,
)
from server.medication_catalogue import CATALOGUE_PATH, catalogue, load_catalogue
from server.medications import MedicationChangeRow
from server.models import AuditEntry, PdmpCheck
from server.services import Services
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

RULES = catalogue().rules
END = date(2026, 12, 31)
NY = Credential(state="NY", license_expires_on=None, dea=True, dea_expires_on=None)


def rx(drug: str, days: int | None = 7, index: int = 0) -> Prescription:
    entry = catalogue().find(drug)
    assert entry is not None and entry.schedule is not None
    return Prescription(index=index, drug=drug, schedule=entry.schedule, moud=entry.moud,
                        days_supply=days)


def facts(**changes: Any) -> Facts:
    base = Facts(today=date(2026, 6, 1), flexibilities_end=END, patient_state="NY",
                 credentials={"NY": NY}, pdmp="reviewed",
                 prescriptions=[rx("buprenorphine")], in_person_evaluated_on=None,
                 moud_first_on=None, moud_days_before=0, audio_only=False,
                 audio_only_reason="")
    return replace(base, **changes)


def codes(given: Facts) -> list[str]:
    return [gap.code for gap in rule_gaps(given, RULES)]


# --- the catalogue ---------------------------------------------------------------------


@pytest.mark.parametrize("drug,schedule", [
    ("Adderall XR", "II"), ("mixed amphetamine salts", "II"), ("lisdexamfetamine", "II"),
    ("Methylphenidate ER", "II"), ("Buprenorphine/naloxone", "III"), ("Suboxone", "III"),
    ("alprazolam", "IV"), ("Klonopin", "IV"), ("lorazepam", "IV"), ("diazepam", "IV"),
    ("zolpidem", "IV"), ("modafinil", "IV"), ("pregabalin", "V"), ("Lyrica", "V"),
    ("Methadone", "II"), ("Spravato", "III"), ("Dayvigo", "IV"), ("lacosamide", "V"),
    ("sertraline", None), ("lithium carbonate", None), ("Seroquel", None),
])
def test_the_catalogue_gives_each_drugs_schedule(drug: str, schedule: str | None) -> None:
    entry = catalogue().find(drug)
    assert entry is not None
    assert entry.schedule == schedule


def test_a_drug_not_in_the_catalogue_and_a_combination_held_to_its_strictest_part() -> None:
    assert catalogue().find("unlisted-drug") is None
    # A combination is held to its stricter schedule.
    entry = catalogue().find("clonazepam with methylphenidate")
    assert entry is not None and entry.schedule == "II"


def test_a_catalogue_with_a_name_twice_or_a_bad_schedule_does_not_load(tmp_path: Path) -> None:
    text = CATALOGUE_PATH.read_text()
    twice = tmp_path / "twice.toml"
    twice.write_text(text + '\n[[medications]]\nname = "xanax"\n')
    with pytest.raises(ValueError, match="listed twice"):
        load_catalogue(twice)
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '\n[[medications]]\nname = "newdrug"\nschedule = "VI"\n')
    with pytest.raises(ValueError):
        load_catalogue(bad)


def test_only_starts_and_changes_of_a_scheduled_drug_are_prescriptions() -> None:
    rows = [MedicationChangeRow(action="start", drug="Suboxone", dose="8", days_supply=7),
            MedicationChangeRow(action="start", drug="sertraline", dose="50"),
            MedicationChangeRow(action="stop", drug="lorazepam"),
            MedicationChangeRow(action="continue", drug="zolpidem"),
            MedicationChangeRow(action="increase", drug="pregabalin", dose="150"),
            MedicationChangeRow(action="switch", drug="alprazolam", dose="0.5",
                                replaces="sertraline")]
    found = prescriptions_of(rows, catalogue())
    assert [(p.index, p.drug, p.schedule) for p in found] == [
        (0, "Suboxone", "III"), (4, "pregabalin", "V"), (5, "alprazolam", "IV")]


# --- the rules -------------------------------------------------------------------------


def test_everything_met_signs() -> None:
    assert codes(facts()) == []
    assert codes(facts(prescriptions=[])) == []
    # No controlled prescription: nothing else is asked, whatever the state.
    assert codes(facts(prescriptions=[], patient_state=None, pdmp=None, credentials={})) == []


def test_the_patients_state_must_be_known() -> None:
    assert codes(facts(patient_state=None)) == ["patient_state_unknown"]


def test_the_signer_must_be_licensed_and_dea_registered_where_the_patient_is() -> None:
    nj = Credential(state="NJ", license_expires_on=None, dea=True, dea_expires_on=None)
    assert codes(facts(credentials={"NJ": nj})) == [
        "not_licensed_in_state", "no_dea_registration_in_state"]
    licence_only = replace(NY, dea=False)
    assert codes(facts(credentials={"NY": licence_only})) == ["no_dea_registration_in_state"]
    for drug in ("amphetamine", "buprenorphine", "zolpidem", "pregabalin"):  # II to V
        assert codes(facts(credentials={"NY": licence_only},
                           prescriptions=[rx(drug)])) == ["no_dea_registration_in_state"]


def test_an_expired_licence_or_registration_does_not_count() -> None:
    today = date(2026, 6, 1)
    assert codes(facts(credentials={"NY": replace(NY, license_expires_on=today)})) == []
    assert codes(facts(credentials={"NY": replace(
        NY, license_expires_on=date(2026, 5, 31))})) == ["not_licensed_in_state"]
    assert codes(facts(credentials={"NY": replace(
        NY, dea_expires_on=date(2026, 5, 31))})) == ["no_dea_registration_in_state"]


def test_a_pdmp_check_for_this_visit_is_required() -> None:
    assert codes(facts(pdmp=None)) == ["pdmp_check_missing"]
    assert codes(facts(pdmp=None, prescriptions=[rx("lorazepam", 30)])) == [
        "pdmp_check_missing"]


@pytest.mark.parametrize("days,ok", [(7, True), (8, False), (1, True)])
def test_pdmp_unavailable_limits_buprenorphine_to_7_days(days: int, ok: bool) -> None:
    got = codes(facts(pdmp="unavailable", prescriptions=[rx("Suboxone", days)]))
    assert got == ([] if ok else ["pdmp_unavailable_supply_limit"])
    # Reviewed: no 7-day limit (before the flexibilities end).
    assert codes(facts(prescriptions=[rx("Suboxone", 30)])) == []


def test_pdmp_unavailable_does_not_limit_other_controlled_drugs() -> None:
    assert codes(facts(pdmp="unavailable", prescriptions=[rx("lorazepam", 30)])) == []


def test_a_controlled_prescription_needs_its_days_supply() -> None:
    assert codes(facts(prescriptions=[rx("zolpidem", None, index=2)])) == [
        "days_supply_missing"]
    gap = rule_gaps(facts(prescriptions=[rx("zolpidem", None, index=2)]), RULES)[0]
    assert gap.field == "medication_changes.2.days_supply"


@pytest.mark.parametrize("today,gaps", [
    (date(2026, 12, 31), []),                                    # the last day
    (date(2027, 1, 1), ["in_person_evaluation_required"]),       # the day after
])
def test_after_the_flexibilities_end_an_in_person_evaluation_is_required(
    today: date, gaps: list[str]
) -> None:
    for drug in ("lisdexamfetamine", "clonazepam", "modafinil", "pregabalin"):
        assert codes(facts(today=today, prescriptions=[rx(drug, 30)])) == gaps


def test_an_in_person_evaluation_lets_the_signer_prescribe_after_the_end() -> None:
    after = date(2027, 1, 1)
    assert codes(facts(today=after, prescriptions=[rx("alprazolam", 30)],
                       in_person_evaluated_on=date(2026, 11, 2))) == []
    # Not one still to come.
    assert codes(facts(today=after, prescriptions=[rx("alprazolam", 30)],
                       in_person_evaluated_on=date(2027, 1, 2))) == [
        "in_person_evaluation_required"]


def test_the_end_date_is_data() -> None:
    later = date(2027, 12, 31)
    assert codes(facts(today=date(2027, 1, 1), flexibilities_end=later,
                       prescriptions=[rx("alprazolam", 30)])) == []


def test_buprenorphine_for_oud_after_the_end_within_six_months() -> None:
    after = date(2027, 1, 1)
    # The first telemedicine prescription: allowed without an in-person evaluation.
    assert codes(facts(today=after, prescriptions=[rx("Suboxone", 30)])) == []
    # Six calendar months from the first (Jan 1 to Jul 1 2027: 181 days).
    first = date(2027, 1, 1)
    assert add_months(first, 6) == date(2027, 7, 1)
    within = facts(today=date(2027, 6, 30), moud_first_on=first, moud_days_before=151,
                   prescriptions=[rx("Suboxone", 30)])
    assert codes(within) == []                                   # 181 days in total
    assert codes(replace(within, moud_days_before=152)) == ["moud_telemedicine_limit"]
    assert codes(replace(within, today=date(2027, 7, 1), moud_days_before=0)) == [
        "moud_telemedicine_limit"]                                # the period is over
    # An in-person evaluation lifts the limit.
    assert codes(replace(within, moud_days_before=300,
                         in_person_evaluated_on=date(2026, 10, 1))) == []


@pytest.mark.parametrize("changes", [
    {}, {"patient_state": None}, {"credentials": {}}, {"pdmp": None},
    {"pdmp": "unavailable"}, {"today": date(2027, 1, 1)},
    {"today": date(2027, 1, 1), "in_person_evaluated_on": date(2026, 12, 1)},
    {"today": date(2027, 6, 30), "moud_first_on": date(2027, 1, 1),
     "moud_days_before": 170},
], ids=["met", "no_state", "no_credentials", "no_pdmp", "pdmp_unavailable",
        "after_end", "after_end_evaluated", "moud_window_used"])
def test_methadone_is_held_to_every_schedule_ii_rule_not_the_moud_exception(
        changes: dict[str, Any]) -> None:
    """Methadone for OUD is dispensed only by an opioid treatment program (42 CFR 8.12);
    90 FR 6504 covers Schedule III-V. A methadone start answers as a stimulant start."""
    for days in (30, None):
        methadone = facts(prescriptions=[rx("methadone", days)], **changes)
        stimulant = facts(prescriptions=[rx("lisdexamfetamine", days)], **changes)
        assert codes(methadone) == codes(stimulant)
    # Where buprenorphine would be let through or limited, methadone is not.
    after = facts(today=date(2027, 1, 1), prescriptions=[rx("methadone", 30)])
    assert codes(after) == ["in_person_evaluation_required"]
    assert codes(replace(after, prescriptions=[rx("Suboxone", 30)])) == []
    assert codes(facts(pdmp="unavailable", prescriptions=[rx("methadone", 30)])) == []


def test_add_months_lands_on_the_last_day_of_a_shorter_month() -> None:
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2027, 8, 31), 6) == date(2028, 2, 29)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


@pytest.mark.parametrize("reason,ok", [
    ("", False), ("no camera", False),            # 8 letters
    ("Camera broke today", True), ("  . . .  ", False),
])
def test_an_audio_only_visit_says_why_video_was_not_possible(reason: str, ok: bool) -> None:
    got = codes(facts(prescriptions=[], audio_only=True, audio_only_reason=reason))
    assert got == ([] if ok else ["audio_only_reason"])
    assert codes(facts(prescriptions=[], audio_only=False, audio_only_reason="")) == []


# --- over the API ----------------------------------------------------------------------

BUP_START = {"action": "start", "drug": "Buprenorphine/naloxone", "dose": "8",
             "unit": "mg", "route": "sublingual", "frequency": "once daily",
             "days_supply": 7}
CREDENTIALS = {"credentials": [{"state": "NY", "license_number": "NY-2201",
                                "dea_number": "AB1234563"}]}


def note_url(visit_id: int) -> str:
    return f"/api/v1/visits/{visit_id}/note"


def save_bup(client: TestClient, visit_id: int, **sections: str) -> int:
    note = client.get(note_url(visit_id)).json()
    saved = client.put(note_url(visit_id), json={
        "version": note["version"], "sections": {"plan": "Start buprenorphine.", **sections},
        "medication_changes": [BUP_START]})
    assert saved.status_code == 200, saved.text
    version: int = saved.json()["version"]
    return version


def confirm_state(client: TestClient, visit_id: int, state: str | None) -> None:
    location: dict[str, Any] = {"address": "12 Elm Street, Albany"}
    if state:
        location["state"] = state
    response = client.put(f"/api/v1/visits/{visit_id}/checkin/emergency-info",
                          json={"location": location, "callback_phone": "518 555 0100"})
    assert response.status_code == 200, response.text


def missing(response: Any) -> list[str]:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "controlled_substance_requirements"
    return [gap["code"] for gap in error["missing"]]


def test_a_buprenorphine_start_is_signed_once_every_rule_is_met(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    url = note_url(clinic.visit_id)
    sign_in(clinic.prescriber)
    version = save_bup(client, clinic.visit_id)
    assert missing(client.post(f"{url}/sign-check", json={"version": version})) == [
        "patient_state_unknown"]
    sign_in(clinic.patient)
    confirm_state(client, clinic.visit_id, "NY")
    sign_in(clinic.prescriber)
    assert missing(client.post(f"{url}/sign", json={"version": version})) == [
        "not_licensed_in_state", "no_dea_registration_in_state", "pdmp_check_missing"]
    sign_in(clinic.admin)
    put = client.put(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials",
                     json=CREDENTIALS)
    assert put.status_code == 200, put.text
    assert put.json()["credentials"][0]["dea_number"] == "AB1234563"
    sign_in(clinic.prescriber)
    assert missing(client.post(f"{url}/sign-check", json={"version": version})) == [
        "pdmp_check_missing"]
    # A check in another state does not count.
    other = client.post(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks",
                        json={"state": "NJ", "result": "reviewed"})
    assert other.status_code == 201, other.text
    assert missing(client.post(f"{url}/sign-check", json={"version": version})) == [
        "pdmp_check_missing"]
    check = client.post(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks",
                        json={"state": "ny", "result": "reviewed"})
    assert check.status_code == 201, check.text
    assert check.json()["state"] == "NY"
    assert check.json()["checked_by"] == {"id": clinic.prescriber.id,
                                          "name": clinic.prescriber.name}
    ready = client.post(f"{url}/sign-check", json={"version": version})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    signed = client.post(f"{url}/sign", json={"version": version})
    assert signed.status_code == 200, signed.text
    meds = client.get(f"/api/v1/patients/{clinic.patient.id}/medications").json()
    [bup] = meds["medications"]
    assert bup["history"][0]["days_supply"] == 7
    listed = client.get(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks").json()
    assert [c["state"] for c in listed["pdmp_checks"]] == ["NY", "NJ"]

    async def audited() -> set[tuple[str, str]]:
        async with services.transaction() as session:
            rows = await session.execute(select(AuditEntry.action, AuditEntry.resource_type))
            return {(a, r) for a, r in rows}

    trail = run(audited)
    assert {("create", "pdmp_check"), ("update", "prescriber_credentials"),
            ("read", "pdmp_checks")} <= trail


def test_a_pdmp_check_of_an_earlier_visit_does_not_count(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """90 FR 6504: the review (of the past year's prescriptions) comes before this
    prescription: one recorded for another visit, even yesterday's, is not it."""
    earlier = run(add_visit, services, clinic.patient.id, clinic.prescriber.id)
    sign_in(clinic.admin)
    client.put(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials", json=CREDENTIALS)
    sign_in(clinic.patient)
    confirm_state(client, clinic.visit_id, "NY")
    sign_in(clinic.prescriber)
    assert client.post(f"/api/v1/visits/{earlier}/pdmp-checks",
                       json={"state": "NY", "result": "reviewed"}).status_code == 201
    version = save_bup(client, clinic.visit_id)
    assert missing(client.post(f"{note_url(clinic.visit_id)}/sign",
                               json={"version": version})) == ["pdmp_check_missing"]


def test_pdmp_unavailable_needs_the_attempt_and_limits_buprenorphine_to_7_days(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.admin)
    client.put(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials", json=CREDENTIALS)
    sign_in(clinic.patient)
    confirm_state(client, clinic.visit_id, "NY")
    sign_in(clinic.prescriber)
    url = f"/api/v1/visits/{clinic.visit_id}/pdmp-checks"
    bare = client.post(url, json={"state": "NY", "result": "unavailable"})
    assert bare.status_code == 422 and bare.json()["error"]["field"] == "note"
    assert client.post(url, json={"state": "NY", "result": "unknown"}).status_code == 422
    assert client.post(url, json={"state": "XX", "result": "reviewed"}).status_code == 422
    assert client.post(url, json={"state": "NY", "result": "unavailable",
                                  "note": "State PDMP portal down, tried twice"}
                       ).status_code == 201
    note = client.get(note_url(clinic.visit_id)).json()
    eight = client.put(note_url(clinic.visit_id), json={
        "version": note["version"], "medication_changes": [BUP_START | {"days_supply": 8}]})
    version = eight.json()["version"]
    assert missing(client.post(f"{note_url(clinic.visit_id)}/sign",
                               json={"version": version})) == ["pdmp_unavailable_supply_limit"]
    seven = client.put(note_url(clinic.visit_id), json={
        "version": version, "medication_changes": [BUP_START]})
    assert client.post(f"{note_url(clinic.visit_id)}/sign",
                       json={"version": seven.json()["version"]}).status_code == 200

    async def stored() -> list[str]:
        async with services.transaction() as session:
            return list((await session.scalars(select(PdmpCheck.result))).all())

    assert run(stored) == ["unavailable"]


@pytest.mark.parametrize("settings_overrides", [
    {"telemedicine_flexibilities_end": date(2026, 1, 31)}])
def test_a_methadone_start_is_gated_as_schedule_ii_not_as_buprenorphine(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """After the flexibilities end: a methadone start needs everything a Schedule II start
    needs, the signer's in-person evaluation included; a buprenorphine start in the same
    visit would sign under 90 FR 6504, and the PDMP-unavailable 7-day limit is
    buprenorphine's, not methadone's."""
    url = note_url(clinic.visit_id)
    start = BUP_START | {"drug": "Methadone 10 mg tablet", "dose": "30", "route": "oral",
                         "days_supply": 28}
    sign_in(clinic.prescriber)
    note = client.get(url).json()
    saved = client.put(url, json={"version": note["version"], "sections": {
        "plan": "Start methadone."}, "medication_changes": [start | {"days_supply": None}]})
    assert saved.status_code == 200, saved.text
    version = saved.json()["version"]
    assert missing(client.post(f"{url}/sign-check", json={"version": version})) == [
        "patient_state_unknown", "days_supply_missing"]
    sign_in(clinic.patient)
    confirm_state(client, clinic.visit_id, "NY")
    sign_in(clinic.prescriber)
    saved = client.put(url, json={"version": version, "medication_changes": [start]})
    version = saved.json()["version"]
    assert missing(client.post(f"{url}/sign", json={"version": version})) == [
        "not_licensed_in_state", "no_dea_registration_in_state", "pdmp_check_missing",
        "in_person_evaluation_required"]
    sign_in(clinic.admin)
    client.put(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials", json=CREDENTIALS)
    sign_in(clinic.prescriber)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/pdmp-checks", json={
        "state": "NY", "result": "unavailable", "note": "State PDMP portal down, tried twice"}
    ).status_code == 201
    # No 7-day limit (28 days), but no telemedicine exception either.
    assert missing(client.post(f"{url}/sign", json={"version": version})) == [
        "in_person_evaluation_required"]
    # The same note starting buprenorphine (7 days) would sign: methadone is not MOUD
    # to the gate.
    bup = client.put(url, json={"version": version, "medication_changes": [BUP_START]})
    version = bup.json()["version"]
    ready = client.post(f"{url}/sign-check", json={"version": version})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    back = client.put(url, json={"version": version, "medication_changes": [start],
                                 "sections": {"plan": "Start methadone.",
                                              "in_person_evaluated_on": "2026-01-15"}})
    assert back.status_code == 200, back.text
    signed = client.post(f"{url}/sign", json={"version": back.json()["version"]})
    assert signed.status_code == 200, signed.text


def test_an_audio_only_note_is_not_signed_without_the_reason(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    url = note_url(clinic.visit_id)
    saved = client.put(url, json={"version": 0, "sections": {"visit_mode": "audio_only"}})
    assert saved.status_code == 200, saved.text
    assert missing(client.post(f"{url}/sign", json={"version": 1})) == ["audio_only_reason"]
    fixed = client.put(url, json={"version": 1, "sections": {
        "visit_mode": "audio_only", "audio_only_reason": "Patient's camera is broken"}})
    assert client.post(f"{url}/sign", json={"version": fixed.json()["version"]}
                       ).status_code == 200
    assert client.put(url, json={"version": 0, "sections": {"visit_mode": "phone"}}
                      ).status_code == 422


def test_credentials_are_checked_and_kept_by_admins_and_read_by_the_prescriber(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    url = f"/api/v1/prescribers/{clinic.prescriber.id}/credentials"
    sign_in(clinic.admin)
    assert client.get(url).json() == {"prescriber_id": clinic.prescriber.id,
                                      "credentials": []}
    typo = {"credentials": [{"state": "NY", "license_number": "1", "dea_number": "AB1234564"}]}
    bad = client.put(url, json=typo)
    assert bad.status_code == 422 and "check digit" in bad.json()["error"]["message"]
    twice = {"credentials": [{"state": "NY", "license_number": "1"},
                             {"state": "ny", "license_number": "2"}]}
    assert client.put(url, json=twice).status_code == 422
    kept = client.put(url, json={"credentials": [
        {"state": "MA", "license_number": "MA-1", "license_expires_on": "2028-01-31"},
        {"state": "NY", "license_number": "NY-2", "dea_number": "bb1234563",
         "dea_expires_on": "2027-06-30"}]})
    assert kept.status_code == 200, kept.text
    assert [(c["state"], c["dea_number"]) for c in kept.json()["credentials"]] == [
        ("MA", None), ("NY", "BB1234563")]
    assert client.get(f"/api/v1/prescribers/{clinic.coordinator.id}/credentials"
                      ).status_code == 404
    # The prescriber reads their own, as the admin recorded them.
    sign_in(clinic.prescriber)
    mine = client.get(url)
    assert mine.status_code == 200
    assert [(c["state"], c["license_number"]) for c in mine.json()["credentials"]] == [
        ("MA", "MA-1"), ("NY", "NY-2")]
    # Nobody else but admins reads them.
    for other in (clinic.other_prescriber, clinic.coordinator, clinic.patient):
        sign_in(other)
        assert client.get(url).status_code == 403, other


def test_a_prescribers_put_of_their_own_credentials_is_refused_and_changes_nothing(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """The credentials gate the prescriber's own controlled prescribing: they may not
    write them, not even to add a state or remove an expired one."""
    url = f"/api/v1/prescribers/{clinic.prescriber.id}/credentials"
    sign_in(clinic.admin)
    assert client.put(url, json=CREDENTIALS).status_code == 200
    sign_in(clinic.prescriber)
    before = client.get(url).json()

    def updates_and_denials() -> tuple[int, int]:
        async def query() -> tuple[int, int]:
            async with services.transaction() as session:
                rows = (await session.execute(select(AuditEntry.outcome).where(
                    AuditEntry.actor_id == clinic.prescriber.id,
                    AuditEntry.resource_type == "prescriber_credentials"))).scalars().all()
                return (sum(1 for o in rows if o != "denied"),
                        sum(1 for o in rows if o == "denied"))

        return run(query)

    attempts = [
        {"credentials": [{"state": "TX", "license_number": "TX-9", "dea_number": "AB1234563"},
                         *CREDENTIALS["credentials"]]},          # a state added
        {"credentials": [{"state": "NY", "license_number": "NY-9"}]},  # changed
        {"credentials": []},                                     # all removed
    ]
    for number, body in enumerate(attempts, start=1):
        refused = client.put(url, json=body)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "credentials_recorded_by_admins"
        assert "recorded by the clinic's admins" in error["message"]
        assert client.get(url).json() == before
        # Refused in the access helper, before anything was written; the refusal is
        # audited like the others, and nothing else is.
        assert updates_and_denials() == (0, number)
    assert [c["state"] for c in before["credentials"]] == ["NY"]
