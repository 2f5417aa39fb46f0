"""The OpenAPI document's bodies say what the handlers do: the triage and check-in bodies
are the pydantic models that read them (server/triage.py, server/checkins.py), and accept
and refuse what the JSON Schema in the document accepts and refuses; every operation that
reads a body documents 400."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from escalation.triage_rules import load_default_rules
from server.api.openapi import build
from server.app import api_operations
from server.checkins import CheckInCompletion, CheckInDraft
from server.errors import ValidationFailed
from server.triage import TriageBody, evaluate
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body

DOCUMENT = build(api_operations(), "test")
RULES = load_default_rules()


def validator(path: str, method: str) -> jsonschema.Draft202012Validator:
    body = DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]
    schema = {"components": DOCUMENT["components"], **body["schema"]}
    return jsonschema.Draft202012Validator(schema)


TRIAGE = validator("/api/v1/triage", "post")
COMPLETION = validator("/api/v1/visits/{visit_id}/checkin", "post")
DRAFT = validator("/api/v1/visits/{visit_id}/checkin/draft", "put")


def triage_accepts(body: Any) -> bool:
    try:
        evaluate(body, RULES)
    except ValidationFailed:
        return False
    return True


def with_responses(**responses: Any) -> dict[str, Any]:
    return {"responses": responses, "sex": "male"}


VALID = [
    with_responses(),
    {"responses": checkin_body()["responses"]},
    with_responses(phq9={"answers": [3] * 9, "difficulty": None}),
    with_responses(cssrs={"answers": HIGH_RISK_CSSRS}),
    with_responses(cssrs={"answers": {"q1": False, "q2": False, "q6": False}}),
    with_responses(cssrs={"answers": {"q1": True, "q2": False, "q3": False, "q6": True,
                                      "q6_recent": True}}),
    with_responses(auditc={"answers": [4, 4, 4]}, asrm={"answers": [0, 4, 0, 4, 0]}),
    {**with_responses(gad7={"answers": [0] * 7}), "sex": None, "unknown_top_level": 1},
]

INVALID = [
    {},                                                           # no responses
    {"responses": []},
    with_responses(phq9={"answers": [0] * 10}),
    with_responses(phq9={"answers": [0] * 8 + [4]}),
    with_responses(phq9={"answers": [0] * 8 + [True]}),
    with_responses(phq9={"answers": [0] * 8 + ["1"]}),
    with_responses(phq9={"answers": [0] * 9, "dificulty": 1}),
    with_responses(phq9=None),
    with_responses(gad7={"answers": [0] * 6}),
    with_responses(auditc={"answers": [5, 0, 0]}),
    with_responses(asrm={"answers": [-1, 0, 0, 0, 0]}),
    with_responses(cssrs={"answers": {"q2": False, "q6": False}}),
    with_responses(cssrs={"answers": {"q1": "yes", "q2": False, "q6": False}}),
    with_responses(cssrs={"answers": {"q1": False, "q2": False, "q6": False, "q7": True}}),
    with_responses(moodscale={"answers": [1]}),
    {"responses": {}, "sex": "other"},
]


@pytest.mark.parametrize("body", VALID)
def test_what_the_schema_accepts_triage_accepts(body: dict[str, Any]) -> None:
    assert TRIAGE.is_valid(body)
    assert triage_accepts(body)


@pytest.mark.parametrize("body", INVALID)
def test_what_the_schema_refuses_triage_refuses(body: dict[str, Any]) -> None:
    assert not TRIAGE.is_valid(body)
    assert not triage_accepts(body)


def test_the_check_in_bodies_are_described() -> None:
    body = checkin_body(cssrs=HIGH_RISK_CSSRS)
    assert COMPLETION.is_valid(body)
    assert DRAFT.is_valid(body)
    wrong = copy.deepcopy(body)
    wrong["responses"]["phq9"]["answers"] = [0] * 9 + [1]
    assert not COMPLETION.is_valid(wrong)
    assert not COMPLETION.is_valid({**body, "moods": "fine"})
    # A draft holds answers so far (null for an item not reached) and anything else.
    partial = {"responses": {"phq9": {"answers": [1, None, None]}}, "later": True}
    assert DRAFT.is_valid(partial)
    assert not DRAFT.is_valid({"callback_phone": 5})


def test_the_documented_bodies_are_the_models_that_read_them() -> None:
    bodies = {(op.method, op.path): op.body for op in api_operations()}
    assert bodies["POST", "/api/v1/triage"] is TriageBody
    assert bodies["POST", "/api/v1/visits/{visit_id}/checkin"] is CheckInCompletion
    assert bodies["PUT", "/api/v1/visits/{visit_id}/checkin/draft"] is CheckInDraft


def test_phq9_answers_are_nine_integers_from_0_to_3() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    answers = schemas["Phq9Response"]["properties"]["answers"]
    assert (answers["type"], answers["minItems"], answers["maxItems"]) == ("array", 9, 9)
    assert answers["items"] == {"type": "integer", "minimum": 0, "maximum": 3}
    assert schemas["TriageBody"]["required"] == ["responses"]


def test_every_operation_that_reads_a_body_documents_400_and_422() -> None:
    for op in api_operations():
        responses = DOCUMENT["paths"][op.path][op.method.lower()]["responses"]
        assert "422" in responses, (op.method, op.path)
        assert ("400" in responses) == (op.body is not None), (op.method, op.path)
        if op.body is not None:
            assert "invalid_json" in responses["400"]["description"]
