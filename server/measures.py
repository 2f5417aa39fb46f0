"""Measurement-based care: a patient's PHQ-9 (or GAD-7) totals over time, against a
baseline (CLINICAL.md, PHQ-9 and "Measurement-based care in the visit").

The caller passes an instrument's totals in chronological order and, optionally, the
medication trials' windows (``server.trials``). A point inside a trial is judged against
that trial's baseline: the last score at or before the trial's start, else the trial's
first score. A point outside every trial is judged against the episode's baseline, the
first score of the series. For each point:

- ``response``: total dropped by >= 50 % from baseline, i.e. ``2 * total <= baseline``
  in integers; ``partial_response``: dropped by >= 25 % but not 50 %.
- ``remission``: total < 5.
- Response, partial response and remission are judged only on a score later than its
  baseline and only when that baseline was >= 10: a first score, or a baseline that was
  never in the range that needs treatment, is neither (the corrected rule: "Remission:
  yes" on a patient's first and only PHQ-9 was false reassurance).
- ``reliable_change`` (NHS Talking Therapies): a change of >= 6 points on PHQ-9 or >= 4
  on GAD-7; recovery when it is an improvement from at or above caseness (PHQ-9 >= 10,
  GAD-7 >= 8) to below it.
- ``worsened``: total rose by >= 5 since the previous point; never on the first point.

GAD-7's response and remission use the same rules as PHQ-9; CLINICAL.md defines them for
PHQ-9 only (docs/clinical.md says why we extend them, and with which numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import computed_field

from server.instruments import gad7, phq9
from server.results import Instant, Result

MeasuredInstrument = Literal["phq9", "gad7"]
ReliableChange = Literal["reliable_recovery", "reliable_improvement",
                         "reliable_deterioration", "no_reliable_change"]

REMISSION_BELOW: Final = 5
# Same number as ``phq9_worsened_rise`` in escalation/triage_rules.toml; a test keeps
# the two equal so the trend chart and the triage reason never disagree.
WORSENED_RISE: Final = 5
# Response and remission need a baseline at least this high: PHQ-9 >= 10 (CLINICAL.md);
# GAD-7 >= 10, its validated cut-point (Spitzer 2006), the stricter of its two usual
# thresholds, so a mild baseline cannot "remit" (docs/clinical.md).
JUDGED_FROM: Final[dict[MeasuredInstrument, int]] = {"phq9": 10, "gad7": 10}
# NHS Talking Therapies manual: reliable change index and caseness.
RELIABLE_CHANGE: Final[dict[MeasuredInstrument, int]] = {"phq9": 6, "gad7": 4}
CASENESS: Final[dict[MeasuredInstrument, int]] = {"phq9": 10, "gad7": 8}
# ICSI: less than 25 % improvement after 6 weeks of a trial calls for a change.
NOT_ON_TRACK_AFTER: Final = timedelta(weeks=6)

_TOTAL_MAX: Final[dict[MeasuredInstrument, int]] = {
    "phq9": phq9.TOTAL_MAX,
    "gad7": gad7.TOTAL_MAX,
}


def _severity(instrument: MeasuredInstrument, total: int) -> str:
    return phq9.severity(total) if instrument == "phq9" else gad7.severity(total)


def is_response(baseline: int, total: int) -> bool:
    """A drop of at least half (the arithmetic only; ``judged`` says whether it counts)."""
    return baseline > 0 and 2 * total <= baseline


def is_partial_response(baseline: int, total: int) -> bool:
    """A drop of at least a quarter that is not a response."""
    return baseline > 0 and 4 * (baseline - total) >= baseline and not is_response(
        baseline, total)


def is_remission(total: int) -> bool:
    return total < REMISSION_BELOW


def is_worsened(previous: int | None, total: int, rise: int = WORSENED_RISE) -> bool:
    return previous is not None and total - previous >= rise


def judged(instrument: MeasuredInstrument, baseline: int, later: bool) -> bool:
    """Whether response and remission may be judged: a later score than the baseline,
    from a baseline in the range that needs treatment."""
    return later and baseline >= JUDGED_FROM[instrument]


def reliable_change(instrument: MeasuredInstrument, baseline: int,
                    total: int) -> ReliableChange:
    step, caseness = RELIABLE_CHANGE[instrument], CASENESS[instrument]
    if baseline - total >= step:
        if baseline >= caseness > total:
            return "reliable_recovery"
        return "reliable_improvement"
    if total - baseline >= step:
        return "reliable_deterioration"
    return "no_reliable_change"


def is_not_on_track(instrument: MeasuredInstrument, baseline: int, total: int,
                    in_trial: timedelta) -> bool:
    """Less than 25 % improvement after 6 or more weeks of a trial, from a baseline at or
    above caseness: a baseline below it is not what the trial treats (a GAD-7 of 2 in a
    trial for depression would prompt at every visit), and the prompt would be noise."""
    return (in_trial >= NOT_ON_TRACK_AFTER and baseline >= CASENESS[instrument]
            and 4 * (baseline - total) < baseline)


class MeasurePoint(Result):
    at: Instant
    total: int
    severity: str
    baseline: int
    # When the baseline score was taken, and the trial this point belongs to (None: no
    # trial; the episode's first score is the baseline).
    baseline_at: Instant
    trial_started_at: Instant | None
    change_from_baseline: int
    change_from_previous: int | None
    response: bool
    partial_response: bool
    remission: bool
    # None on the baseline point itself: there is no change to judge.
    reliable_change: ReliableChange | None
    worsened: bool


class MeasureSeries(Result):
    instrument: MeasuredInstrument
    points: tuple[MeasurePoint, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline(self) -> int | None:
        """The episode's baseline: the first score."""
        return self.points[0].total if self.points else None

    @property
    def latest(self) -> MeasurePoint | None:
        return self.points[-1] if self.points else None


