"""Measurement-based care: baseline, response, remission, reliable change and worsening
over a series (CLINICAL.md, PHQ-9 and "Measurement-based care in the visit")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.measures import (
    MeasureSeries,
    gad7_series,
    is_not_on_track,
    is_response,
    measure_series,
    phq9_series,
    reliable_change,
)

START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
quick = settings(database=None, max_examples=300, deadline=None)


def dated(*totals: int) -> list[tuple[datetime, int]]:
    return [(START + timedelta(weeks=4 * index), total) for index, total in enumerate(totals)]


def flags(series: MeasureSeries, name: str) -> list[object]:
    return [getattr(point, name) for point in series.points]


def test_empty_series() -> None:
    series = phq9_series([])
    assert (series.baseline, series.latest, series.points) == (None, None, ())
    assert series.to_json() == {"instrument": "phq9", "baseline": None, "points": []}


def test_baseline_is_the_first_point() -> None:
    series = phq9_series(dated(18, 12, 20, 6))
    assert series.baseline == 18
    assert flags(series, "baseline") == [18, 18, 18, 18]
    assert flags(series, "change_from_baseline") == [0, -6, 2, -12]
    assert flags(series, "change_from_previous") == [None, -6, 8, -14]
    assert series.latest is not None
    assert series.latest.total == 6


@pytest.mark.parametrize(
    ("baseline", "total", "response"),
    [
        (20, 10, True),
        (20, 11, False),
        (15, 7, True),  # 53 % drop
        (15, 8, False),  # 47 % drop
        (27, 13, True),
        (27, 14, False),
        (10, 5, True),
        (10, 6, False),
        (11, 5, True),
        (11, 6, False),
        (10, 0, True),
        (10, 10, False),
        (10, 15, False),
        # Below 10 the baseline is not in the range that needs treatment: never judged.
        (9, 0, False),
        (9, 4, False),
        (2, 1, False),
        (1, 0, False),
    ],
)
def test_response_is_a_drop_of_at_least_half(baseline: int, total: int, response: bool) -> None:
    assert flags(phq9_series(dated(baseline, total)), "response") == [False, response]


@pytest.mark.parametrize("totals", [(0,), (0, 0), (0, 3, 0), (0, 9, 0)])
def test_baseline_zero_never_shows_a_response(totals: tuple[int, ...]) -> None:
    assert not any(flags(phq9_series(dated(*totals)), "response"))


def test_baseline_point_is_not_a_response() -> None:
    assert flags(phq9_series(dated(12)), "response") == [False]


@pytest.mark.parametrize("total", [0, 3, 4, 12, 27])
def test_a_single_score_is_never_a_remission(total: int) -> None:
    # The issue: "Remission: yes" on a patient's first and only PHQ-9.
    series = phq9_series(dated(total))
    assert flags(series, "remission") == [False]
    assert flags(series, "response") == [False]
    assert flags(series, "reliable_change") == [None]


@pytest.mark.parametrize(("baseline", "remission"), [(10, True), (9, False), (4, False)])
def test_remission_needs_a_baseline_of_ten(baseline: int, remission: bool) -> None:
    assert flags(phq9_series(dated(baseline, 4)), "remission") == [False, remission]


@pytest.mark.parametrize(("baseline", "remission"), [(10, True), (9, False)])
def test_gad7_remission_needs_a_baseline_of_ten(baseline: int, remission: bool) -> None:
    assert flags(gad7_series(dated(baseline, 4)), "remission") == [False, remission]


def test_a_score_at_the_same_time_as_the_baseline_is_not_later() -> None:
    assert flags(phq9_series([(START, 20), (START, 3)]), "remission") == [False, False]


@pytest.mark.parametrize(
    ("baseline", "total", "partial"),
    [(20, 15, True), (20, 16, False), (20, 11, True), (20, 10, False), (12, 9, True),
     (12, 10, False), (9, 6, False)],
)
def test_partial_response_is_a_drop_of_a_quarter_to_half(
    baseline: int, total: int, partial: bool
) -> None:
    assert flags(phq9_series(dated(baseline, total)), "partial_response") == [False, partial]


@pytest.mark.parametrize(
    ("instrument", "baseline", "total", "label"),
    [
        # PHQ-9: 6 points is reliable, 5 is not.
        ("phq9", 20, 14, "reliable_improvement"),
        ("phq9", 20, 15, "no_reliable_change"),
        ("phq9", 8, 14, "reliable_deterioration"),
        ("phq9", 8, 13, "no_reliable_change"),
        # Recovery: from at or above caseness (10) to below it (9).
        ("phq9", 15, 9, "reliable_recovery"),
        ("phq9", 16, 10, "reliable_improvement"),
        ("phq9", 10, 4, "reliable_recovery"),
        ("phq9", 9, 3, "reliable_improvement"),
        # GAD-7: 4 points is reliable, 3 is not.
        ("gad7", 15, 11, "reliable_improvement"),
        ("gad7", 15, 12, "no_reliable_change"),
        ("gad7", 5, 9, "reliable_deterioration"),
        ("gad7", 5, 8, "no_reliable_change"),
        # Recovery: from at or above caseness (8) to below it (7).
        ("gad7", 11, 7, "reliable_recovery"),
        ("gad7", 12, 8, "reliable_improvement"),
        ("gad7", 8, 4, "reliable_recovery"),
        ("gad7", 7, 3, "reliable_improvement"),
    ],
)
def test_reliable_change(instrument: str, baseline: int, total: int, label: str) -> None:
    assert reliable_change(instrument, baseline, total) == label  # type: ignore[arg-type]
    series = measure_series(instrument, dated(baseline, total))  # type: ignore[arg-type]
    assert flags(series, "reliable_change") == [None, label]


@pytest.mark.parametrize(
    ("instrument", "baseline", "total", "elapsed", "prompt"),
    [
        ("phq9", 20, 16, timedelta(weeks=6), True),  # 20 % after 6 weeks
        ("phq9", 20, 15, timedelta(weeks=6), False),  # 25 %
        ("phq9", 20, 16, timedelta(weeks=5, days=6), False),  # not yet 6 weeks
        ("phq9", 20, 16, timedelta(weeks=6) - timedelta(seconds=1), False),
        ("phq9", 12, 10, timedelta(weeks=8), True),  # 16 %
        ("phq9", 12, 9, timedelta(weeks=8), False),  # 25 %
        ("phq9", 12, 14, timedelta(weeks=8), True),  # worse
        # From at or above caseness only: PHQ-9 10 / 9, GAD-7 8 / 7.
        ("phq9", 10, 9, timedelta(weeks=8), True),
        ("phq9", 9, 9, timedelta(weeks=8), False),
        ("gad7", 8, 7, timedelta(weeks=6), True),
        ("gad7", 8, 6, timedelta(weeks=6), False),  # 25 %
        ("gad7", 7, 7, timedelta(weeks=6), False),
        ("gad7", 0, 0, timedelta(weeks=8), False),
    ],
)
def test_not_on_track(instrument: str, baseline: int, total: int, elapsed: timedelta,
                      prompt: bool) -> None:
    assert is_not_on_track(instrument, baseline, total, elapsed) is prompt  # type: ignore[arg-type]


def test_a_trial_baseline_is_the_last_score_before_its_start() -> None:
    # Scores 18 (wk 0), 16 (wk 4), then a trial starts at week 6: 14 (wk 8), 7 (wk 12).
    trial = (START + timedelta(weeks=6), None)
    series = phq9_series(dated(18, 16, 14, 7), trials=[trial])
    assert flags(series, "baseline") == [18, 18, 16, 16]
    assert flags(series, "baseline_at")[2] == START + timedelta(weeks=4)
    assert flags(series, "trial_started_at") == [None, None, trial[0], trial[0]]
    assert flags(series, "change_from_baseline") == [0, -2, -2, -9]
    # 7 from 16 is a response; from the episode's 18 it would be too, but 8 would not.
    assert flags(series, "response") == [False, False, False, True]
    assert series.baseline == 18


def test_a_trial_without_an_earlier_score_uses_its_first() -> None:
    trial = (START - timedelta(days=1), None)
    series = phq9_series(dated(14, 6), trials=[trial])
    assert flags(series, "baseline") == [14, 14]
    assert flags(series, "reliable_change") == [None, "reliable_recovery"]


def test_each_trial_has_its_own_baseline() -> None:
    first = (START + timedelta(weeks=2), START + timedelta(weeks=6))
    second = (START + timedelta(weeks=6), None)
    # 20 (wk 0) | trial 1: 12 (wk 4) | trial 2 (wk 6): 10 (wk 8)
    series = phq9_series(dated(20, 12, 10), trials=[first, second])
    assert flags(series, "baseline") == [20, 20, 12]
    assert flags(series, "response") == [False, False, False]
    assert flags(series, "change_from_baseline") == [0, -8, -2]


def test_trials_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="in order"):
        phq9_series(dated(10), trials=[(START + timedelta(days=9), None), (START, None)])


@pytest.mark.parametrize(
    ("total", "remission"), [(0, True), (4, True), (5, False), (9, False), (27, False)]
)
def test_remission_is_below_five(total: int, remission: bool) -> None:
    assert flags(phq9_series(dated(20, total)), "remission") == [False, remission]


@pytest.mark.parametrize(
    ("previous", "total", "worsened"),
    [(0, 4, False), (0, 5, True), (10, 14, False), (10, 15, True), (20, 27, True), (15, 5, False)],
)
def test_worsened_is_a_rise_of_five_since_the_previous(
    previous: int, total: int, worsened: bool
) -> None:
    assert flags(phq9_series(dated(previous, total)), "worsened") == [False, worsened]


def test_worsened_compares_with_the_previous_point_not_the_baseline() -> None:
    # 20 -> 8 -> 12: up 4 from the previous, still below baseline; 12 -> 17 is up 5.
    assert flags(phq9_series(dated(20, 8, 12, 17)), "worsened") == [False, False, False, True]


def test_severity_follows_the_instrument() -> None:
    assert flags(phq9_series(dated(4, 5, 15, 20)), "severity") == [
        "minimal",
        "mild",
        "moderately_severe",
        "severe",
    ]
    assert flags(gad7_series(dated(4, 5, 15, 21)), "severity") == [
        "minimal",
        "mild",
        "severe",
        "severe",
    ]


def test_gad7_series() -> None:
    series = gad7_series(dated(16, 8, 4, 9))
    assert series.instrument == "gad7"
    assert flags(series, "response") == [False, True, True, False]
    assert flags(series, "remission") == [False, False, True, False]
    assert flags(series, "worsened") == [False, False, False, True]


def test_to_json() -> None:
    series = phq9_series(dated(14, 6))
    assert series.to_json() == {
        "instrument": "phq9",
        "baseline": 14,
        "points": [
            {
                "at": "2026-01-05T15:00:00+00:00",
                "total": 14,
                "severity": "moderate",
                "baseline": 14,
                "baseline_at": "2026-01-05T15:00:00+00:00",
                "trial_started_at": None,
                "change_from_baseline": 0,
                "change_from_previous": None,
                "response": False,
                "partial_response": False,
                "remission": False,
                "reliable_change": None,
                "worsened": False,
            },
            {
                "at": "2026-02-02T15:00:00+00:00",
                "total": 6,
                "severity": "mild",
                "baseline": 14,
                "baseline_at": "2026-01-05T15:00:00+00:00",
                "trial_started_at": None,
                "change_from_baseline": -8,
                "change_from_previous": -8,
                "response": True,
                "partial_response": False,
                "remission": False,
                "reliable_change": "reliable_recovery",
                "worsened": False,
            },
        ],
    }


def test_same_time_points_are_kept_in_order() -> None:
    series = phq9_series([(START, 10), (START, 4)])
    assert flags(series, "total") == [10, 4]


def test_other_time_zones_are_accepted() -> None:
    eastern = timezone(timedelta(hours=-5))
    series = phq9_series([(START, 10), (START.astimezone(eastern) + timedelta(days=1), 3)])
    assert flags(series, "remission") == [False, True]


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([(START.replace(tzinfo=None), 3)], "timezone-aware"),
        ([(START, 3), (START - timedelta(seconds=1), 3)], "chronological"),
        ([(START, 28)], "from 0 to 27"),
        ([(START, -1)], "from 0 to 27"),
        ([(START, True)], "from 0 to 27"),
        ([(START, 3.0)], "from 0 to 27"),
    ],
)
def test_bad_series(series: list[tuple[datetime, int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        phq9_series(series)


def test_gad7_range() -> None:
    with pytest.raises(ValueError, match="from 0 to 21"):
        gad7_series(dated(22))


def test_only_phq9_and_gad7() -> None:
    with pytest.raises(ValueError, match="phq9 and gad7"):
        measure_series("asrm", dated(3))  # type: ignore[arg-type]


@quick
@given(st.lists(st.integers(0, 27), max_size=12))
def test_flags_follow_their_definitions(totals: list[int]) -> None:
    series = phq9_series(dated(*totals))
    assert flags(series, "total") == totals
    for index, point in enumerate(series.points):
        baseline = totals[0]
        assert point.baseline == baseline
        judged = index > 0 and baseline >= 10
        assert point.response is (judged and point.total <= baseline / 2)
        assert point.remission is (judged and point.total < 5)
        assert point.worsened is (index > 0 and point.total - totals[index - 1] >= 5)


@quick
@given(st.integers(0, 27), st.integers(0, 27), st.integers(0, 27))
def test_response_is_monotonic_in_total(baseline: int, low: int, high: int) -> None:
    low, high = sorted((low, high))
    assert is_response(baseline, low) or not is_response(baseline, high)
