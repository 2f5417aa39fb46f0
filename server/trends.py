"""A patient's measures over time, for the API, the charts and the FHIR export."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, trials
from server.access import access_patient
from server.actors import Actor
from server.measures import MeasuredInstrument, MeasurePoint, Window, measure_series
from server.models import MeasureResult
from server.results import Instant, Result, WithDetail

# Charted against a baseline (``server.measures``).
MEASURED: Final[tuple[MeasuredInstrument, ...]] = get_args(MeasuredInstrument)
# Shown as their scored results.
ScreenedInstrument = Literal["auditc", "asrm", "cssrs", "fibser", "bam"]
SCREENED: Final[tuple[ScreenedInstrument, ...]] = get_args(ScreenedInstrument)


class MeasuredTrend(Result):
    """PHQ-9 or GAD-7: each total with its baseline (its medication trial's, else the
    episode's first score), response, remission, reliable change, worsening."""

    id: MeasuredInstrument
    instrument: MeasuredInstrument
    baseline: int | None
    points: tuple[MeasurePoint, ...]


class ScreeningPoint(WithDetail):
    """One scored result as the check-in stored it (``detail``: total, positive, risk...),
    and when."""

    at: Instant


class ScreeningTrend(Result):
    """AUDIT-C, ASRM or the C-SSRS screener: each scored result."""

    id: ScreenedInstrument
    instrument: ScreenedInstrument
    points: tuple[ScreeningPoint, ...]


Trend = MeasuredTrend | ScreeningTrend


async def results(session: AsyncSession, patient_id: int) -> list[MeasureResult]:
    rows = await session.scalars(
        select(MeasureResult).where(MeasureResult.patient_id == patient_id)
        .order_by(MeasureResult.at, MeasureResult.id)
    )
    return list(rows.all())


def trends(rows: list[MeasureResult], windows: Sequence[Window] = ()) -> list[Trend]:
    """One entry per instrument with data: the measured ones first. ``windows``: the
    patient's medication trials (``server.trials``), whose baselines the points use."""
    out: list[Trend] = []
    for instrument in MEASURED:
        totals = [(r.at, r.total) for r in rows
                  if r.instrument == instrument and r.total is not None]
        if any(r.instrument == instrument for r in rows):
            series = measure_series(instrument, totals, trials=windows)
            out.append(MeasuredTrend(id=instrument, instrument=instrument,
                                     baseline=series.baseline, points=series.points))
    for screened in SCREENED:
        points = [ScreeningPoint(at=r.at, detail=r.result) for r in rows
                  if r.instrument == screened]
        if points:
            out.append(ScreeningTrend(id=screened, instrument=screened, points=tuple(points)))
    return out


async def patient_measures(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> list[Trend]:
    await access_patient(session, actor, patient_id, now=now)
    rows = await results(session, patient_id)
    windows = await trials.trial_windows(session, patient_id)
    audit.record(session, actor, "read", "measures", patient_id, patient_id=patient_id,
                 count=len(rows))
    return trends(rows, windows)