Window = tuple[datetime, datetime | None]


def _check(instrument: MeasuredInstrument, series: Sequence[tuple[datetime, int]],
           trials: Sequence[Window]) -> None:
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
    for index, (start, end) in enumerate(trials):
        if start.tzinfo is None or (end is not None and end.tzinfo is None):
            raise ValueError(f"trial {index}: times must be timezone-aware")
        if end is not None and end < start:
            raise ValueError(f"trial {index}: ends before it starts")
        if index and start < (trials[index - 1][1] or trials[index - 1][0]):
            raise ValueError(f"trial {index}: trials must be in order and not overlap")


def in_window(at: datetime, window: Window) -> bool:
    """A score belongs to a trial when taken after its start (a score taken at the very
    moment of the change cannot reflect it) and up to its end."""
    start, end = window
    return start < at and (end is None or at <= end)


def baseline_index(times: Sequence[datetime], window: Window) -> int | None:
    """The trial's baseline: the last score at or before its start, else its first
    score; None when there is neither."""
    before = [index for index, at in enumerate(times) if at <= window[0]]
    if before:
        return before[-1]
    return next((index for index, at in enumerate(times) if in_window(at, window)), None)


def measure_series(
    instrument: MeasuredInstrument,
    series: Sequence[tuple[datetime, int]],
    *,
    trials: Sequence[Window] = (),
    worsened_rise: int = WORSENED_RISE,
) -> MeasureSeries:
    """Per-point baseline, response, remission, reliable change and worsening.

    ``trials``: the medication trials' (start, end) windows, in order, not overlapping;
    ``end`` None for a trial still running."""
    if instrument not in _TOTAL_MAX:
        raise ValueError(f"measures are computed for phq9 and gad7, not {instrument!r}")
    _check(instrument, series, trials)
    times = [at for at, _ in series]
    bases = [baseline_index(times, window) for window in trials]
    points: list[MeasurePoint] = []
    previous: int | None = None
    for index, (at, total) in enumerate(series):
        trial = next((t for t, window in enumerate(trials) if in_window(at, window)), None)
        base = 0 if trial is None else bases[trial]
        assert base is not None  # this point is in the trial, so the trial has one
        baseline = series[base][1]
        later = at > series[base][0] and index > base
        counts = judged(instrument, baseline, later)
        points.append(
            MeasurePoint(
                at=at,
                total=total,
                severity=_severity(instrument, total),
                baseline=baseline,
                baseline_at=series[base][0],
                trial_started_at=None if trial is None else trials[trial][0],
                change_from_baseline=total - baseline,
                change_from_previous=None if previous is None else total - previous,
                response=counts and is_response(baseline, total),
                partial_response=counts and is_partial_response(baseline, total),
                remission=counts and is_remission(total),
                reliable_change=reliable_change(instrument, baseline, total) if later else None,
                worsened=is_worsened(previous, total, worsened_rise),
            )
        )
        previous = total
    return MeasureSeries(instrument=instrument, points=tuple(points))


def phq9_series(series: Sequence[tuple[datetime, int]], *,
                trials: Sequence[Window] = ()) -> MeasureSeries:
    return measure_series("phq9", series, trials=trials)


def gad7_series(series: Sequence[tuple[datetime, int]], *,
                trials: Sequence[Window] = ()) -> MeasureSeries:
    return measure_series("gad7", series, trials=trials)
