"""The program's substance-use track and medications for opioid use disorder (MOUD).

- The substance-use track is a setting per patient, set by the care team: a patient in
  it is asked the Brief Addiction Monitor monthly at check-in (``server.checkins``).
- MOUD is what the medication catalogue marks ``opioid_use_disorder``
  (``server/medication_catalogue.toml``: buprenorphine, methadone, naltrexone).
  Days in continuous treatment, for the 180-day retention measure (NQF #3175,
  "Continuity of pharmacotherapy for opioid use disorder"): the days since the start of
  the current run of MOUD on the patient's medication list, where the list is the
  record of what was prescribed and a gap of up to 7 days between one MOUD's stop and
  the next one's start does not break the run (a gap of more than 7 days does).
- Outreach: a patient on MOUD who misses a visit (no-show) and has nothing rebooked
  within 7 days is a ``step_up`` escalation for the coordinators. The no-show leaves a
  ``moud_outreach`` timer due 7 days after the missed visit's time; booking any visit
  cancels it; the escalation workflow fires it (``escalation.moud_outreach``), once.

Sources and the choices made: docs/clinical.md, "Substance use".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.events import emit
from server.medication_catalogue import catalogue
from server.models import Medication, PatientProfile, Role, Timer, Visit
from server.results import Instant, Result

OUTREACH_TIMER: Final = "moud_outreach"
# "Nothing rebooked within 7 days" of the missed visit.
REBOOK_WITHIN: Final = timedelta(days=7)
# A gap longer than this between MOUD on the list ends a run of continuous treatment.
MAX_GAP: Final = timedelta(days=7)
RETENTION_DAYS: Final = 180


class TrackBody(BaseModel):
    """``PUT /api/v1/patients/{patient_id}/substance-use-track``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    on: bool


class SubstanceUseTrack(Result):
    patient_id: int
    on: bool


async def set_track(session: AsyncSession, actor: Actor, patient_id: int, *, on: bool,
                    now: datetime) -> SubstanceUseTrack:
    """Put the patient in the substance-use track, or take them out (the care team)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient(session, actor, patient_id, now=now)
    profile = await session.get(PatientProfile, patient_id)
    if profile is None:
        profile = PatientProfile(user_id=patient_id)
        session.add(profile)
    was = bool(profile.substance_use_track)
    profile.substance_use_track = on
    audit.record(session, actor, "update", "substance_use_track", patient_id,
                 patient_id=patient_id, on=on, was=was)
    emit(session, "patient.substance_use_track", await care_team_ids(session, patient_id),
         patient_id=patient_id, on=on)
    return SubstanceUseTrack(patient_id=patient_id, on=on)


# --- MOUD -----------------------------------------------------------------------------


def is_moud(drug: str) -> bool:
    # Medications for opioid use disorder only (NQF #3175), not every Part 2 medication:
    # acamprosate or disulfiram on the list is not MOUD treatment.
    return catalogue().is_for_opioid_use_disorder(drug)


class Retention(Result):
    """The current run of continuous MOUD treatment."""

    since: Instant
    days: int
    retained: bool  # at least RETENTION_DAYS days


def continuous_since(spans: Iterable[tuple[datetime, datetime | None]],
                     now: datetime) -> datetime | None:
    """The start of the run of treatment that reaches ``now``, from the spans MOUD was on
    the list (start, stop or None while still on it); None when not in treatment now.
    Spans that overlap, or are apart by at most ``MAX_GAP``, are one run."""
    run_start: datetime | None = None
    run_end: datetime | None = None
    for start, stop in sorted(spans, key=lambda span: span[0]):
        end = now if stop is None else min(stop, now)
        if run_end is not None and start - run_end <= MAX_GAP:
            run_end = max(run_end, end)
        else:
            run_start, run_end = start, end
    if run_start is None or run_end is None or run_end < now:
        return None
    return run_start


def retention(medications: Sequence[Medication], now: datetime) -> Retention | None:
    """Days in continuous MOUD treatment, or None when the patient is not on MOUD."""
    moud = [m for m in medications if is_moud(m.drug)]
    if not any(m.active for m in moud):
        return None
    since = continuous_since(
        [(m.started_at, None if m.active else (m.stopped_at or m.changed_at)) for m in moud],
        now)
    if since is None:
        return None
    days = (now - since).days
    return Retention(since=since, days=days, retained=days >= RETENTION_DAYS)


async def moud_medications(session: AsyncSession, patient_id: int) -> list[Medication]:
    rows = await session.scalars(select(Medication).where(Medication.patient_id == patient_id))
    return [m for m in rows.all() if is_moud(m.drug)]


async def on_moud(session: AsyncSession, patient_id: int) -> bool:
    return any(m.active for m in await moud_medications(session, patient_id))


async def plan_outreach(session: AsyncSession, visit: Visit, now: datetime) -> Timer | None:
    """At a no-show: if the patient is on MOUD, the outreach timer, due 7 days after the
    missed visit's time (so a no-show recorded late is not given 7 more days)."""
    if not await on_moud(session, visit.patient_id):
        return None
    timer = Timer(kind=OUTREACH_TIMER, subject_id=visit.patient_id,
                  due_at=max(visit.scheduled_at + REBOOK_WITHIN, now), created_at=now,
                  data={"visit_id": visit.id, "missed_at": visit.scheduled_at.isoformat()})
    session.add(timer)
    return timer


async def cancel_outreach(session: AsyncSession, patient_id: int, now: datetime) -> None:
    """A visit was booked: no outreach is due for an earlier no-show."""
    await session.execute(
        update(Timer).where(Timer.kind == OUTREACH_TIMER, Timer.subject_id == patient_id,
                            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
        .values(cancelled_at=now).execution_options(synchronize_session=False))
