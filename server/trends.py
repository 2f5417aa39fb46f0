"""A patient's measures over time, for the API, the charts and the FHIR export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient
from server.actors import Actor
from server.measures import measure_series
from server.models import MeasureResult

SERIES = ("phq9", "gad7", "auditc", "asrm", "cssrs")


async def results(session: AsyncSession, patient_id: int) -> list[MeasureResult]:
    rows = await session.scalars(
        select(MeasureResult).where(MeasureResult.patient_id == patient_id)
        .order_by(MeasureResult.at, MeasureResult.id)
    )
    return list(rows.all())


def series_json(rows: list[MeasureResult]) -> list[dict[str, Any]]:
    """One entry per instrument with data: PHQ-9 and GAD-7 with baseline, response,
    remission and worsening; the others as their scored points."""
    out: list[dict[str, Any]] = []
    for instrument in SERIES:
        points = [r for r in rows if r.instrument == instrument]
        if not points:
            continue
        if instrument in ("phq9", "gad7"):
            totals = [(r.at, r.total) for r in points if r.total is not None]
            series = measure_series(instrument, totals)  # type: ignore[arg-type]
            out.append({"id": instrument, **series.to_json()})
        else:
            out.append({"id": instrument, "instrument": instrument, "points": [
                {"at": r.at.isoformat(), **r.result} for r in points]})
    return out


async def patient_measures(
    session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    await access_patient(session, actor, patient_id, now=now)
    rows = await results(session, patient_id)
    audit.record(session, actor, "read", "measures", patient_id, patient_id=patient_id,
                 count=len(rows))
    return series_json(rows)
