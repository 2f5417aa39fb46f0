"""A patient's measures for their care team: latest scores, flags and trend charts.

Reached from the patient's name in the staff visit lists. The series and the access
check (with its audit record) come from ``server.trends.patient_measures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import trends, trials
from server.http import actor_of, path_id, services_of
from server.measures import JUDGED_FROM, MeasurePoint
from server.models import PatientProfile, Role, User
from server.timezones import clinic_zone
from web.charts import NAMES, Charted, ChartEvent, ChartPoint, format_day, trend_chart
from web.rendering import render

OTHER_NAMES: Final[dict[trends.ScreenedInstrument, str]] = {
    "auditc": "AUDIT-C alcohol", "asrm": "Altman mania scale (ASRM)",
    "cssrs": "C-SSRS screener", "fibser": "Side effects (FIBSER)",
    "bam": "Brief Addiction Monitor"}
# FIBSER's decisions by burden (server.instruments.fibser; CLINICAL.md).
FIBSER_DECISIONS: Final = {"continue": "continue",
                           "address_side_effects": "address the side effects",
                           "lower_dose_or_change": "lower the dose or change the drug"}


@dataclass(frozen=True)
class Measure:
    """One charted instrument's series, ready for a template."""

    id: Charted
    name: str
    points: tuple[MeasurePoint, ...]
    chart: Markup
    # The current medication trial's view of this instrument, and the psychotropic
    # changes the chart marks (listed in words beside it too).
    trial: trials.TrialMeasure | None = None
    events: tuple[trials.MedicationMark, ...] = ()

    @property
    def latest(self) -> MeasurePoint:
        return self.points[-1]

    @property
    def first(self) -> MeasurePoint:
        return self.points[0]

    @property
    def judged(self) -> bool:
        """Whether response and remission are judged on the latest score: a later score
        than its baseline, from a baseline in the range that needs treatment."""
        latest = self.latest
        return latest.reliable_change is not None and latest.baseline >= JUDGED_FROM[self.id]


@dataclass(frozen=True)
class OtherResult:
    """The latest result of an instrument that is not charted (AUDIT-C, ASRM, C-SSRS)."""

    id: str
    name: str
    at: str
    value: str
    flagged: bool


def baseline_source(latest: MeasurePoint, found: trials.PatientTrials | None,
                    tz: str) -> str | None:
    """Where the latest point's baseline comes from, in words, when it is a trial's."""
    if latest.trial_started_at is None:
        return None
    trial = next((t for t in (found.trials if found else ())
                  if t.started_at == latest.trial_started_at), None)
    what = "; ".join(e.label for e in trial.events) if trial else "the medication change"
    when = format_day(latest.trial_started_at, tz)
    if latest.baseline_at <= latest.trial_started_at:
        return f"the last score before {what} on {when}"
    return f"the first score after {what} on {when}"


def charted_measures(series: list[trends.Trend], *, chart_prefix: str, tz: str,
                     titles: dict[str, str] | None = None,
                     found: trials.PatientTrials | None = None) -> list[Measure]:
    """``found``: the patient's medication trials, to mark their changes on the charts
    and give each instrument's current trial."""
    measures: list[Measure] = []
    current = found.current if found else None
    events = found.medication_events if found else ()
    for entry in series:
        if not isinstance(entry, trends.MeasuredTrend) or not entry.points:
            continue
        instrument = entry.id
        points = [ChartPoint(p.at, p.total, p.baseline, p.baseline_at) for p in entry.points]
        title = (titles or {}).get(instrument)
        chart = trend_chart(instrument, points, chart_id=f"{chart_prefix}-{instrument}",
                            title=title, tz=tz,
                            events=[ChartEvent(e.at, e.label) for e in events],
                            baseline_source=baseline_source(entry.points[-1], found, tz))
        measures.append(Measure(instrument, NAMES[instrument], entry.points, chart,
                                current.measure(instrument) if current else None, events))
    return measures


def other_results(series: list[trends.Trend], tz: str) -> list[OtherResult]:
    found: list[OtherResult] = []
    for entry in series:
        if not isinstance(entry, trends.ScreeningTrend) or not entry.points:
            continue
        instrument = entry.id
        latest = entry.points[-1]
        if instrument == "cssrs":
            value = f"risk {latest.detail.get('risk')}"
            flagged = latest.detail.get("risk") not in (None, "none")
        elif instrument == "fibser":
            decision = str(latest.detail.get("decision"))
            value = (f"burden {latest.detail.get('burden')}: "
                     f"{FIBSER_DECISIONS.get(decision, decision)}")
            flagged = decision != "continue"
        elif instrument == "bam":
            # Each score against the previous BAM: the trend a month apart.
            value = " · ".join(
                f"{label} {latest.detail.get(key)}"
                + (f" (was {entry.points[-2].detail.get(key)})" if len(entry.points) > 1 else "")
                for key, label in (("use", "Use"), ("risk", "Risk"),
                                   ("protective", "Protective")))
            flagged = any(bool(latest.detail.get(f"{key}_significant"))
                          for key in ("use", "risk", "protective"))
        else:
            positive = bool(latest.detail.get("positive"))
            value = f"{latest.detail.get('total')} ({'positive' if positive else 'negative'})"
            flagged = positive
        found.append(OtherResult(instrument, OTHER_NAMES[instrument],
                                 format_day(latest.at, tz), value, flagged))
    return found


async def patient_page(request: Request) -> Response:
    actor = actor_of(request)
    patient_id = path_id(request, "patient_id")
    if actor.role is Role.patient and actor.user_id == patient_id:
        return RedirectResponse("/progress", status_code=303)
    services = services_of(request)
    tz = clinic_zone(services.settings)
    now = services.clock.now()
    async with services.transaction() as session:
        series = await trends.patient_measures(session, actor, patient_id, now=now)
        found = await trials.patient_trials(session, actor, patient_id, now=now)
        patient = await session.get(User, patient_id)
        profile = await session.get(PatientProfile, patient_id)
    assert patient is not None  # patient_measures checked it exists
    return render(request, "patient.html", patient=patient,
                  measures=charted_measures(series, chart_prefix="chart", tz=tz, found=found),
                  others=other_results(series, tz), format_day=format_day, tz=tz,
                  trial=found.current, day=lambda at: format_day(at, tz),
                  judged_from=JUDGED_FROM,
                  substance_use_track=bool(profile and profile.substance_use_track),
                  may_set_track=actor.role in (Role.prescriber, Role.coordinator))


ROUTES = [Route("/patients/{patient_id}", patient_page, methods=["GET"])]
