"""Instrument definitions, answer validation and scoring (pure, no app)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ValidationFailed
from server.instruments import INSTRUMENTS, asrm, auditc, cssrs, gad7, instrument_definitions, phq9

# No example database: the suite must not write into the checkout.
quick = settings(database=None, max_examples=200, deadline=None)

# id -> (item count, item max)
INTEGER_INSTRUMENTS = {"phq9": (9, 3), "gad7": (7, 3), "auditc": (3, 4), "asrm": (5, 4)}


def with_total(total: int, count: int, high: int) -> list[int]:
    """Answers summing to ``total``, filled from the first item."""
    answers = []
    for _ in range(count):
        answers.append(min(high, total))
        total -= answers[-1]
    assert total == 0
    return answers


def score_of(instrument: str, raw: object) -> Any:
    if instrument == "phq9":
        return phq9.score(raw)
    if instrument == "gad7":
        return gad7.score(raw)
    if instrument == "auditc":
        return auditc.score(raw, sex=None)
    if instrument == "asrm":
        return asrm.score(raw)
    return cssrs.score(raw)


def rejected(instrument: str, raw: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        score_of(instrument, raw)
    assert caught.value.status == 422
    assert caught.value.field is not None
    assert caught.value.field in caught.value.message
    return caught.value


# --- definitions ---------------------------------------------------------------------


def test_registry_order() -> None:
    assert list(INSTRUMENTS) == ["phq9", "gad7", "cssrs", "auditc", "asrm", "fibser", "bam"]
    assert [d["id"] for d in instrument_definitions()] == list(INSTRUMENTS)


def test_definitions_are_json_with_every_field() -> None:
    definitions = json.loads(json.dumps(instrument_definitions()))
    for definition in definitions:
        assert set(definition) == {
            "id",
            "name",
            "recall",
            "intro",
            "answer_type",
            "total_range",
            "loinc",
            "items",
        }
        for item in definition["items"]:
            assert set(item) == {
                "id",
                "answer_path",
                "topic",
                "text",
                "options",
                "required",
                "asked_if",
                "asked_unless",
                "loinc",
            }
            assert item["text"].strip()
            assert item["options"]
            assert all(option["label"].strip() for option in item["options"])


@pytest.mark.parametrize(
    ("instrument", "recall"),
    [
        ("phq9", "last 2 weeks"),
        ("gad7", "last 2 weeks"),
        ("cssrs", "past month; question 6 lifetime and past 3 months"),
        ("auditc", "past year"),
        ("asrm", "past week"),
    ],
)
def test_recall_periods(instrument: str, recall: str) -> None:
    assert INSTRUMENTS[instrument].recall == recall


@pytest.mark.parametrize(("instrument", "shape"), INTEGER_INSTRUMENTS.items())
def test_integer_items_have_every_value_from_zero(instrument: str, shape: tuple[int, int]) -> None:
    count, high = shape
    items = [item for item in INSTRUMENTS[instrument].items if item.required]
    assert len(items) == count
    for index, item in enumerate(items):
        assert item.answer_path == f"answers.{index}"
        assert [option.value for option in item.options] == list(range(high + 1))


def test_phq9_and_gad7_labels() -> None:
    labels = ["Not at all", "Several days", "More than half the days", "Nearly every day"]
    for instrument in ("phq9", "gad7"):
        for item in INSTRUMENTS[instrument].items[:7]:
            assert [option.label for option in item.options] == labels


def test_phq9_difficulty_is_optional_and_loinc_codes() -> None:
    definition = INSTRUMENTS["phq9"].to_json()
    items = definition["items"]
    assert isinstance(items, list)
    assert len(items) == 10
    difficulty = items[9]
    assert difficulty["id"] == "difficulty"
    assert difficulty["answer_path"] == "difficulty"
    assert difficulty["required"] is False
    assert [option["value"] for option in difficulty["options"]] == [0, 1, 2, 3]
    assert definition["loinc"] == {"panel": "44249-1", "total": "44261-6"}
    assert items[8]["loinc"] == "44260-8"
    assert [item["loinc"] for item in items[:8]] == [None] * 8


def test_gad7_loinc_codes() -> None:
    assert INSTRUMENTS["gad7"].to_json()["loinc"] == {"panel": "69737-5", "total": "70274-6"}


def test_cssrs_definition_skip_logic() -> None:
    items = {item.id: item for item in INSTRUMENTS["cssrs"].items}
    assert list(items) == ["q1", "q2", "q3", "q4", "q5", "q6", "q6_recent"]
    assert {key: item.to_json()["asked_if"] for key, item in items.items()} == {
        "q1": None,
        "q2": None,
        "q3": {"q2": True},
        "q4": {"q2": True},
        "q5": {"q2": True},
        "q6": None,
        "q6_recent": {"q6": True},
    }
    for item in items.values():
        assert [(option.value, option.label) for option in item.options] == [
            (True, "Yes"),
            (False, "No"),
        ]
    assert "988" in INSTRUMENTS["cssrs"].intro


# --- PHQ-9 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "severity"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_severity_bands(total: int, severity: str) -> None:
    score = phq9.score({"answers": with_total(total, 9, 3)})
    assert score.total == total
    assert score.severity == severity


@pytest.mark.parametrize(
    ("item1", "item2", "phq2", "positive"),
    [(0, 0, 0, False), (1, 1, 2, False), (2, 0, 2, False), (2, 1, 3, True), (0, 3, 3, True)],
)
def test_phq2(item1: int, item2: int, phq2: int, positive: bool) -> None:
    score = phq9.score({"answers": [item1, item2, 3, 3, 3, 3, 3, 3, 0]})
    assert (score.phq2, score.phq2_positive) == (phq2, positive)


@pytest.mark.parametrize("item9", [0, 1, 2, 3])
def test_phq9_item9_reported(item9: int) -> None:
    assert phq9.score({"answers": [0] * 8 + [item9]}).item9 == item9


@pytest.mark.parametrize("difficulty", [None, 0, 1, 2, 3])
def test_phq9_difficulty_stored_never_added(difficulty: int | None) -> None:
    score = phq9.score({"answers": [1] * 9, "difficulty": difficulty})
    assert score.total == 9
    assert score.difficulty == difficulty
    assert score.to_json() == {
        "total": 9,
        "severity": "mild",
        "item9": 1,
        "phq2": 2,
        "phq2_positive": False,
        "difficulty": difficulty,
    }


def test_phq9_difficulty_absent_is_null() -> None:
    assert phq9.score({"answers": [0] * 9}).difficulty is None


@pytest.mark.parametrize("difficulty", [-1, 4, True, False, 1.0, "1", [1]])
def test_phq9_difficulty_rejected(difficulty: object) -> None:
    error = rejected("phq9", {"answers": [0] * 9, "difficulty": difficulty})
    assert error.field == "responses.phq9.difficulty"
    assert "integer from 0 to 3" in error.message


# --- GAD-7 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "severity"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_severity_bands(total: int, severity: str) -> None:
    score = gad7.score({"answers": with_total(total, 7, 3)})
    assert (score.total, score.severity) == (total, severity)


@pytest.mark.parametrize(
    ("item1", "item2", "positive"), [(1, 1, False), (2, 1, True), (3, 3, True)]
)
def test_gad2(item1: int, item2: int, positive: bool) -> None:
    score = gad7.score({"answers": [item1, item2, 0, 0, 0, 0, 0]})
    assert score.to_json() == {
        "total": item1 + item2,
        "severity": gad7.severity(item1 + item2),
        "gad2": item1 + item2,
        "gad2_positive": positive,
    }


@pytest.mark.parametrize("module", [phq9, gad7])
@pytest.mark.parametrize("total", [-1, 28, 100])
def test_severity_of_impossible_total(module: Any, total: int) -> None:
    if module is gad7 and total == 28:
        total = 22
    with pytest.raises(ValueError, match="total must be"):
        module.severity(total)


# --- AUDIT-C and ASRM ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "total", "positive"),
    [
        ("male", 0, False),
        ("male", 3, False),
        ("male", 4, True),
        ("male", 12, True),
        ("female", 2, False),
        ("female", 3, True),
        ("female", 4, True),
        (None, 2, False),
        (None, 3, True),
        (None, 4, True),
    ],
)
def test_auditc_positive_by_sex(sex: auditc.Sex | None, total: int, positive: bool) -> None:
    score = auditc.score({"answers": with_total(total, 3, 4)}, sex=sex)
    assert score.to_json() == {"total": total, "positive": positive}


def test_auditc_cutoffs_are_parameters() -> None:
    strict = auditc.Cutoffs(male=5, female=4, unknown=4)
    assert not auditc.score({"answers": [4, 0, 0]}, sex="male", cutoffs=strict).positive
    assert auditc.score({"answers": [4, 1, 0]}, sex="male", cutoffs=strict).positive


@pytest.mark.parametrize(("total", "positive"), [(0, False), (5, False), (6, True), (20, True)])
def test_asrm_positive(total: int, positive: bool) -> None:
    score = asrm.score({"answers": with_total(total, 5, 4)})
    assert score.to_json() == {"total": total, "positive": positive}


# --- validation of integer instruments -----------------------------------------------


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
@pytest.mark.parametrize("raw", [None, [], "answers", 3, True])
def test_response_must_be_an_object(instrument: str, raw: object) -> None:
    error = rejected(instrument, raw)
    assert error.field == f"responses.{instrument}"
    assert "must be an object" in error.message


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
def test_unknown_key_in_response(instrument: str) -> None:
    count, _ = INTEGER_INSTRUMENTS[instrument]
    error = rejected(instrument, {"answers": [0] * count, "dificulty": 1})
    assert error.field == f"responses.{instrument}.dificulty"


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
@pytest.mark.parametrize("raw", [{}, {"answers": None}])
def test_answers_required(instrument: str, raw: object) -> None:
    error = rejected(instrument, raw)
    assert error.field == f"responses.{instrument}.answers"
    assert "required" in error.message


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
@pytest.mark.parametrize("answers", ["0,1,2", {"0": 1}, 5, True])
def test_answers_must_be_a_list(instrument: str, answers: object) -> None:
    error = rejected(instrument, {"answers": answers})
    assert error.field == f"responses.{instrument}.answers"


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
@pytest.mark.parametrize("delta", [-1, +1])
def test_wrong_length(instrument: str, delta: int) -> None:
    count, _ = INTEGER_INSTRUMENTS[instrument]
    error = rejected(instrument, {"answers": [0] * (count + delta)})
    assert error.field == f"responses.{instrument}.answers"
    assert f"exactly {count} answers" in error.message


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
def test_empty_answers(instrument: str) -> None:
    assert rejected(instrument, {"answers": []}).field == f"responses.{instrument}.answers"


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
@pytest.mark.parametrize("bad", ["high", -1, None, True, False, 2.0, 1.5, "2", [1], {"v": 1}])
def test_bad_value_names_its_index(instrument: str, bad: object) -> None:
    count, high = INTEGER_INSTRUMENTS[instrument]
    # Not 0 before it: AUDIT-C's "Never" to question 1 leaves questions 2 and 3 unasked,
    # and then null is their answer (test_auditc_never_skips_questions_two_and_three).
    answers: list[object] = [1] * count
    answers[count - 1] = high + 1 if bad == "high" else bad
    error = rejected(instrument, {"answers": answers})
    assert error.field == f"responses.{instrument}.answers.{count - 1}"
    assert error.message == f"{error.field} must be an integer from 0 to {high}"


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
def test_every_value_in_range_accepted(instrument: str) -> None:
    count, high = INTEGER_INSTRUMENTS[instrument]
    for value in range(high + 1):
        assert score_of(instrument, {"answers": [value] * count}).total == value * count


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS)
def test_first_bad_index_reported(instrument: str) -> None:
    count, high = INTEGER_INSTRUMENTS[instrument]
    answers: list[object] = [0] * count
    answers[1] = high + 1
    answers[2] = "x"
    assert rejected(instrument, {"answers": answers}).field == f"responses.{instrument}.answers.1"


# --- C-SSRS --------------------------------------------------------------------------


def cssrs_answers(**yes: bool | None) -> dict[str, bool | None]:
    """A valid answer set: q1, q2, q6 default to no; follow-ups only when asked."""
    answers: dict[str, bool | None] = {"q1": False, "q2": False, "q6": False}
    answers.update(yes)
    return answers


@pytest.mark.parametrize(
    ("answers", "risk"),
    [
        (cssrs_answers(), "none"),
        (cssrs_answers(q3=None, q4=None, q5=None, q6_recent=None), "none"),
        (cssrs_answers(q2=True, q3=False, q4=False, q5=False), "low"),
        (cssrs_answers(q1=True), "low"),
        (cssrs_answers(q1=True, q2=True, q3=False, q4=False, q5=False), "low"),
        (cssrs_answers(q2=True, q3=True, q4=False, q5=False), "moderate"),
        (cssrs_answers(q6=True, q6_recent=False), "moderate"),
        (cssrs_answers(q1=True, q6=True, q6_recent=False), "moderate"),
        (cssrs_answers(q2=True, q3=False, q4=True, q5=False), "high"),
        (cssrs_answers(q2=True, q3=False, q4=False, q5=True), "high"),
        (cssrs_answers(q2=True, q3=True, q4=True, q5=True), "high"),
        (cssrs_answers(q6=True, q6_recent=True), "high"),
        (cssrs_answers(q2=True, q3=True, q4=False, q5=False, q6=True, q6_recent=True), "high"),
        (cssrs_answers(q2=True, q3=True, q4=False, q5=False, q6=True, q6_recent=False), "moderate"),
    ],
)
def test_cssrs_risk_table(answers: dict[str, bool | None], risk: str) -> None:
    score = cssrs.score({"answers": answers})
    assert score.risk == risk
    assert score.to_json() == {"risk": risk}


@pytest.mark.parametrize("follow_up", ["q3", "q4", "q5"])
@pytest.mark.parametrize("value", [None, False])
def test_cssrs_unasked_follow_up_may_be_null_or_no(follow_up: str, value: bool | None) -> None:
    answers = cssrs_answers(q1=True, **{follow_up: value})
    parsed = cssrs.parse({"answers": answers})
    assert getattr(parsed, follow_up) is None
    assert cssrs.risk(parsed) == "low"


@pytest.mark.parametrize("follow_up", ["q3", "q4", "q5"])
def test_cssrs_yes_to_unasked_follow_up_is_rejected(follow_up: str) -> None:
    error = rejected("cssrs", {"answers": cssrs_answers(**{follow_up: True})})
    assert error.field == f"responses.cssrs.answers.{follow_up}"
    assert "q2" in error.message


@pytest.mark.parametrize("follow_up", ["q3", "q4", "q5"])
@pytest.mark.parametrize("value", [1, "yes"])
def test_cssrs_unasked_follow_up_of_wrong_type(follow_up: str, value: object) -> None:
    error = rejected("cssrs", {"answers": {**cssrs_answers(), follow_up: value}})
    assert error.field == f"responses.cssrs.answers.{follow_up}"


@pytest.mark.parametrize("follow_up", ["q3", "q4", "q5"])
@pytest.mark.parametrize("value", ["missing", None, 1, "no"])
def test_cssrs_follow_up_required_when_q2_yes(follow_up: str, value: object) -> None:
    answers: dict[str, object] = {**cssrs_answers(q2=True, q3=False, q4=False, q5=False)}
    if value == "missing":
        del answers[follow_up]
    else:
        answers[follow_up] = value
    error = rejected("cssrs", {"answers": answers})
    assert error.field == f"responses.cssrs.answers.{follow_up}"
    assert "true or false" in error.message


@pytest.mark.parametrize("value", [True, False, 0, "no"])
def test_cssrs_q6_recent_with_q6_no_is_rejected(value: object) -> None:
    error = rejected("cssrs", {"answers": {**cssrs_answers(), "q6_recent": value}})
    assert error.field == "responses.cssrs.answers.q6_recent"
    assert "q6" in error.message


@pytest.mark.parametrize("value", ["missing", None, 1])
def test_cssrs_q6_recent_required_when_q6_yes(value: object) -> None:
    answers: dict[str, object] = {**cssrs_answers(q6=True)}
    if value != "missing":
        answers["q6_recent"] = value
    error = rejected("cssrs", {"answers": answers})
    assert error.field == "responses.cssrs.answers.q6_recent"


@pytest.mark.parametrize("question", ["q1", "q2", "q6"])
@pytest.mark.parametrize("value", ["missing", None, 0, 1, "yes", "true"])
def test_cssrs_required_questions(question: str, value: object) -> None:
    answers: dict[str, object] = {**cssrs_answers()}
    if value == "missing":
        del answers[question]
    else:
        answers[question] = value
    error = rejected("cssrs", {"answers": answers})
    assert error.field == f"responses.cssrs.answers.{question}"
    assert error.message.endswith("is required and must be true or false")


@pytest.mark.parametrize("key", ["q7", "Q1", "q6_lifetime", "notes"])
def test_cssrs_unknown_question(key: str) -> None:
    error = rejected("cssrs", {"answers": {**cssrs_answers(), key: False}})
    assert error.field == f"responses.cssrs.answers.{key}"


@pytest.mark.parametrize("answers", [[False] * 7, "no", 0, True])
def test_cssrs_answers_must_be_an_object(answers: object) -> None:
    assert rejected("cssrs", {"answers": answers}).field == "responses.cssrs.answers"


@pytest.mark.parametrize("raw", [{}, {"answers": None}])
def test_cssrs_answers_required(raw: object) -> None:
    assert rejected("cssrs", raw).field == "responses.cssrs.answers"


# --- properties ----------------------------------------------------------------------


@st.composite
def integer_response(draw: st.DrawFn) -> tuple[str, list[int]]:
    instrument = draw(st.sampled_from(sorted(INTEGER_INSTRUMENTS)))
    count, high = INTEGER_INSTRUMENTS[instrument]
    answers = draw(st.lists(st.integers(0, high), min_size=count, max_size=count))
    return instrument, answers


@quick
@given(integer_response())
def test_total_is_the_item_sum(response: tuple[str, list[int]]) -> None:
    instrument, answers = response
    assert score_of(instrument, {"answers": answers}).total == sum(answers)


@quick
@given(st.lists(st.integers(0, 3), min_size=9, max_size=9), st.none() | st.integers(0, 3))
def test_phq9_derived_scores(answers: list[int], difficulty: int | None) -> None:
    score = phq9.score({"answers": answers, "difficulty": difficulty})
    assert score.total == sum(answers)
    assert score.item9 == answers[8]
    assert score.phq2 == answers[0] + answers[1]
    assert score.phq2_positive is (score.phq2 >= 3)


@quick
@given(st.integers(0, 27), st.integers(0, 27))
def test_phq9_severity_is_monotonic(low: int, high: int) -> None:
    low, high = sorted((low, high))
    rank = phq9.SEVERITIES.index
    assert rank(phq9.severity(low)) <= rank(phq9.severity(high))


@quick
@given(st.integers(0, 21), st.integers(0, 21))
def test_gad7_severity_is_monotonic(low: int, high: int) -> None:
    low, high = sorted((low, high))
    rank = gad7.SEVERITIES.index
    assert rank(gad7.severity(low)) <= rank(gad7.severity(high))


@st.composite
def valid_cssrs(draw: st.DrawFn) -> dict[str, bool | None]:
    answers: dict[str, bool | None] = {key: draw(st.booleans()) for key in ("q1", "q2", "q6")}
    for key in ("q3", "q4", "q5"):
        if answers["q2"]:
            answers[key] = draw(st.booleans())
        elif draw(st.booleans()):
            answers[key] = draw(st.sampled_from([None, False]))
    if answers["q6"]:
        answers["q6_recent"] = draw(st.booleans())
    elif draw(st.booleans()):
        answers["q6_recent"] = None
    return answers


@quick
@given(valid_cssrs())
def test_cssrs_risk_is_none_only_when_every_answer_is_no(answers: dict[str, bool | None]) -> None:
    risk = cssrs.score({"answers": answers}).risk
    endorsed = any(value for key, value in answers.items() if key != "q6_recent")
    assert (risk == "none") is not endorsed


# --- AUDIT-C skip logic (CLINICAL.md): after "Never", questions 2 and 3 are not asked --


def test_auditc_never_skips_questions_two_and_three() -> None:
    assert auditc.score({"answers": [0, None, None]}, sex="male").total == 0
    # Answers given to them anyway are scored as given.
    assert auditc.score({"answers": [0, 2, None]}, sex=None).total == 2
    assert auditc.score({"answers": [0, 3, 1]}, sex="female").positive is True
    # Shown only once question 1 is answered, and not with "Never".
    q2, q3 = auditc.DEFINITION.items[1:]
    assert q2.asked_unless == q3.asked_unless == ("0", auditc.NEVER)
    assert [item.to_json()["asked_unless"] for item in auditc.DEFINITION.items] == [
        None, {"0": 0}, {"0": 0}]


@pytest.mark.parametrize(("answers", "field"), [
    ([1, None, 2], "responses.auditc.answers.1"),   # asked, not answered
    ([4, 1, None], "responses.auditc.answers.2"),
    ([None, None, None], "responses.auditc.answers.0"),
    ([False, None, None], "responses.auditc.answers.0"),  # false is not "Never"
    ([0.0, None, None], "responses.auditc.answers.0"),
])
def test_auditc_refuses_a_missing_answer_to_an_asked_question(
    answers: list[object], field: str
) -> None:
    assert rejected("auditc", {"answers": answers}).field == field


def test_auditc_schema_says_skipped_answers_may_be_null() -> None:
    schema = auditc.AuditcResponse.model_json_schema()["properties"]["answers"]
    assert {"type": "null"} in schema["items"]["anyOf"]
    assert "Never" in schema["description"]
