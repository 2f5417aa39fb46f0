"""Triage: reasons at and around every cut-off, levels, validation and the rules data."""

from __future__ import annotations

import ast
import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.triage_rules import DEFAULT_RULES_PATH, load_default_rules, load_rules
from server import measures
from server.errors import ValidationFailed
from server.instruments import asrm, auditc
from server.triage import (
    LEVELS,
    Level,
    Reason,
    TriageResult,
    TriageRules,
    evaluate,
    level_at_least,
    level_rank,
)

ROOT = Path(__file__).resolve().parents[1]
RULES = load_default_rules()
quick = settings(database=None, max_examples=300, deadline=None)

# CLINICAL.md, "Triage": the table, copied here by hand so a change to the data file
# cannot pass unnoticed.
CLINICAL_LEVELS = {
    "cssrs_high": "emergency",
    "cssrs_moderate": "urgent",
    "phq9_item9_unassessed": "urgent",
    "cssrs_low": "review",
    "phq9_item9_positive": "review",
    "phq9_severe": "step_up",
    "asrm_positive": "step_up",
    "gad7_severe": "review",
    "auditc_positive": "review",
    "phq9_worsened": "review",
}

NO_CSSRS = {"q1": False, "q2": False, "q6": False}
CSSRS = {
    "none": NO_CSSRS,
    "low": {"q1": True, "q2": False, "q6": False},
    "moderate": {"q1": True, "q2": True, "q3": True, "q4": False, "q5": False, "q6": False},
    "high": {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False},
}


def with_total(total: int, count: int, high: int, *, last: int = 0) -> list[int]:
    """Answers summing to ``total`` with the last item fixed (PHQ-9 item 9)."""
    answers = []
    remaining = total - last
    for _ in range(count - 1):
        answers.append(min(high, remaining))
        remaining -= answers[-1]
    assert remaining == 0
    return [*answers, last]


def phq9(total: int, item9: int = 0) -> dict[str, object]:
    return {"answers": with_total(total, 9, 3, last=item9)}


def run(
    responses: dict[str, object], sex: str | None = None, previous: int | None = None
) -> dict[str, Any]:
    body = {"responses": responses, "sex": sex}
    return evaluate(body, RULES, previous_phq9_total=previous).to_json()


