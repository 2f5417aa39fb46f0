"""Medication trials: is the current treatment working?

A start, switch or dose change (increase, decrease, taper) of a psychotropic opens a
trial (CLINICAL.md, "Measurement-based care in the visit"). Which medications are
psychotropics, and which of them open trials, is reviewed data (``server.psychotropics``,
reading the one medication catalogue, ``medication_catalogue.toml``). Changes signed in
one note open one trial together. A trial runs until the next one opens, or
until every medication it changed is stopped.

Per instrument (PHQ-9, GAD-7) a trial has a baseline, the last score at or before its
start (else its first score), and its latest later score; the rules that judge them
(response, remission, reliable change, not on track) are ``server.measures``'s, so the
trend and the panel's "Current trial" line can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, measures
from server.access import access_patient
from server.actors import Actor
from server.measures import MeasuredInstrument, ReliableChange, Window
from server.models import MeasureResult, MedicationChange
from server.psychotropics import opens_trial
from server.results import Instant, Result

# The actions that open a trial; a "stop" ends one, "continue" changes nothing.
OPENS: Final = frozenset({"start", "switch", "increase", "decrease", "taper"})
MEASURED: Final[tuple[MeasuredInstrument, ...]] = ("phq9", "gad7")


class MedicationMark(Result):
    """A psychotropic's change, as a trend chart marks it on the time axis."""

    at: Instant
    action: str
    drug: str
    dose: str | None = None
    unit: str | None = None
    replaces: str | None = None

    @property
    def label(self) -> str:
        words = {"start": "Start", "switch": "Switch to", "increase": "Increase",
                 "decrease": "Decrease", "taper": "Taper", "stop": "Stop"}
        dose = " ".join(part for part in (self.dose, self.unit) if part)
        text = f"{words.get(self.action, self.action.capitalize())} {self.drug}"
        text += f" {dose}" if dose else ""
        return text + (f" (from {self.replaces})" if self.replaces else "")


class TrialScore(Result):
    at: Instant
    total: int


class TrialMeasure(Result):
    """One instrument in one trial: its baseline, its latest later score and the
    judgements (None or False until there is a later score)."""

    instrument: MeasuredInstrument
    baseline: TrialScore | None
    # The baseline was taken at or before the trial's start (else it is the trial's
    # first score).
    baseline_before_start: bool
    latest: TrialScore | None
    change: int | None
    # Of the baseline, rounded down; None from a baseline of 0.
    improvement_percent: int | None
    reliable_change: ReliableChange | None
    response: bool
    partial_response: bool
    remission: bool
    not_on_track: bool


class Trial(Result):
    started_at: Instant
    ended_at: Instant | None
    current: bool
    events: tuple[MedicationMark, ...]
    # Up to now (or the trial's end).
    days_in_trial: int
    weeks_in_trial: int
    measures: tuple[TrialMeasure, ...]

    def measure(self, instrument: MeasuredInstrument) -> TrialMeasure | None:
        return next((m for m in self.measures if m.instrument == instrument), None)


class PatientTrials(Result):
    patient_id: int
    trials: tuple[Trial, ...]
    # Every psychotropic change (stops included), for the trend's time axis.
    medication_events: tuple[MedicationMark, ...]

    @property
    def current(self) -> Trial | None:
        return next((t for t in reversed(self.trials) if t.current), None)


def _names(changes: Sequence[MedicationChange]) -> dict[int, str]:
    """Each medication's name, from the change that carries it (a switch's "stop" of
    the old medication does not)."""
    return {c.medication_id: str((c.detail or {})["drug"]) for c in changes
            if (c.detail or {}).get("drug")}


def _mark(change: MedicationChange, names: dict[int, str]) -> MedicationMark:
    detail = change.detail or {}
    drug = detail.get("drug") or names.get(change.medication_id)

    def text(key: str) -> str | None:
        value = detail.get(key)
        return str(value) if value else None

    return MedicationMark(at=change.at, action=change.action,
                          drug=str(drug) if drug else f"medication {change.medication_id}",
                          dose=text("dose"), unit=text("unit"), replaces=text("replaces"))


def _is_psychotropic_change(change: MedicationChange, names: dict[int, str]) -> bool:
    detail = change.detail or {}
    drug = str(detail.get("drug") or names.get(change.medication_id, ""))
    return opens_trial(drug)


class Opening(Result):
    at: Instant
    medication_ids: frozenset[int]
    events: tuple[MedicationMark, ...]


