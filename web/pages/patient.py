"""A patient's measures for their care team: latest scores, flags and trend charts.

Reached from the patient's name in the staff visit lists. The series and the access
check (with its audit record) come from ``server.trends.patient_measures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import trends
from server.http import actor_of, path_id, services_of
from server.models import Role, User
from server.timezones import clinic_zone
from web.charts import NAMES, Charted, ChartPoint, format_day, trend_chart
from web.rendering import render

CHARTED: Final[tuple[Charted, ...]] = ("phq9", "gad7")
OTHER_NAMES: Final = {"auditc": "AUDIT-C alcohol", "asrm": "Altman mania scale (ASRM)",
                      "cssrs": "C-SSRS screener"}


@dataclass(frozen=True)
class Measure:
    """One charted instrument's series, ready for a template."""

    id: Charted
    name: str
    points: list[dict[str, Any]]
    chart: Markup

    @property
    def latest(self) -> dict[str, Any]:
        return self.points[-1]

    @property
    def first(self) -> dict[str, Any]:
        return self.points[0]


@dataclass(frozen=True)
class OtherResult:
    """The latest result of an instrument that is not charted (AUDIT-C, ASRM, C-SSRS)."""

    id: str
    name: str
    at: str
    value: str
    flagged: bool


def _at(point: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(point["at"])


def charted_measures(series: list[dict[str, Any]], *, chart_prefix: str, tz: str,
                     titles: dict[str, str] | None = None) -> list[Measure]:
    measures: list[Measure] = []
    for entry in series:
        instrument = entry["id"]
        if instrument not in CHARTED or not entry["points"]:
            continue
        points = [ChartPoint(_at(p), int(p["total"])) for p in entry["points"]]
        title = (titles or {}).get(instrument)
        chart = trend_chart(instrument, points, chart_id=f"{chart_prefix}-{instrument}",
                            title=title, tz=tz)
        measures.append(Measure(instrument, NAMES[instrument], entry["points"], chart))
    return measures


def other_results(series: list[dict[str, Any]], tz: str) -> list[OtherResult]:
    found: list[OtherResult] = []
    for entry in series:
        instrument = entry["id"]
        if instrument not in OTHER_NAMES or not entry["points"]:
            continue
        latest = entry["points"][-1]
        if instrument == "cssrs":
            value = f"risk {latest.get('risk')}"
            flagged = latest.get("risk") not in (None, "none")
        else:
            positive = bool(latest.get("positive"))
            value = f"{latest.get('total')} ({'positive' if positive else 'negative'})"
            flagged = positive
        found.append(OtherResult(instrument, OTHER_NAMES[instrument],
                                 format_day(_at(latest), tz), value, flagged))
    return found


async def patient_page(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    if actor.role is Role.patient and actor.user_id == patient_id:
        return RedirectResponse("/progress", status_code=303)
    services = services_of(request)
    tz = clinic_zone(services.settings)
    async with services.transaction() as session:
        series = await trends.patient_measures(session, actor, patient_id)
        patient = await session.get(User, patient_id)
    assert patient is not None  # patient_measures checked it exists
    return render(request, "patient.html", patient=patient,
                  measures=charted_measures(series, chart_prefix="chart", tz=tz),
                  others=other_results(series, tz), format_day=format_day, at=_at, tz=tz)


ROUTES = [Route("/patients/{patient_id}", patient_page, methods=["GET"])]