def rejected(body: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        evaluate(body, RULES)
    assert caught.value.status == 422
    return caught.value


# --- the rules data ------------------------------------------------------------------


def test_default_rules_are_clinical_md() -> None:
    assert {reason.value: level.value for reason, level in RULES.reason_levels.items()} == (
        CLINICAL_LEVELS
    )
    assert dataclasses.asdict(RULES.thresholds) == {
        "phq9_item9": 1,
        "phq9_severe_total": 20,
        "phq9_worsened_rise": 5,
        "gad7_severe_total": 15,
        "asrm_positive_total": 6,
        "auditc_positive_male": 4,
        "auditc_positive_female": 3,
        "auditc_positive_sex_unknown": 3,
    }


def test_rules_agree_with_published_instrument_cutoffs() -> None:
    assert RULES.thresholds.auditc_cutoffs() == auditc.PUBLISHED_CUTOFFS
    assert RULES.thresholds.asrm_positive_total == asrm.PUBLISHED_POSITIVE_AT
    assert RULES.thresholds.phq9_worsened_rise == measures.WORSENED_RISE


def test_every_rules_entry_cites_a_source() -> None:
    lines = DEFAULT_RULES_PATH.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"no comment above {line!r}"


def test_levels() -> None:
    assert [level.value for level in LEVELS] == [
        "none",
        "review",
        "step_up",
        "urgent",
        "emergency",
    ]
    assert RULES.levels == LEVELS


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("minimum", LEVELS)
def test_level_at_least(level: Level, minimum: Level) -> None:
    expected = LEVELS.index(level) >= LEVELS.index(minimum)
    assert level_at_least(level, minimum) is expected
    assert level_at_least(level.value, minimum.value) is expected


@pytest.mark.parametrize(("level", "minimum"), [("high", "none"), ("none", "Review"), ("", "none")])
def test_level_at_least_unknown_level(level: str, minimum: str) -> None:
    with pytest.raises(ValueError, match="unknown level"):
        level_at_least(level, minimum)


def rules_data() -> dict[str, Any]:
    with DEFAULT_RULES_PATH.open("rb") as file:
        return tomllib.load(file)


def test_from_mapping_round_trip() -> None:
    assert TriageRules.from_mapping(rules_data()) == RULES
    data = rules_data()
    del data["levels"]
    assert TriageRules.from_mapping(data) == RULES


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["reasons"].update(cssrs_high="critical"), "unknown level 'critical'"),
        (lambda d: d["reasons"].update(cssrs_high=3), "unknown level 3"),
        (lambda d: d["reasons"].update(cssrs_low="none"), "cannot be at level 'none'"),
        (lambda d: d["reasons"].pop("phq9_worsened"), "missing reason 'phq9_worsened'"),
        (lambda d: d["reasons"].update(phq9_mild="review"), "unknown reason 'phq9_mild'"),
        (lambda d: d.pop("reasons"), r"\[reasons\] table"),
        (lambda d: d.pop("thresholds"), r"\[thresholds\] table"),
        (lambda d: d["thresholds"].pop("gad7_severe_total"), "missing threshold"),
        (lambda d: d["thresholds"].update(gad7_severe=15), "unknown threshold 'gad7_severe'"),
        (lambda d: d["thresholds"].update(gad7_severe_total=22), "from 1 to 21"),
        (lambda d: d["thresholds"].update(gad7_severe_total=0), "from 1 to 21"),
        (lambda d: d["thresholds"].update(phq9_item9=True), "phq9_item9"),
        (lambda d: d["thresholds"].update(phq9_item9=1.0), "phq9_item9"),
        (lambda d: d["thresholds"].update(phq9_item9=4), "from 1 to 3"),
        (lambda d: d.update(levels=["none", "review", "urgent", "step_up", "emergency"]), "levels"),
        (lambda d: d.update(levels="none"), "levels"),
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
    ],
)
def test_from_mapping_rejects_bad_data(change: Any, message: str) -> None:
    data = rules_data()
    change(data)
    with pytest.raises(ValueError, match=message):
        TriageRules.from_mapping(data)


def test_load_rules_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT_RULES_PATH.read_text().replace('"emergency"\n', '"panic"\n'))
    with pytest.raises(ValueError, match=r"rules\.toml: reason 'cssrs_high'"):
        load_rules(path)


def test_rules_are_read_only() -> None:
    with pytest.raises(TypeError):
        RULES.reason_levels[Reason.CSSRS_HIGH] = Level.REVIEW  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULES.thresholds = RULES.thresholds  # type: ignore[misc]


def test_levels_come_from_the_data() -> None:
    data = rules_data()
    data["reasons"]["gad7_severe"] = "urgent"
    data["thresholds"]["gad7_severe_total"] = 10
    rules = TriageRules.from_mapping(data)
    result = evaluate({"responses": {"gad7": {"answers": [3, 3, 3, 1, 0, 0, 0]}}}, rules)
    assert result.to_json()["level"] == "urgent"
    assert evaluate({"responses": {"gad7": {"answers": [3, 3, 3, 1, 0, 0, 0]}}}, RULES).level == (
        "none"
    )


def test_server_does_not_import_escalation() -> None:
    sources = [ROOT / "server" / "triage.py", ROOT / "server" / "measures.py"]
    sources += sorted((ROOT / "server" / "instruments").glob("*.py"))
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "escalation" for name in names), source


# --- result shape --------------------------------------------------------------------


def test_empty_responses() -> None:
    assert run({}) == {
        "scores": {},
        "level": "none",
        "reasons": [],
        "requires": [],
        "reason_levels": {},
    }


