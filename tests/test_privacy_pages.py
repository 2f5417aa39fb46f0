"""The Part 2 pages: the patient's consents and accounting, and the care team's page
(web/pages/privacy.py)."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from server.services import Services
from tests.clinic import Clinic
from tests.conftest import SignIn


def consent_form(csrf: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf, "kind": "tpo", "categories": ["sud_measures", "moud"],
        "recipient_classes": ["treating_providers"], "purposes": ["treatment"],
        "expiry_event": "When I leave the program", "signed_name": "Patient"}
    return form | changes


def consent_ids(html: str) -> list[str]:
    return re.findall(r'data-consent-id="(\d+)"', html)


def test_a_patient_signs_and_revokes_on_their_own_pages(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    csrf = sign_in(clinic.patient)
    page = client.get("/privacy")
    assert page.status_code == 200 and 'data-testid="no-consents"' in page.text
    form = client.get("/privacy/consents/new")
    assert form.status_code == 200
    # Every element of 42 CFR 2.31(a) is on the form the patient signs.
    for words in ("revoke", "42 CFR Part 2", "Your care does not depend on signing",
                  "When this consent ends", "What may be shared", "What for"):
        assert words in form.text
    signed = client.post("/privacy/consents", data=consent_form(csrf),
                         follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/privacy?done=signed"
    page = client.get("/privacy?done=signed").text
    (consent_id,) = consent_ids(page)
    assert "Your consent is signed." in page
    assert "My treating providers" in page and "Medications for opioid" in page
    assert 'data-testid="confirm-revoke"' in page
    revoked = client.post(f"/privacy/consents/{consent_id}/revoke",
                          data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    page = client.get("/privacy?done=revoked").text
    assert 'data-active="no"' in page and "Revoked" in page
    assert 'data-testid="confirm-revoke"' not in page


def test_a_form_missing_an_element_says_which_and_keeps_what_was_typed(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    csrf = sign_in(clinic.patient)
    response = client.post("/privacy/consents",
                           data=consent_form(csrf, expiry_event="",
                                             recipient_name="<b>Dr. Who</b>"))
    assert response.status_code == 422
    assert 'id="expires_on-error"' in response.text
    assert "Give the date or the event" in response.text
    assert "&lt;b&gt;Dr. Who&lt;/b&gt;" in response.text  # kept, and escaped
    wrong_name = client.post("/privacy/consents",
                             data=consent_form(csrf, signed_name="Someone Else"))
    assert wrong_name.status_code == 422 and 'id="signed_name-error"' in wrong_name.text
    assert consent_ids(client.get("/privacy").text) == []


def test_the_accounting_page_lists_each_disclosure_once(
        client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services) -> None:
    csrf = sign_in(clinic.coordinator)
    made = client.post(f"/patients/{clinic.patient.id}/privacy/emergency",
                       data={"csrf_token": csrf, "recipient_name": "Dr. Lee",
                             "affiliation": "City Hospital ED",
                             "nature": "Unresponsive after a suspected overdose"},
                       follow_redirects=False)
    assert made.status_code == 303
    staff = client.get(f"/patients/{clinic.patient.id}/privacy/disclosures").text
    assert staff.count('data-testid="disclosure"') == 1
    assert "Medical emergency: Unresponsive" in staff and "data-print" in staff
    sign_in(clinic.patient)
    own = client.get("/privacy/disclosures").text
    assert own.count('data-testid="disclosure"') == 1
    assert "City Hospital ED" in own and "No consent needed" in own


def test_staff_record_a_paper_consent_and_see_field_errors(
        client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services) -> None:
    csrf = sign_in(clinic.prescriber)
    url = f"/patients/{clinic.patient.id}/privacy"
    page = client.get(url)
    assert page.status_code == 200 and "Record a consent signed on paper" in page.text
    undated = client.post(f"{url}/consents", data=consent_form(csrf))
    assert undated.status_code == 422 and 'id="signed_on-error"' in undated.text
    today = services.clock.now().date().isoformat()
    recorded = client.post(f"{url}/consents", data=consent_form(csrf, signed_on=today),
                           follow_redirects=False)
    assert recorded.status_code == 303
    page = client.get(f"{url}?done=recorded").text
    assert len(consent_ids(page)) == 1 and "on paper, recorded by Prescriber" in page
    vague = client.post(f"{url}/emergency", data={"csrf_token": csrf, "recipient_name": "A",
                                                   "affiliation": "B", "nature": "x"})
    assert vague.status_code == 422 and "the nature of the emergency" in vague.text


def test_a_join_link_session_cannot_reach_the_consents(
        client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    sign_in(clinic.patient, visit_id=clinic.visit_id)
    assert client.get("/privacy").status_code == 403
    assert client.get(f"/api/v1/patients/{clinic.patient.id}/consents").status_code == 403