def openings(changes: Sequence[MedicationChange]) -> tuple[list[Opening], list[Window]]:
    """The trials' openings and their windows, from the patient's medication changes in
    the order they were made."""
    names = _names(changes)
    found: list[Opening] = []
    for change in changes:
        if change.action not in OPENS or not _is_psychotropic_change(change, names):
            continue
        if found and found[-1].at == change.at:
            last = found[-1]
            found[-1] = Opening(at=last.at, medication_ids=last.medication_ids | {
                change.medication_id}, events=(*last.events, _mark(change, names)))
        else:
            found.append(Opening(at=change.at, medication_ids=frozenset({change.medication_id}),
                                 events=(_mark(change, names),)))
    windows: list[Window] = []
    for index, opening in enumerate(found):
        end: datetime | None = found[index + 1].at if index + 1 < len(found) else None
        stops = {c.medication_id: c.at for c in changes
                 if c.action == "stop" and c.medication_id in opening.medication_ids
                 and c.at > opening.at and (end is None or c.at < end)}
        if set(stops) == opening.medication_ids:
            end = max(stops.values())
        windows.append((opening.at, end))
    return found, windows


def _trial_measure(instrument: MeasuredInstrument, series: measures.MeasureSeries,
                   scores: Sequence[tuple[datetime, int]], window: Window,
                   in_trial: timedelta) -> TrialMeasure:
    inside = [p for p in series.points if p.trial_started_at == window[0]]
    base = measures.baseline_index([at for at, _ in scores], window)
    baseline = None if base is None else TrialScore(at=scores[base][0], total=scores[base][1])
    latest_point = inside[-1] if inside and inside[-1].reliable_change is not None else None
    change = improvement = None
    not_on_track = False
    if baseline and latest_point:
        change = latest_point.total - baseline.total
        if baseline.total > 0:
            improvement = (baseline.total - latest_point.total) * 100 // baseline.total
        not_on_track = measures.is_not_on_track(instrument, baseline.total,
                                                latest_point.total, in_trial)
    return TrialMeasure(
        instrument=instrument, baseline=baseline,
        baseline_before_start=bool(baseline and baseline.at <= window[0]),
        latest=TrialScore(at=latest_point.at, total=latest_point.total) if latest_point else None,
        change=change, improvement_percent=improvement,
        reliable_change=latest_point.reliable_change if latest_point else None,
        response=bool(latest_point and latest_point.response),
        partial_response=bool(latest_point and latest_point.partial_response),
        remission=bool(latest_point and latest_point.remission),
        not_on_track=not_on_track)


def derive(changes: Sequence[MedicationChange], scores: Mapping[MeasuredInstrument,
           Sequence[tuple[datetime, int]]], *, patient_id: int, now: datetime) -> PatientTrials:
    """The patient's trials from their medication changes (in order) and their scores
    (each instrument's, in chronological order)."""
    found, windows = openings(changes)
    series = {instrument: measures.measure_series(instrument, scores.get(instrument, ()),
                                                  trials=windows)
              for instrument in MEASURED}
    trials: list[Trial] = []
    for opening, window in zip(found, windows, strict=True):
        until = window[1] or now
        in_trial = max(until - opening.at, timedelta(0))
        trials.append(Trial(
            started_at=opening.at, ended_at=window[1], current=window[1] is None,
            events=opening.events, days_in_trial=in_trial.days,
            weeks_in_trial=in_trial.days // 7,
            measures=tuple(_trial_measure(i, series[i], scores.get(i, ()), window, in_trial)
                           for i in MEASURED)))
    names = _names(changes)
    # A switch's "stop" of the old medication is the switch's own mark.
    marks = tuple(_mark(c, names) for c in changes
                  if c.action != "continue" and "switched_to" not in (c.detail or {})
                  and _is_psychotropic_change(c, names))
    return PatientTrials(patient_id=patient_id, trials=tuple(trials), medication_events=marks)


async def changes_of(session: AsyncSession, patient_id: int) -> list[MedicationChange]:
    rows = await session.scalars(select(MedicationChange).where(
        MedicationChange.patient_id == patient_id).order_by(MedicationChange.at,
                                                            MedicationChange.id))
    return list(rows.all())


async def trial_windows(session: AsyncSession, patient_id: int) -> list[Window]:
    """The patient's trials as (start, end) windows, for the measures' baselines."""
    return openings(await changes_of(session, patient_id))[1]


async def patient_trials(session: AsyncSession, actor: Actor, patient_id: int, *,
                         now: datetime) -> PatientTrials:
    """The patient's medication trials, each with its baseline and latest scores."""
    await access_patient(session, actor, patient_id, now=now)
    changes = await changes_of(session, patient_id)
    rows = (await session.scalars(select(MeasureResult).where(
        MeasureResult.patient_id == patient_id, MeasureResult.instrument.in_(MEASURED),
        MeasureResult.total.is_not(None)).order_by(MeasureResult.at, MeasureResult.id))).all()
    scores: dict[MeasuredInstrument, list[tuple[datetime, int]]] = {i: [] for i in MEASURED}
    for row in rows:
        instrument = row.instrument
        if instrument in ("phq9", "gad7") and row.total is not None:
            scores["phq9" if instrument == "phq9" else "gad7"].append((row.at, row.total))
    result = derive(changes, scores, patient_id=patient_id, now=now)
    audit.record(session, actor, "read", "medication_trials", patient_id,
                 patient_id=patient_id, count=len(result.trials))
    return result