def test_full_result_shape() -> None:
    result = run(
        {
            "phq9": {"answers": [3, 3, 3, 3, 3, 3, 2, 0, 1], "difficulty": 2},
            "gad7": {"answers": [3, 3, 3, 3, 3, 0, 0]},
            "cssrs": {"answers": CSSRS["low"]},
            "auditc": {"answers": [1, 1, 1]},
            "asrm": {"answers": [2, 2, 2, 0, 0]},
        },
        sex="female",
        previous=10,
    )
    assert json.loads(json.dumps(result)) == result
    assert result == {
        "scores": {
            "phq9": {
                "total": 21,
                "severity": "severe",
                "item9": 1,
                "phq2": 6,
                "phq2_positive": True,
                "difficulty": 2,
            },
            "gad7": {"total": 15, "severity": "severe", "gad2": 6, "gad2_positive": True},
            "cssrs": {"risk": "low"},
            "auditc": {"total": 3, "positive": True},
            "asrm": {"total": 6, "positive": True},
        },
        "level": "step_up",
        "reasons": [
            "phq9_severe",
            "asrm_positive",
            "cssrs_low",
            "phq9_item9_positive",
            "gad7_severe",
            "auditc_positive",
            "phq9_worsened",
        ],
        "requires": [],
        "reason_levels": {
            "phq9_severe": "step_up",
            "asrm_positive": "step_up",
            "cssrs_low": "review",
            "phq9_item9_positive": "review",
            "gad7_severe": "review",
            "auditc_positive": "review",
            "phq9_worsened": "review",
        },
    }
    assert list(result["scores"]) == ["phq9", "gad7", "cssrs", "auditc", "asrm"]


def test_result_is_typed() -> None:
    result = evaluate({"responses": {"phq9": phq9(12, item9=2)}}, RULES)
    assert result.level is Level.URGENT
    assert result.reasons == (Reason.PHQ9_ITEM9_UNASSESSED,)
    assert result.scores.phq9 is not None
    assert result.scores.phq9.total == 12
    assert result.scores.gad7 is None


# --- each reason at and around its cut-off -------------------------------------------


@pytest.mark.parametrize(("total", "fires"), [(0, False), (19, False), (20, True), (24, True)])
def test_phq9_severe(total: int, fires: bool) -> None:
    result = run({"phq9": phq9(total), "cssrs": {"answers": NO_CSSRS}})
    assert ("phq9_severe" in result["reasons"]) is fires
    assert result["level"] == ("step_up" if fires else "none")


@pytest.mark.parametrize(("total", "fires"), [(0, False), (14, False), (15, True), (21, True)])
def test_gad7_severe(total: int, fires: bool) -> None:
    answers = with_total(total, 7, 3, last=min(total, 3))
    result = run({"gad7": {"answers": answers}})
    assert result["reasons"] == (["gad7_severe"] if fires else [])
    assert result["level"] == ("review" if fires else "none")


@pytest.mark.parametrize(("total", "fires"), [(0, False), (5, False), (6, True), (20, True)])
def test_asrm_positive(total: int, fires: bool) -> None:
    answers = with_total(total, 5, 4, last=min(total, 4))
    result = run({"asrm": {"answers": answers}})
    assert result["reasons"] == (["asrm_positive"] if fires else [])
    assert result["level"] == ("step_up" if fires else "none")
    assert result["scores"]["asrm"] == {"total": total, "positive": fires}


@pytest.mark.parametrize(
    ("sex", "total", "fires"),
    [
        ("male", 3, False),
        ("male", 4, True),
        ("female", 2, False),
        ("female", 3, True),
        (None, 2, False),
        (None, 3, True),
        ("absent", 2, False),
        ("absent", 3, True),
    ],
)
def test_auditc_positive_by_sex(sex: str | None, total: int, fires: bool) -> None:
    body: dict[str, object] = {"responses": {"auditc": {"answers": with_total(total, 3, 4)}}}
    if sex != "absent":
        body["sex"] = sex
    result: dict[str, Any] = evaluate(body, RULES).to_json()
    assert result["reasons"] == (["auditc_positive"] if fires else [])
    assert result["level"] == ("review" if fires else "none")
    assert result["scores"]["auditc"] == {"total": total, "positive": fires}


