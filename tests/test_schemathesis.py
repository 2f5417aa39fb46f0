"""The API as its OpenAPI document describes it: schemathesis against
``/api/v1/openapi.json`` as each role, with zero 5xx and zero schema violations.

Every operation gets cases generated from its documented parameters and body, valid ones
and ones that break the schema, sent through the real app as an anonymous visitor or
with a real session of the role (cookie and CSRF header). Every answer must be
documented: no 5xx, a documented status code and content type, an error body of the
documented shape, and data that breaks the schema refused with a 4xx.

Random ids almost always miss, so half of the valid cases use ids that exist (the
clinic's visits and people, an escalation, a note), and reach the handlers' real work.
Bounded for CI: a fixed number of cases per operation, derandomized, on SQLite only (the
database-specific input cases are in test_input_hygiene.py and test_fuzz_payloads.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from starlette.testclient import TestClient

from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.databases import SqliteTemplate

ROLES = ["anonymous", "patient", "prescriber", "coordinator", "admin"]
POSITIVE_CASES = 12
NEGATIVE_CASES = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@pytest.fixture
def database_url(sqlite_template: SqliteTemplate) -> str:
    # SQLite only: the same cases on PostgreSQL would double the time for no new answer.
    return sqlite_template.fresh()


def seed(client: TestClient, clinic: Clinic, sign_in: SignIn) -> dict[str, list[int]]:
    """Rows for the cases to find: a completed emergency check-in (an escalation), a
    saved note, and the ids of everything the clinic has."""
    sign_in(clinic.patient)
    done = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body(cssrs=HIGH_RISK_CSSRS))
    assert done.status_code == 201, done.text
    escalations: list[int] = done.json()["escalations"]
    assert escalations, done.text
    consent = client.post(f"/api/v1/patients/{clinic.patient.id}/consents", json={
        "kind": "tpo", "categories": ["moud"], "recipient_classes": ["treating_providers"],
        "purposes": ["treatment"], "expiry_event": "When I leave the program",
        "signed_name": clinic.patient.name})
    assert consent.status_code == 201, consent.text
    sign_in(clinic.prescriber)
    guest = client.post(f"/api/v1/visits/{clinic.visit_id}/guests",
                        json={"name": "Ana Interpreter", "email": "ana@interpreters.test"})
    assert guest.status_code == 201, guest.text
    referral = client.post(f"/api/v1/escalations/{escalations[0]}/referrals",
                           json={"program_name": "Riverside Recovery Center",
                                 "level_of_care": "residential"})
    assert referral.status_code == 201, referral.text
    note = client.put(f"/api/v1/visits/{clinic.visit_id}/note",
                      json={"version": 0, "sections": {"plan": "Continue sertraline."}})
    assert note.status_code == 200, note.text
    people = [clinic.admin.id, clinic.prescriber.id, clinic.other_prescriber.id,
              clinic.coordinator.id, clinic.other_coordinator.id, clinic.patient.id,
              clinic.patient2.id]
    return {"visit_id": [clinic.visit_id, clinic.visit2_id],
            "patient_id": [clinic.patient.id, clinic.patient2.id],
            "escalation_id": escalations, "user_id": people, "member_id": people,
            "prescriber_id": [clinic.prescriber.id, clinic.other_prescriber.id],
            "shift_id": [1], "consent_id": [consent.json()["id"]],
            "guest_id": [guest.json()["id"]], "referral_id": [referral.json()["id"]]}


def send(client: TestClient, case: Any, anonymous: bool) -> Any:
    """The case through the test client: the body as a browser's JSON.stringify writes
    it (ASCII escapes), schemathesis's own cookies only for the anonymous visitor (a
    forged or empty session cookie must be a 401 like no cookie at all)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
               if k.lower() not in ("cookie", "host")}
    cookies = kwargs.get("cookies") or {}
    if anonymous and cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if "json" in kwargs:
        content: bytes | None = json.dumps(kwargs["json"]).encode("ascii")
        headers.setdefault("Content-Type", "application/json")
    else:
        data = kwargs.get("data")
        content = data.encode() if isinstance(data, str) else data
    return client.request(kwargs["method"], kwargs["url"], content=content,
                          headers=headers, params=kwargs.get("params") or None)


def negated_only_the_cookie(case: Any) -> bool:
    negative = {location for location, info in case.meta.components.items()
                if info.mode is GenerationMode.NEGATIVE}
    return negative == {ParameterLocation.COOKIE}


def describe(case: Any, response: Any, error: BaseException) -> str:
    inner = getattr(error, "exceptions", None) or [error]
    first = "; ".join(str(getattr(e, "title", None) or type(e).__name__) for e in inner)
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    body = kwargs.get("json", kwargs.get("data"))
    return (f"{case.operation.label}: {first} -> {response.status_code} "
            f"{response.text[:200]!r}\n    sent {kwargs['url']} body={str(body)[:300]!r}")


@pytest.mark.parametrize("role", ROLES)
def test_every_answer_is_documented(client: TestClient, clinic: Clinic, sign_in: SignIn,
                                    role: str) -> None:
    ids = seed(client, clinic, sign_in)
    person = None if role == "anonymous" else getattr(clinic, role)
    sign_in(None)
    schema = schemathesis.openapi.from_dict(client.get("/api/v1/openapi.json").json())
    failures: list[str] = []
    count = 0
    started = time.monotonic()

    def exercise(operation: Any, mode: GenerationMode, cases: int) -> None:
        names = [p["name"] for p in operation.definition.raw.get("parameters", [])
                 if p.get("in") == "path"]

        @settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans(),
               pick=st.integers(0, 6))
        def one(case: Any, real: bool, pick: int) -> None:
            nonlocal count
            count += 1
            if real and mode is GenerationMode.POSITIVE:
                for name in names:
                    choices = ids[name]
                    case.path_parameters[name] = choices[pick % len(choices)]
            try:
                response = send(client, case, person is None)
            except Exception as error:  # the app raised: a 500 for a real client
                kwargs = case.as_transport_kwargs(base_url="http://testserver")
                failures.append(f"{case.operation.label}: {type(error).__name__}: {error}\n"
                                f"    sent {kwargs['url']} "
                                f"body={str(kwargs.get('json', kwargs.get('data')))[:300]!r}")
                return
            checks = CHECKS
            if person is not None and negated_only_the_cookie(case):
                # The real session replaced the broken cookie: the request is valid.
                checks = [c for c in CHECKS if c is not negative_data_rejection]
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as error:
                failures.append(describe(case, response, error))

        one()

    for result in schema.get_all_operations():
        operation = result.ok()
        # A fresh session for each operation: the last one may have signed it out
        # (DELETE /session), changed its password, or deactivated its user.
        sign_in(person)
        exercise(operation, GenerationMode.POSITIVE, POSITIVE_CASES)
        if operation.definition.raw.get("parameters") or operation.body:
            sign_in(person)
            exercise(operation, GenerationMode.NEGATIVE, NEGATIVE_CASES)
    print(f"{role}: {count} cases in {time.monotonic() - started:.1f} s")
    assert not failures, f"{len(failures)} of {count} cases as {role}:\n" + "\n".join(
        dict.fromkeys(failures))
