"""Medication trials (server/trials.py): which changes open a trial, each trial's
baseline, and the judgements of its latest score, to the numbers in CLINICAL.md."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.measures import MeasuredInstrument
from server.models import MedicationChange
from server.psychotropics import is_psychotropic, opens_trial, psychotropics
from server.trials import derive

START = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def change(medication_id: int, action: str, at: datetime, **detail: Any) -> MedicationChange:
    return MedicationChange(medication_id=medication_id, patient_id=1, note_id=None,
                            action=action, at=at, by_id=2, reason=None, detail=detail)


def days(n: float) -> datetime:
    return START + timedelta(days=n)


def trials_of(changes: Sequence[MedicationChange], phq9: Sequence[tuple[float, int]] = (),
              gad7: Sequence[tuple[float, int]] = (), now: float = 70) -> Any:
    scores: dict[MeasuredInstrument, list[tuple[datetime, int]]] = {
        "phq9": [(days(d), t) for d, t in phq9], "gad7": [(days(d), t) for d, t in gad7]}
    return derive(changes, scores, patient_id=1, now=days(now))


SERTRALINE = [change(1, "start", START, drug="sertraline", dose="50", unit="mg")]


def test_the_vocabulary_is_reviewed_data() -> None:
    assert {"antidepressant", "antipsychotic", "mood_stabilizer"} <= set(psychotropics().classes)
    assert opens_trial("Sertraline")
    assert opens_trial("Zoloft 50")
    assert opens_trial("lithium carbonate")
    assert not opens_trial("metformin") and not is_psychotropic("metformin")
    # MOUD is followed with the BAM, not PHQ-9 (medication_catalogue.toml says why); its
    # side effects still make FIBSER ask.
    assert not opens_trial("buprenorphine") and is_psychotropic("buprenorphine")


def test_baseline_is_the_last_score_before_the_start() -> None:
    found = trials_of(SERTRALINE, phq9=[(-20, 20), (-3, 18), (14, 15), (42, 8)])
    (trial,) = found.trials
    phq9 = trial.measure("phq9")
    assert phq9.baseline.total == 18 and phq9.baseline.at == days(-3)
    assert phq9.baseline_before_start
    assert (phq9.latest.total, phq9.change) == (8, -10)
    assert phq9.improvement_percent == 55
    assert phq9.response and not phq9.partial_response and not phq9.remission
    assert phq9.reliable_change == "reliable_recovery"
    assert trial.current and trial.weeks_in_trial == 10 and trial.days_in_trial == 70
    assert [e.label for e in trial.events] == ["Start sertraline 50 mg"]


def test_baseline_is_the_first_score_when_none_came_before() -> None:
    found = trials_of(SERTRALINE, phq9=[(2, 16), (30, 9)])
    phq9 = found.trials[0].measure("phq9")
    assert phq9.baseline.total == 16 and not phq9.baseline_before_start
    assert phq9.latest.total == 9
    assert phq9.reliable_change == "reliable_recovery"
    assert phq9.partial_response and not phq9.response


def test_a_single_score_gives_no_judgement() -> None:
    phq9 = trials_of(SERTRALINE, phq9=[(1, 3)]).trials[0].measure("phq9")
    assert phq9.baseline.total == 3 and phq9.latest is None
    assert not (phq9.remission or phq9.response or phq9.not_on_track)
    assert phq9.reliable_change is None and phq9.change is None


def test_a_score_before_the_start_only_is_a_baseline_with_nothing_to_judge() -> None:
    phq9 = trials_of(SERTRALINE, phq9=[(-1, 20)]).trials[0].measure("phq9")
    assert phq9.baseline.total == 20 and phq9.latest is None and not phq9.not_on_track


def test_a_dose_change_opens_a_new_trial_with_its_own_baseline() -> None:
    changes = [*SERTRALINE, change(1, "increase", days(35), drug="sertraline", dose="100",
                                   unit="mg")]
    found = trials_of(changes, phq9=[(-2, 20), (28, 16), (56, 8)], now=60)
    first, second = found.trials
    assert first.ended_at == days(35) and not first.current
    assert first.measure("phq9").latest.total == 16
    assert first.weeks_in_trial == 5
    assert second.current and second.measure("phq9").baseline.total == 16
    assert second.measure("phq9").change == -8
    assert second.measure("phq9").response
    assert found.current is second
    assert [e.label for e in second.events] == ["Increase sertraline 100 mg"]


@pytest.mark.parametrize(("now", "prompt"), [(42, True), (41, False),
                                             (42 - 1 / 86400, False), (60, True)])
def test_not_on_track_after_six_weeks(now: float, prompt: bool) -> None:
    # 20 -> 16 is a 20 % improvement.
    found = trials_of(SERTRALINE, phq9=[(-1, 20), (40, 16)], now=now)
    assert found.trials[0].measure("phq9").not_on_track is prompt


@pytest.mark.parametrize(("latest", "prompt"), [(15, False), (16, True)])
def test_not_on_track_is_under_a_quarter(latest: int, prompt: bool) -> None:
    found = trials_of(SERTRALINE, phq9=[(-1, 20), (42, latest)], now=42)
    assert found.trials[0].measure("phq9").not_on_track is prompt


def test_gad7_reliable_change_in_a_trial() -> None:
    gad = trials_of(SERTRALINE, gad7=[(-1, 12), (30, 8)]).trials[0].measure("gad7")
    assert gad.reliable_change == "reliable_improvement"  # 4 points, still at caseness 8
    gad = trials_of(SERTRALINE, gad7=[(-1, 12), (30, 9)]).trials[0].measure("gad7")
    assert gad.reliable_change == "no_reliable_change"  # 3 points


def test_a_non_psychotropic_opens_no_trial() -> None:
    found = trials_of([change(1, "start", START, drug="metformin", dose="500")],
                      phq9=[(-1, 20), (30, 5)])
    assert found.trials == () and found.current is None and found.medication_events == ()


def test_a_switch_is_one_trial_and_one_mark() -> None:
    changes = [*SERTRALINE,
               change(1, "stop", days(30), switched_to="escitalopram"),
               change(2, "switch", days(30), drug="escitalopram", dose="10", unit="mg",
                      replaces="sertraline")]
    found = trials_of(changes, phq9=[(-1, 18), (28, 17), (60, 9)])
    assert len(found.trials) == 2
    assert [e.label for e in found.trials[1].events] == [
        "Switch to escitalopram 10 mg (from sertraline)"]
    assert found.trials[1].measure("phq9").baseline.total == 17
    assert [m.label for m in found.medication_events] == [
        "Start sertraline 50 mg", "Switch to escitalopram 10 mg (from sertraline)"]


def test_changes_in_one_note_open_one_trial() -> None:
    changes = [*SERTRALINE, change(2, "start", START, drug="quetiapine", dose="25",
                                   unit="mg")]
    (trial,) = trials_of(changes).trials
    assert [e.drug for e in trial.events] == ["sertraline", "quetiapine"]


def test_stopping_the_trials_medication_ends_it() -> None:
    changes = [*SERTRALINE, change(1, "stop", days(20), drug="sertraline")]
    found = trials_of(changes, phq9=[(-1, 20), (10, 15), (30, 4)])
    (trial,) = found.trials
    assert trial.ended_at == days(20) and found.current is None
    # The score after the stop is not the trial's.
    assert trial.measure("phq9").latest.total == 15
    assert trial.days_in_trial == 20
    assert [m.action for m in found.medication_events] == ["start", "stop"]