@pytest.mark.parametrize(
    ("risk", "reasons", "level"),
    [
        ("none", [], "none"),
        ("low", ["cssrs_low"], "review"),
        ("moderate", ["cssrs_moderate"], "urgent"),
        ("high", ["cssrs_high"], "emergency"),
    ],
)
def test_cssrs_reasons(risk: str, reasons: list[str], level: str) -> None:
    result = run({"cssrs": {"answers": CSSRS[risk]}})
    assert result["scores"]["cssrs"] == {"risk": risk}
    assert (result["reasons"], result["level"]) == (reasons, level)


def test_cssrs_high_from_recent_behaviour() -> None:
    answers = {"q1": False, "q2": False, "q6": True, "q6_recent": True}
    assert run({"cssrs": {"answers": answers}})["level"] == "emergency"
    answers["q6_recent"] = False
    assert run({"cssrs": {"answers": answers}})["reasons"] == ["cssrs_moderate"]


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_item9_without_cssrs_is_urgent_and_requires_it(item9: int) -> None:
    result = run({"phq9": phq9(item9, item9=item9)})
    assert result["reasons"] == ["phq9_item9_unassessed"]
    assert result["level"] == "urgent"
    assert result["requires"] == ["cssrs"]


@pytest.mark.parametrize("item9", [1, 3])
@pytest.mark.parametrize(
    ("risk", "level"),
    [("none", "review"), ("low", "review"), ("moderate", "urgent"), ("high", "emergency")],
)
def test_item9_with_cssrs(item9: int, risk: str, level: str) -> None:
    result = run({"phq9": phq9(item9, item9=item9), "cssrs": {"answers": CSSRS[risk]}})
    assert "phq9_item9_positive" in result["reasons"]
    assert "phq9_item9_unassessed" not in result["reasons"]
    assert result["requires"] == []
    assert result["level"] == level


def test_item9_zero_triggers_nothing_and_requires_nothing() -> None:
    result = run({"phq9": phq9(18, item9=0)})
    assert (result["reasons"], result["requires"], result["level"]) == ([], [], "none")


def test_cssrs_without_phq9_needs_nothing_more() -> None:
    assert run({"cssrs": {"answers": NO_CSSRS}})["requires"] == []


@pytest.mark.parametrize(
    ("previous", "total", "fires"),
    [
        (None, 24, False),
        (0, 4, False),
        (0, 5, True),
        (10, 14, False),
        (10, 15, True),
        (10, 24, True),
        (15, 10, False),
        (12, 12, False),
    ],
)
def test_phq9_worsened(previous: int | None, total: int, fires: bool) -> None:
    result = run({"phq9": phq9(total), "cssrs": {"answers": NO_CSSRS}}, previous=previous)
    assert ("phq9_worsened" in result["reasons"]) is fires


def test_phq9_worsened_needs_a_phq9_now() -> None:
    assert run({"gad7": {"answers": [0] * 7}}, previous=0)["reasons"] == []


@pytest.mark.parametrize("previous", [-1, 28, True, 2.0])
def test_previous_total_is_checked(previous: Any) -> None:
    with pytest.raises(ValueError, match="previous_phq9_total"):
        evaluate({"responses": {}}, RULES, previous_phq9_total=previous)


def test_phq2_and_gad2_trigger_nothing() -> None:
    result = run(
        {"phq9": {"answers": [3, 3, 0, 0, 0, 0, 0, 0, 0]}, "gad7": {"answers": [3, 3] + [0] * 5}}
    )
    assert result["scores"]["phq9"]["phq2_positive"] is True
    assert result["scores"]["gad7"]["gad2_positive"] is True
    assert result["reasons"] == []


def test_level_is_the_highest_and_every_reason_is_reported() -> None:
    result = run(
        {
            "phq9": phq9(24, item9=3),
            "gad7": {"answers": [3] * 7},
            "cssrs": {"answers": CSSRS["high"]},
            "auditc": {"answers": [4, 4, 4]},
            "asrm": {"answers": [4] * 5},
        },
        sex="male",
        previous=0,
    )
    assert result["level"] == "emergency"
    assert result["reasons"] == [
        "cssrs_high",
        "phq9_severe",
        "asrm_positive",
        "phq9_item9_positive",
        "gad7_severe",
        "auditc_positive",
        "phq9_worsened",
    ]


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "responses", 1, True, [{"responses": {}}]])
def test_body_must_be_an_object(body: object) -> None:
    assert "JSON object" in rejected(body).message


