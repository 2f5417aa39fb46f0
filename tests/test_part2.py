"""42 CFR Part 2: what is a substance use disorder record, consents, and the one
disclosure step (server/part2.py, server/consents.py, server/disclosures.py).

Exports go to a recipient outside the program; Part 2 data go only under a consent that
covers that recipient and purpose, labelled and with the 2.32 notice, and each such
disclosure is in the patient's accounting once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.medication_catalogue import CATALOGUE_PATH, load_catalogue
from server.models import AuditEntry, Medication, Part2Disclosure
from server.oncall import add_shift
from server.part2 import NOTICE, RULES_PATH, load_rules, rules
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn

TREATING = {"name": "Riverside Recovery Center", "recipient_class": "treating_providers"}
PAYER = {"name": "Acme Health Plan", "recipient_class": "payers"}


def tpo(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "tpo", "categories": ["sud_measures", "sud_checkin", "moud"],
        "recipient_classes": ["treating_providers"], "purposes": ["treatment"],
        "expiry_event": "When I leave the program", "signed_name": "Patient"}
    return body | changes


# --- the rules file ------------------------------------------------------------------


# Every name the rules file listed before the catalogue held Part 2's medications.
FORMER_LIST = ["buprenorphine", "methadone", "naltrexone", "suboxone", "subutex", "zubsolv",
               "sublocade", "brixadi", "methadose", "dolophine", "vivitrol", "revia"]


@pytest.mark.parametrize("name, category", [
    *[(name, "moud") for name in FORMER_LIST],
    ("Buprenorphine/naloxone", "moud"), ("Methadone", "moud"),
    ("naltrexone ER (Vivitrol)", "moud"), ("Suboxone", "moud"),
    # Naltrexone whatever it is prescribed for, alone or in a combination.
    ("naltrexone 50 mg for alcohol use disorder", "moud"), ("bupropion/naltrexone", "moud"),
    # What the catalogue knows and the former list did not.
    ("Bunavail", "moud"), ("acamprosate", "moud"), ("Campral", "moud"),
    ("disulfiram", "moud"), ("Antabuse", "moud"),
    # Not Part 2: tobacco is outside 42 CFR 2.11's "substance use disorder".
    ("varenicline", None), ("Chantix", None), ("Zyban", None),
    ("Sertraline", None), ("Lithium carbonate", None), ("Bupropion", None),
    ("methadonex", None),  # whole words only
])
def test_medications_for_opioid_or_alcohol_use_disorder_are_part2(
        name: str, category: str | None) -> None:
    assert rules().of_medication(name) == category


def test_a_medication_added_to_the_catalogue_reaches_part2(tmp_path: Path) -> None:
    """One list decides: a `part2` entry added to the catalogue is Part 2 with no change
    to the rules file; a brand added to an existing entry too."""
    assert rules().of_medication("Lucemyra 0.18 mg") is None
    text = CATALOGUE_PATH.read_text() + (
        '\n[[medications]]\nname = "lofexidine"\nbrands = ["lucemyra"]\n'
        'psychotropic = "addiction"\npart2 = true\n')
    text = text.replace('brands = ["antabuse"]', 'brands = ["antabuse", "newabuse"]', 1)
    changed = tmp_path / "medication_catalogue.toml"
    changed.write_text(text)
    part2 = load_rules(RULES_PATH, load_catalogue(changed))
    assert part2.of_medication("Lucemyra 0.18 mg") == "moud"
    assert part2.of_medication("lofexidine") == "moud"
    assert part2.of_medication("Newabuse 250 mg") == "moud"
    assert part2.of_medication("Sertraline") is None


def test_instruments_and_checkin_sections() -> None:
    part2 = rules()
    assert part2.of_instrument("auditc") == "sud_measures"
    assert part2.of_instrument("phq9") is None and part2.of_instrument("cssrs") is None
    assert part2.of_checkin_section("substance_use") == "sud_checkin"
    assert part2.of_checkin_section("side_effects") is None
    assert part2.of_note_kind("sud_counseling") == "sud_counseling_notes"
    assert part2.needs_own_consent("sud_counseling_notes")
    assert not part2.needs_own_consent("moud")


def test_a_broken_rules_file_fails_at_load(tmp_path: Path) -> None:
    text = RULES_PATH.read_text().replace("retention_years = 3", "retention_years = 1")
    broken = tmp_path / "rules.toml"
    broken.write_text(text)
    with pytest.raises(ValueError, match="retention_years"):
        load_rules(broken)
    missing = tmp_path / "missing.toml"
    missing.write_text(RULES_PATH.read_text().split("[categories.moud]")[0])
    with pytest.raises(ValueError, match="moud"):
        load_rules(missing)
    # Medication names are the catalogue's: a list here is refused, not half-read.
    names = tmp_path / "names.toml"
    names.write_text(RULES_PATH.read_text().replace(
        "catalogue_medications = true", 'medications = ["methadone"]'))
    with pytest.raises(ValueError, match=r"categories\.moud\.medications: .*catalogue"):
        load_rules(names)
    # No category holding the catalogue's Part 2 medications: they would be in none.
    nowhere = tmp_path / "nowhere.toml"
    nowhere.write_text(RULES_PATH.read_text().replace("catalogue_medications = true\n", ""))
    with pytest.raises(ValueError, match="exactly one category has catalogue_medications"):
        load_rules(nowhere)


# --- a patient with Part 2 data ----------------------------------------------------


def with_part2_data(client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
                    services: Services) -> None:
    """A completed check-in with AUDIT-C (Part 2) and PHQ-9 (not), and two medications:
    buprenorphine (Part 2) and sertraline (not)."""
    sign_in(clinic.patient)
    body = checkin_body(phq9=[1, 1, 1, 1, 0, 0, 0, 0, 0], auditc=[3, 2, 1])
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin", json=body).status_code \
        == 201

    async def medicate() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            for drug in ("Buprenorphine/naloxone", "Sertraline"):
                session.add(Medication(patient_id=clinic.patient.id, drug=drug, dose="8",
                                       unit="mg", active=True, started_at=now,
                                       changed_at=now))

    run(medicate)


def export(client: TestClient, clinic: Clinic, recipient: dict[str, Any],
           purpose: str = "treatment") -> dict[str, Any]:
    response = client.post(f"/api/v1/patients/{clinic.patient.id}/disclosures/fhir",
                           json={"recipient": recipient, "purpose": purpose})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = response.json()
    return bundle


def kinds(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle.get("entry", []))


def part2_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        codes = {label["code"] for label in resource.get("meta", {}).get("security", [])}
        if "42CFRPart2" in codes:
            found.append(resource)
    return found


def has_auditc(bundle: dict[str, Any]) -> bool:
    return any("auditc" in str(e["resource"].get("questionnaire", "")) or
               "AUDIT" in str(e["resource"].get("code", {}).get("text", ""))
               for e in bundle.get("entry", []))


def has_drug(bundle: dict[str, Any], name: str) -> bool:
    return any(e["resource"].get("medicationCodeableConcept", {}).get("text") == name
               for e in bundle.get("entry", []))


def accounting(client: TestClient, clinic: Clinic) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/patients/{clinic.patient.id}/disclosures")
    assert response.status_code == 200
    found: list[dict[str, Any]] = response.json()["disclosures"]
    return found


def test_an_export_without_consent_carries_no_part2_data(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    sign_in(clinic.prescriber)
    bundle = export(client, clinic, TREATING)
    assert not has_auditc(bundle)
    assert not has_drug(bundle, "Buprenorphine/naloxone")
    assert has_drug(bundle, "Sertraline")
    assert "Observation" in kinds(bundle) and "QuestionnaireResponse" in kinds(bundle)
    assert part2_resources(bundle) == []
    assert "meta" not in bundle  # no Part 2 record went, so no notice either
    assert accounting(client, clinic) == []


def test_an_export_under_consent_is_labelled_with_the_notice_and_accounted_once(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    signed = client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json=tpo())
    assert signed.status_code == 201, signed.text
    consent_id = signed.json()["id"]
    sign_in(clinic.prescriber)
    bundle = export(client, clinic, TREATING)
    assert has_auditc(bundle) and has_drug(bundle, "Buprenorphine/naloxone")
    labelled = part2_resources(bundle)
    # AUDIT-C's QuestionnaireResponse and Observation, and the MOUD MedicationStatement.
    assert sorted(r["resourceType"] for r in labelled) == [
        "MedicationStatement", "Observation", "QuestionnaireResponse"]
    for resource in labelled:
        codes = {s["code"] for s in resource["meta"]["security"]}
        assert {"R", "42CFRPart2", "ETH", "NORDSCLCD"} <= codes
    assert not any(r["resourceType"] == "MedicationStatement" and
                   r["medicationCodeableConcept"]["text"] == "Sertraline" for r in labelled)
    assert bundle["meta"]["extension"][0]["valueString"] == NOTICE
    assert "42 CFR part 2" in NOTICE
    consent = [e["resource"] for e in bundle["entry"]
               if e["resource"]["resourceType"] == "Consent"]
    assert [c["id"] for c in consent] == [f"consent-{consent_id}"]
    get_fhir_model_class("Bundle").model_validate(bundle)
    rows = accounting(client, clinic)
    assert len(rows) == 1
    assert rows[0]["recipient_name"] == "Riverside Recovery Center"
    assert rows[0]["purpose"] == "treatment" and rows[0]["consent_id"] == consent_id
    assert rows[0]["basis"] == "consent"
    assert set(rows[0]["categories"]) == {"sud_measures", "moud"}
    assert "questionnaires" in rows[0]["description"]


def test_medications_only_the_catalogue_named_are_withheld_and_released_with_moud(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    """Acamprosate, Antabuse and Bunavail were not in the former Part 2 list: from the
    catalogue, an export leaves them out without consent and labels them under one."""
    sign_in(clinic.patient)

    async def medicate() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            for drug in ("Acamprosate 333 mg", "Antabuse", "Bunavail", "Chantix"):
                session.add(Medication(patient_id=clinic.patient.id, drug=drug, dose="1",
                                       unit="tablet", active=True, started_at=now,
                                       changed_at=now))

    run(medicate)
    sign_in(clinic.prescriber)
    bundle = export(client, clinic, TREATING)
    assert [has_drug(bundle, d) for d in ("Acamprosate 333 mg", "Antabuse", "Bunavail")] \
        == [False, False, False]
    assert has_drug(bundle, "Chantix") and part2_resources(bundle) == []
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                       json=tpo()).status_code == 201
    sign_in(clinic.prescriber)
    labelled = part2_resources(export(client, clinic, TREATING))
    assert sorted(r["medicationCodeableConcept"]["text"] for r in labelled) == [
        "Acamprosate 333 mg", "Antabuse", "Bunavail"]


def test_a_consent_covers_only_its_recipients_and_purposes(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                       json=tpo()).status_code == 201
    specific = tpo(kind="specific", recipient_classes=[], recipient_name="Dr. Ana Ruiz",
                   purposes=["treatment"], categories=["moud"])
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                       json=specific).status_code == 201
    sign_in(clinic.prescriber)
    # A payer, for payment: the TPO consent names treating providers only.
    assert part2_resources(export(client, clinic, PAYER, "payment")) == []
    # A treating provider, but for another purpose.
    assert part2_resources(export(client, clinic, TREATING, "health_care_operations")) == []
    # The named recipient (any spacing or case of the name): the medication only.
    named = export(client, clinic, {"name": "  dr. ana   RUIZ ", "recipient_class": "other"})
    assert has_drug(named, "Buprenorphine/naloxone") and not has_auditc(named)
    # Someone else of the same class as the named recipient: nothing.
    other = export(client, clinic, {"name": "Dr. Ana Ruizz", "recipient_class": "other"})
    assert part2_resources(other) == []
    assert len(accounting(client, clinic)) == 1


def test_a_revoked_consent_stops_the_next_export(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    consent_id = client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                             json=tpo()).json()["id"]
    sign_in(clinic.prescriber)
    assert has_auditc(export(client, clinic, TREATING))
    sign_in(clinic.patient)
    revoked = client.post(f"/api/v1/consents/{consent_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    again = client.post(f"/api/v1/consents/{consent_id}/revoke")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_revoked"
    sign_in(clinic.prescriber)
    assert part2_resources(export(client, clinic, TREATING)) == []
    # The disclosure made before the revocation stays in the accounting, once.
    assert len(accounting(client, clinic)) == 1
    listed = client.get(f"/api/v1/patients/{clinic.patient.id}/consents").json()["consents"]
    assert [(c["id"], c["active"]) for c in listed] == [(consent_id, False)]


def test_an_expired_consent_covers_nothing(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    today = services.clock.now().date()
    body = tpo(expiry_event=None, expires_on=(today + timedelta(days=2)).isoformat())
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                       json=body).status_code == 201
    sign_in(clinic.prescriber)
    assert has_auditc(export(client, clinic, TREATING))
    services.clock.advance(timedelta(days=4))
    sign_in(clinic.prescriber)  # the session itself has long expired
    assert not has_auditc(export(client, clinic, TREATING))


def test_counseling_notes_need_a_consent_of_their_own(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.patient)
    url = f"/api/v1/patients/{clinic.patient.id}/consents"
    mixed = client.post(url, json=tpo(categories=["moud", "sud_counseling_notes"]))
    assert mixed.status_code == 422 and mixed.json()["error"]["field"] == "categories"
    own = tpo(kind="counseling_notes", recipient_classes=[], recipient_name="Dr. Ana Ruiz",
              categories=["sud_counseling_notes", "moud"])
    refused = client.post(url, json=own)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "categories"
    assert client.post(url, json=own | {"categories": ["sud_counseling_notes"]}) \
        .status_code == 201


@pytest.mark.parametrize("changes, field", [
    ({"signed_name": "Someone Else"}, "signed_name"),
    ({"signed_name": "   "}, "signed_name"),
    ({"expiry_event": None}, "expires_on"),
    ({"recipient_classes": []}, "recipient_classes"),
    ({"purposes": ["other"]}, "purposes"),
    ({"kind": "specific", "recipient_classes": []}, "recipient_name"),
    ({"kind": "specific", "recipient_name": "Dr. Ruiz", "purposes": ["other"]},
     "purpose_text"),
    ({"categories": []}, "categories"),
    ({"categories": ["everything"]}, "categories.0"),
    ({"expires_on": "2001-01-01"}, "expires_on"),
    ({"surprise": True}, "surprise"),
])
def test_a_consent_missing_an_element_is_refused_naming_it(
        client: TestClient, clinic: Clinic, sign_in: SignIn, changes: dict[str, Any],
        field: str) -> None:
    sign_in(clinic.patient)
    response = client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                           json=tpo(**changes))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_staff_record_a_paper_consent_with_its_date(
        client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services) -> None:
    sign_in(clinic.coordinator)
    url = f"/api/v1/patients/{clinic.patient.id}/consents/paper"
    today = services.clock.now().date()
    undated = client.post(url, json=tpo())
    assert undated.status_code == 422 and undated.json()["error"]["field"] == "signed_on"
    future = client.post(url, json=tpo(signed_on=(today + timedelta(days=3)).isoformat()))
    assert future.status_code == 422 and future.json()["error"]["field"] == "signed_on"
    written = (today - timedelta(days=2)).isoformat()
    made = client.post(url, json=tpo(signed_on=written, signed_name="P. Atient"))
    assert made.status_code == 201
    assert made.json()["source"] == "paper" and made.json()["signed_on"] == written
    assert made.json()["recorded_by"]["name"] == clinic.coordinator.name


def test_consents_export_as_fhir_consent(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.patient)
    consent_id = client.post(f"/api/v1/patients/{clinic.patient.id}/consents",
                             json=tpo()).json()["id"]
    client.post(f"/api/v1/consents/{consent_id}/revoke")
    bundle = client.get(f"/api/v1/patients/{clinic.patient.id}/consents/fhir").json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    (resource,) = [e["resource"] for e in bundle["entry"]]
    get_fhir_model_class("Consent").model_validate(resource)
    assert resource["status"] == "inactive"
    assert resource["policyRule"]["coding"][0]["code"] == "42CFRPart2"
    assert resource["provision"]["purpose"][0]["code"] == "TREAT"


def test_an_emergency_disclosure_needs_no_consent_and_is_accounted(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    sign_in(clinic.coordinator)
    url = f"/api/v1/patients/{clinic.patient.id}/disclosures/emergency"
    vague = client.post(url, json={"recipient_name": "Dr. Lee", "affiliation": "ED",
                                   "nature": "?!"})
    assert vague.status_code == 422 and vague.json()["error"]["field"] == "nature"
    made = client.post(url, json={"recipient_name": "Dr. Lee",
                                  "affiliation": "City Hospital emergency department",
                                  "nature": "Unresponsive after a suspected overdose"})
    assert made.status_code == 201, made.text
    rows = accounting(client, clinic)
    assert [(r["basis"], r["consent_id"], r["recipient_affiliation"]) for r in rows] == [
        ("medical_emergency", None, "City Hospital emergency department")]
    assert rows[0]["disclosed_by"]["id"] == clinic.coordinator.id
    assert rows[0]["emergency_nature"] == "Unresponsive after a suspected overdose"
    sign_in(clinic.patient)
    assert len(accounting(client, clinic)) == 1  # the patient sees it too


def test_the_accounting_covers_three_years(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    sign_in(clinic.coordinator)
    url = f"/api/v1/patients/{clinic.patient.id}/disclosures/emergency"
    body = {"recipient_name": "Dr. Lee", "affiliation": "City Hospital",
            "nature": "Seizure during alcohol withdrawal"}
    assert client.post(url, json=body).status_code == 201
    services.clock.advance(timedelta(days=365 * 3 - 2))
    sign_in(clinic.coordinator)
    assert len(accounting(client, clinic)) == 1
    services.clock.advance(timedelta(days=5))
    sign_in(clinic.coordinator)
    assert accounting(client, clinic) == []

    async def kept() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(
                Part2Disclosure).where(Part2Disclosure.patient_id == clinic.patient.id)) or 0)

    assert run(kept) == 1  # past the window the row is kept, only not listed


def test_disclosures_and_consents_are_audited(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json=tpo())
    sign_in(clinic.prescriber)
    export(client, clinic, TREATING)

    async def actions() -> list[tuple[str, str]]:
        async with services.transaction() as session:
            rows = (await session.execute(select(AuditEntry.action, AuditEntry.resource_type)
                                          .where(AuditEntry.patient_id == clinic.patient.id)))
            return [(a, r) for a, r in rows]

    found = run(actions)
    assert ("create", "consent") in found
    assert ("disclose", "disclosure") in found
    assert ("export_fhir", "measures") in found


def test_the_programs_own_export_labels_part2_resources(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    """The care team's (or the patient's own) copy: nothing left out, Part 2 labelled."""
    with_part2_data(client, clinic, sign_in, run, services)
    sign_in(clinic.prescriber)
    bundle = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    assert has_auditc(bundle) and has_drug(bundle, "Buprenorphine/naloxone")
    labelled = part2_resources(bundle)
    assert sorted(r["resourceType"] for r in labelled) == [
        "MedicationStatement", "Observation", "QuestionnaireResponse"]
    get_fhir_model_class("Bundle").model_validate(bundle)


# --- the escalation's offer (42 CFR 2.51) ---------------------------------------------


def resolved_with_help_sent(client: TestClient, clinic: Clinic, disposition: str) -> int:
    response = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "level": "urgent", "reason": "relapse",
        "text": "From a call"})
    assert response.status_code == 201, response.text
    escalation_id: int = response.json()["id"]
    base = f"/api/v1/escalations/{escalation_id}"
    assert client.post(f"{base}/acknowledge").status_code == 200
    if disposition not in ("emergency_services", "mobile_crisis"):
        # An urgent escalation closes by help sent or the patient reached (invariant 6).
        assert client.post(f"{base}/events", json={
            "kind": "contact_attempt", "outcome": "reached"}).status_code == 201
    resolved = client.post(f"{base}/resolve", json={
        "disposition": disposition, "note": "Ambulance sent to the patient's address"})
    assert resolved.status_code == 200, resolved.text
    return escalation_id


@pytest.mark.parametrize("disposition", ["emergency_services", "mobile_crisis"])
def test_resolving_with_help_sent_offers_the_emergency_disclosure(
        client: TestClient, clinic: Clinic, sign_in: SignIn, disposition: str) -> None:
    csrf = sign_in(clinic.coordinator)
    escalation_id = resolved_with_help_sent(client, clinic, disposition)
    page = client.get(f"/escalations/{escalation_id}").text
    assert 'data-testid="emergency-disclosure-offer"' in page
    form = client.get(f"/escalations/{escalation_id}/emergency-disclosure")
    assert form.status_code == 200 and "42 CFR 2.51" in form.text
    missing = client.post(f"/escalations/{escalation_id}/emergency-disclosure",
                          data={"csrf_token": csrf, "recipient_name": "Paramedic Diaz",
                                "affiliation": "County EMS", "nature": ""})
    assert missing.status_code == 422 and 'data-testid="emergency-error"' in missing.text
    made = client.post(f"/escalations/{escalation_id}/emergency-disclosure",
                       data={"csrf_token": csrf, "recipient_name": "Paramedic Diaz",
                             "affiliation": "County EMS",
                             "nature": "Overdose suspected; told them about buprenorphine"},
                       follow_redirects=False)
    assert made.status_code == 303
    page = client.get(f"/escalations/{escalation_id}").text
    assert "Medical-emergency disclosure recorded: to Paramedic Diaz, County EMS" in page
    rows = accounting(client, clinic)
    assert [(r["escalation_id"], r["basis"]) for r in rows] == [
        (escalation_id, "medical_emergency")]


def test_no_offer_when_help_was_not_sent(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.coordinator)
    escalation_id = resolved_with_help_sent(client, clinic, "in_person_visit")
    assert 'emergency-disclosure-offer' not in client.get(f"/escalations/{escalation_id}").text


def test_on_call_staff_off_the_care_team_record_the_escalations_disclosure(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    sign_in(clinic.coordinator)
    escalation_id = resolved_with_help_sent(client, clinic, "emergency_services")

    async def on_call() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            await add_shift(session, None, user_id=clinic.other_coordinator.id,
                            starts_at=now,
                            ends_at=now + timedelta(hours=8), now=now)

    run(on_call)
    sign_in(clinic.other_coordinator)
    body = {"recipient_name": "Dr. Lee", "affiliation": "City Hospital ED",
            "nature": "Seizure during alcohol withdrawal"}
    url = f"/api/v1/patients/{clinic.patient.id}/disclosures/emergency"
    # Without the escalation, the care team's rule applies: not theirs.
    assert client.post(url, json=body).status_code == 403
    made = client.post(url, json=body | {"escalation_id": escalation_id})
    assert made.status_code == 201, made.text
    other = client.post(f"/api/v1/patients/{clinic.patient2.id}/disclosures/emergency",
                        json=body | {"escalation_id": escalation_id})
    assert other.status_code in (403, 422)


# --- SUD counseling notes and the referral packet ------------------------------------


def write_counseling_note(client: TestClient, clinic: Clinic, text: str) -> int:
    made = client.post(f"/api/v1/patients/{clinic.patient.id}/counseling-notes",
                       json={"text": text})
    assert made.status_code == 201, made.text
    note_id: int = made.json()["id"]
    return note_id


def test_counseling_notes_stay_apart_and_go_only_under_their_own_consent(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json=tpo())
    sign_in(clinic.prescriber)
    write_counseling_note(client, clinic, "Talked through cravings after the weekend.")
    listed = client.get(f"/api/v1/patients/{clinic.patient.id}/counseling-notes").json()
    assert [n["text"] for n in listed["counseling_notes"]] == [
        "Talked through cravings after the weekend."]
    # Not in the program's own copy, and not under the TPO consent.
    own = client.get(f"/api/v1/patients/{clinic.patient.id}/fhir").json()
    assert "DocumentReference" not in kinds(own)
    assert "DocumentReference" not in kinds(export(client, clinic, TREATING))
    # A consent for the notes alone, to one named counselor: they go to that counselor.
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json=tpo(
        kind="counseling_notes", recipient_classes=[], recipient_name="Dr. Ana Ruiz",
        categories=["sud_counseling_notes"])).status_code == 201
    # The patient cannot read them (as with psychotherapy notes), nor write them.
    assert client.get(f"/api/v1/patients/{clinic.patient.id}/counseling-notes") \
        .status_code == 403
    sign_in(clinic.prescriber)
    named = export(client, clinic, {"name": "Dr. Ana Ruiz", "recipient_class": "other"})
    [document] = [e["resource"] for e in named["entry"]
                  if e["resource"]["resourceType"] == "DocumentReference"]
    assert {s["code"] for s in document["meta"]["security"]} >= {"42CFRPart2"}
    assert "DocumentReference" not in kinds(export(client, clinic, TREATING))
    get_fhir_model_class("Bundle").model_validate(named)
    vague = client.post(f"/api/v1/patients/{clinic.patient.id}/counseling-notes",
                        json={"text": "ok"})
    assert vague.status_code == 422 and vague.json()["error"]["field"] == "text"


def refer(client: TestClient, escalation_id: int, **changes: Any) -> dict[str, Any]:
    body = {"program_name": "Riverside Recovery Center", "level_of_care": "residential",
            "note": "Daily use despite outpatient care."} | changes
    made = client.post(f"/api/v1/escalations/{escalation_id}/referrals", json=body)
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


def step_up(client: TestClient, clinic: Clinic) -> int:
    raised = client.post("/api/v1/escalations", json={
        "patient_id": clinic.patient.id, "level": "step_up", "reason": "relapse",
        "text": "Relapse reported at the visit"})
    assert raised.status_code == 201, raised.text
    escalation_id: int = raised.json()["id"]
    return escalation_id


def test_a_referral_packet_follows_the_consents(
        client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner,
        services: Services) -> None:
    with_part2_data(client, clinic, sign_in, run, services)
    sign_in(clinic.coordinator)
    write_counseling_note(client, clinic, "Counseling: relapse prevention plan reviewed.")
    escalation_id = step_up(client, clinic)
    # No consent: the packet has the mental-health record, none of the Part 2 parts.
    first = refer(client, escalation_id)
    content = first["content"]
    assert [m["drug"] for m in content["medications"]] == ["Sertraline"]
    assert {m["instrument"] for m in content["measures"]} >= {"phq9", "gad7"}
    assert "auditc" not in {m["instrument"] for m in content["measures"]}
    assert content["substance_use"] is None and content["counseling_notes"] == []
    assert content["notice"] is None and content["part2"] == []
    assert set(content["withheld"]) == {"moud", "sud_checkin", "sud_counseling_notes",
                                        "sud_measures"}
    assert part2_resources(content["bundle"]) == []
    # The patient consents to the program for treatment: the next packet carries them,
    # labelled, with the notice; the counseling notes still stay home.
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json=tpo(
        kind="specific", recipient_classes=[], recipient_name="Riverside Recovery Center",
        categories=["sud_measures", "sud_checkin", "moud"])).status_code == 201
    sign_in(clinic.coordinator)
    second = refer(client, escalation_id)["content"]
    assert [m["drug"] for m in second["medications"]] == ["Buprenorphine/naloxone",
                                                         "Sertraline"]
    assert "auditc" in {m["instrument"] for m in second["measures"]}
    assert second["substance_use"]["cravings"] == 2
    assert second["counseling_notes"] == [] and second["withheld"] == [
        "sud_counseling_notes"]
    assert second["notice"] == NOTICE
    bundle = second["bundle"]
    assert bundle["meta"]["extension"][0]["valueString"] == NOTICE
    assert "ServiceRequest" in kinds(bundle) and "Consent" in kinds(bundle)
    assert sorted(r["resourceType"] for r in part2_resources(bundle)) == [
        "MedicationStatement", "Observation", "QuestionnaireResponse"]
    get_fhir_model_class("Bundle").model_validate(bundle)
    # Each packet is one row of the accounting; printing it again adds none.
    again = client.get(f"/api/v1/escalations/{escalation_id}/referrals/{first['id']}")
    assert again.status_code == 200 and again.json() == content["bundle"]
    page = client.get(f"/escalations/{escalation_id}/referrals/{first['id']}")
    assert page.status_code == 200 and 'data-testid="referral-withheld"' in page.text
    rows = [r for r in accounting(client, clinic) if r["channel"] == "referral_packet"]
    assert len(rows) == 2
    assert rows[0]["categories"] == ["moud", "sud_checkin", "sud_measures"]
    assert rows[1]["categories"] == [] and "no substance use records" in rows[1]["description"]


def test_the_referral_form_refers_from_the_escalation_page(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    csrf = sign_in(clinic.coordinator)
    escalation_id = step_up(client, clinic)
    page = client.get(f"/escalations/{escalation_id}").text
    assert 'data-testid="refer"' in page
    form = client.get(f"/escalations/{escalation_id}/referral")
    assert form.status_code == 200 and "Intensive outpatient" in form.text
    missing = client.post(f"/escalations/{escalation_id}/referral",
                          data={"csrf_token": csrf, "program_name": "Riverside"})
    assert missing.status_code == 422 and 'aria-invalid="true"' in missing.text
    made = client.post(f"/escalations/{escalation_id}/referral",
                       data={"csrf_token": csrf, "program_name": "Riverside <IOP>",
                             "level_of_care": "intensive_outpatient"},
                       follow_redirects=False)
    assert made.status_code == 303
    packet = client.get(made.headers["location"])
    assert packet.status_code == 200 and "Riverside &lt;IOP&gt;" in packet.text
    assert "Intensive outpatient" in packet.text and "data-print" in packet.text
    page = client.get(f"/escalations/{escalation_id}").text
    assert 'data-testid="referral-made"' in page
