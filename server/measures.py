"""Measurement-based care: a patient's PHQ-9 (or GAD-7) totals over time, against baseline.

The caller passes the totals of the current episode in chronological order; the first
one is the baseline (CLINICAL.md, PHQ-9). For each point:

- ``response``: total dropped by >= 50 % from baseline, i.e. ``total <= baseline / 2``,
  computed in integers as ``2 * total <= baseline``. A baseline of 0 can never show a
  response: there was nothing to improve, and calling it one would be false reassurance.
- ``remission``: total < 5 (the top of the "minimal" band).
- ``worsened``: total rose by >= 5 since the previous point; never on the first point.

GAD-7 uses the same three rules; CLINICAL.md defines them for PHQ-9 only (see
docs/clinical.md for why we extend them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

from pydantic import computed_field

from server.instruments import gad7, phq9
from server.results import Instant, Result

MeasuredInstrument = Literal["phq9", "gad7"]

REMISSION_BELOW: Final = 5
# Same number as ``phq9_worsened_rise`` in escalation/triage_rules.toml; a test keeps
# the two equal so the trend chart and the triage reason never disagree.
WORSENED_RISE: Final = 5

_TOTAL_MAX: Final[dict[MeasuredInstrument, int]] = {
    "phq9": phq9.TOTAL_MAX,
    "gad7": gad7.TOTAL_MAX,
}


def _severity(instrument: MeasuredInstrument, total: int) -> str:
    return phq9.severity(total) if instrument == "phq9" else gad7.severity(total)


def is_response(baseline: int, total: int) -> bool:
    return baseline > 0 and 2 * total <= baseline


def is_remission(total: int) -> bool:
    return total < REMISSION_BELOW


def is_worsened(previous: int | None, total: int, rise: int = WORSENED_RISE) -> bool:
    return previous is not None and total - previous >= rise


class MeasurePoint(Result):
    at: Instant
    total: int
    severity: str
    baseline: int
    change_from_baseline: int
    change_from_previous: int | None
    response: bool
    remission: bool
    worsened: bool


class MeasureSeries(Result):
    instrument: MeasuredInstrument
    points: tuple[MeasurePoint, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline(self) -> int | None:
        return self.points[0].total if self.points else None

    @property
    def latest(self) -> MeasurePoint | None:
        return self.points[-1] if self.points else None


def _check(instrument: MeasuredInstrument, series: Sequence[tuple[datetime, int]]) -> None:
    high = _TOTAL_MAX[instrument]
    previous_at: datetime | None = None
    for index, (at, total) in enumerate(series):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{instrument} point {index}: time must be timezone-aware")
        if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= high:
            raise ValueError(f"{instrument} point {index}: total must be from 0 to {high}")
        # Out-of-order input would silently pick the wrong baseline and "previous".
        if previous_at is not None and at < previous_at:
            raise ValueError(f"{instrument} point {index}: series must be in chronological order")
        previous_at = at


def measure_series(
    instrument: MeasuredInstrument,
    series: Sequence[tuple[datetime, int]],
    *,
    worsened_rise: int = WORSENED_RISE,
) -> MeasureSeries:
    """Per-point baseline, response, remission and worsening for one episode's totals."""
    if instrument not in _TOTAL_MAX:
        raise ValueError(f"measures are computed for phq9 and gad7, not {instrument!r}")
    _check(instrument, series)
    points: list[MeasurePoint] = []
    previous: int | None = None
    for at, total in series:
        baseline = points[0].total if points else total
        points.append(
            MeasurePoint(
                at=at,
                total=total,
                severity=_severity(instrument, total),
                baseline=baseline,
                change_from_baseline=total - baseline,
                change_from_previous=None if previous is None else total - previous,
                response=is_response(baseline, total),
                remission=is_remission(total),
                worsened=is_worsened(previous, total, worsened_rise),
            )
        )
        previous = total
    return MeasureSeries(instrument=instrument, points=tuple(points))


def phq9_series(series: Sequence[tuple[datetime, int]]) -> MeasureSeries:
    return measure_series("phq9", series)


def gad7_series(series: Sequence[tuple[datetime, int]]) -> MeasureSeries:
    return measure_series("gad7", series)