@pytest.mark.parametrize("body", [{}, {"sex": "female"}])
def test_responses_required(body: object) -> None:
    error = rejected(body)
    assert (error.field, error.message) == ("responses", "responses is required")


@pytest.mark.parametrize("responses", [None, [], "phq9", 0])
def test_responses_must_be_an_object(responses: object) -> None:
    error = rejected({"responses": responses})
    assert (error.field, error.message) == ("responses", "responses must be an object")


@pytest.mark.parametrize("key", ["phq2", "PHQ9", "audit", ""])
def test_unknown_instrument(key: str) -> None:
    error = rejected({"responses": {"phq9": phq9(0), key: {"answers": []}}})
    assert error.field == f"responses.{key}"
    assert "not a known instrument" in error.message


@pytest.mark.parametrize("instrument", ["phq9", "gad7", "cssrs", "auditc", "asrm"])
def test_instrument_given_as_null_is_rejected(instrument: str) -> None:
    assert rejected({"responses": {instrument: None}}).field == f"responses.{instrument}"


@pytest.mark.parametrize("sex", ["Female", "f", "other", "", 1, True, ["female"], {}])
def test_sex_must_be_female_male_or_null(sex: object) -> None:
    error = rejected({"responses": {}, "sex": sex})
    assert (error.field, error.message) == ("sex", 'sex must be "female", "male" or null')


def test_other_checkin_fields_are_left_alone() -> None:
    body: dict[str, object] = {
        "responses": {},
        "sex": None,
        "callback_phone": "+1 555 0100",
        "location": {},
    }
    assert evaluate(body, RULES).level == "none"


@pytest.mark.parametrize(
    ("responses", "field"),
    [
        ({"phq9": {}}, "responses.phq9.answers"),
        ({"phq9": {"answers": [0] * 8}}, "responses.phq9.answers"),
        ({"phq9": {"answers": [0, 0, 0, 4, 0, 0, 0, 0, 0]}}, "responses.phq9.answers.3"),
        ({"phq9": {"answers": [0, 0, 0, True, 0, 0, 0, 0, 0]}}, "responses.phq9.answers.3"),
        ({"phq9": {"answers": [0, 0, 0, 2.0, 0, 0, 0, 0, 0]}}, "responses.phq9.answers.3"),
        ({"gad7": {"answers": [0] * 6 + [-1]}}, "responses.gad7.answers.6"),
        ({"auditc": {"answers": [5, 0, 0]}}, "responses.auditc.answers.0"),
        ({"asrm": {"answers": [0] * 6}}, "responses.asrm.answers"),
        ({"cssrs": {"answers": {"q1": False, "q2": False}}}, "responses.cssrs.answers.q6"),
        (
            {"cssrs": {"answers": {**NO_CSSRS, "q3": True}}},
            "responses.cssrs.answers.q3",
        ),
        (
            {"cssrs": {"answers": {**NO_CSSRS, "q6_recent": False}}},
            "responses.cssrs.answers.q6_recent",
        ),
    ],
)
def test_errors_name_the_field(responses: dict[str, object], field: str) -> None:
    error = rejected({"responses": responses})
    assert error.field == field
    assert error.message.startswith(field)
    assert error.to_json()["error"]["code"] == "invalid"


def test_an_invalid_instrument_invalidates_the_whole_check_in() -> None:
    # A valid high-risk C-SSRS next to a broken PHQ-9 is still a 422: the client must
    # resend, and the form shows the field to fix rather than a partial triage.
    rejected({"responses": {"cssrs": {"answers": CSSRS["high"]}, "phq9": {"answers": []}}})


# --- properties ----------------------------------------------------------------------

INTEGER = {"phq9": (9, 3), "gad7": (7, 3), "auditc": (3, 4), "asrm": (5, 4)}


