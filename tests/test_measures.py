"""Measurement-based care: baseline, response, remission and worsening over a series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.measures import (
    MeasureSeries,
    gad7_series,
    is_response,
    measure_series,
    phq9_series,
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
        (2, 1, True),
        (1, 0, True),
        (1, 1, False),
        (10, 0, True),
        (10, 10, False),
        (10, 15, False),
    ],
)
def test_response_is_a_drop_of_at_least_half(baseline: int, total: int, response: bool) -> None:
    assert flags(phq9_series(dated(baseline, total)), "response") == [False, response]


@pytest.mark.parametrize("totals", [(0,), (0, 0), (0, 3, 0), (0, 9, 0)])
def test_baseline_zero_never_shows_a_response(totals: tuple[int, ...]) -> None:
    assert not any(flags(phq9_series(dated(*totals)), "response"))


def test_baseline_point_is_not_a_response() -> None:
    assert flags(phq9_series(dated(12)), "response") == [False]


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
                "change_from_baseline": 0,
                "change_from_previous": None,
                "response": False,
                "remission": False,
                "worsened": False,
            },
            {
                "at": "2026-02-02T15:00:00+00:00",
                "total": 6,
                "severity": "mild",
                "baseline": 14,
                "change_from_baseline": -8,
                "change_from_previous": -8,
                "response": True,
                "remission": False,
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
        assert point.response is (baseline > 0 and point.total <= baseline / 2)
        assert point.remission is (point.total < 5)
        assert point.worsened is (index > 0 and point.total - totals[index - 1] >= 5)


@quick
@given(st.integers(0, 27), st.integers(0, 27), st.integers(0, 27))
def test_response_is_monotonic_in_total(baseline: int, low: int, high: int) -> None:
    low, high = sorted((low, high))
    assert is_response(baseline, low) or not is_response(baseline, high)