@st.composite
def cssrs_answers(draw: st.DrawFn) -> dict[str, bool | None]:
    answers: dict[str, bool | None] = {key: draw(st.booleans()) for key in ("q1", "q2", "q6")}
    for key in ("q3", "q4", "q5"):
        answers[key] = draw(st.booleans()) if answers["q2"] else None
    answers["q6_recent"] = draw(st.booleans()) if answers["q6"] else None
    return answers


@st.composite
def bodies(draw: st.DrawFn, *, with_cssrs: bool | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for instrument, (count, high) in INTEGER.items():
        if draw(st.booleans()):
            answers = draw(st.lists(st.integers(0, high), min_size=count, max_size=count))
            responses[instrument] = {"answers": answers}
    include_cssrs = draw(st.booleans()) if with_cssrs is None else with_cssrs
    if include_cssrs:
        responses["cssrs"] = {"answers": draw(cssrs_answers())}
    return {"responses": responses, "sex": draw(st.sampled_from(["female", "male", None]))}


previous_totals = st.none() | st.integers(0, 27)


@quick
@given(bodies(), previous_totals)
def test_level_is_the_max_of_reason_levels(body: dict[str, Any], previous: int | None) -> None:
    result: dict[str, Any] = evaluate(body, RULES, previous_phq9_total=previous).to_json()
    levels = [result["reason_levels"][reason] for reason in result["reasons"]]
    assert set(result["reason_levels"]) == set(result["reasons"])
    assert levels == [CLINICAL_LEVELS[reason] for reason in result["reasons"]]
    assert result["level"] == max(levels, key=level_rank, default="none")
    assert [level_rank(level) for level in levels] == sorted(
        (level_rank(level) for level in levels), reverse=True
    )
    assert len(result["reasons"]) == len(set(result["reasons"]))
    assert set(result["scores"]) == set(body["responses"])


@quick
@given(bodies(), previous_totals)
def test_requires_cssrs_exactly_when_item9_is_unassessed(
    body: dict[str, Any], previous: int | None
) -> None:
    result: dict[str, Any] = evaluate(body, RULES, previous_phq9_total=previous).to_json()
    phq9_score = result["scores"].get("phq9")
    expected = (
        phq9_score is not None and phq9_score["item9"] >= 1 and "cssrs" not in body["responses"]
    )
    assert result["requires"] == (["cssrs"] if expected else [])
    assert ("phq9_item9_unassessed" in result["reasons"]) is expected


def positive_flips(answers: dict[str, bool | None]) -> list[dict[str, bool | None]]:
    """Every valid answer set with one more "yes" than ``answers``."""
    flips = []
    for key in ("q1", "q2", "q3", "q4", "q5", "q6", "q6_recent"):
        if answers.get(key) is False:
            flipped = {**answers, key: True}
            if key == "q2":
                flipped.update(q3=False, q4=False, q5=False)
            if key == "q6":
                flipped.update(q6_recent=False)
            flips.append(flipped)
    return flips


@quick
@given(bodies(with_cssrs=True), previous_totals)
def test_a_positive_cssrs_answer_never_lowers_the_level(
    body: dict[str, Any], previous: int | None
) -> None:
    before = evaluate(body, RULES, previous_phq9_total=previous).level
    for flipped in positive_flips(body["responses"]["cssrs"]["answers"]):
        responses = {**body["responses"], "cssrs": {"answers": flipped}}
        after = evaluate({**body, "responses": responses}, RULES, previous_phq9_total=previous)
        assert level_at_least(after.level, before)


# Keys that reach deep into the validators, so the fuzzing is not all rejected at the top.
KEYS = ["responses", "sex", *INTEGER, "cssrs", "answers", "q1", "q2", "q6", "difficulty"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 30) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=10)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    ),
    max_leaves=30,
)


def outcome(body: object) -> TriageResult | ValidationFailed:
    try:
        return evaluate(body, RULES)
    except ValidationFailed as error:
        return error


@quick
@given(json_values)
def test_any_json_is_triaged_or_rejected_with_a_422(body: object) -> None:
    result = outcome(body)
    if isinstance(result, ValidationFailed):
        assert result.status == 422
        assert result.message
    else:
        assert result.level in LEVELS
