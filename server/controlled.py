"""Controlled substances by telehealth: the catalogue and the rules a sign must meet.

CLINICAL.md, "Controlled substances by telehealth (US, December 2026)"; the sources of
each rule are in docs/clinical.md, "Controlled substances by telehealth". Signing a note
whose medication changes start or change a Schedule II-V medication (the schedules and
``moud`` come from the one medication catalogue, ``medication_catalogue.toml``, reviewed
data read by server.medication_catalogue) requires:

- the state the patient confirmed for this visit (``CheckIn.location_state``), the
  signer licensed there and DEA-registered there, neither expired (licensure);
- a PDMP check recorded for this visit in that state before prescribing (90 FR 6504,
  42 CFR 12.3(b)(1): "review such data regarding any controlled medication
  prescriptions issued to the patient in the last year"; the past year is what the
  review covers, and the review comes before this prescription, so a check recorded for
  an earlier visit does not count however recent);
- a days' supply on each such change; with the PDMP "unavailable", buprenorphine at most
  7 days per prescription (90 FR 6504);
- after the telemedicine flexibilities end (``MENDWELL_TELEMEDICINE_FLEXIBILITIES_END``,
  2026-12-31, 90 FR 61301): the signer's in-person evaluation of the patient (Ryan
  Haight Act, 21 U.S.C. 829(e)), except buprenorphine for OUD under 90 FR 6504, for at
  most six calendar months from its first telemedicine prescription, six months' supply
  in total.

Any note marked audio-only needs the reason video was not possible.

``rule_gaps`` is the rules as a pure function of the facts (the unit tests hold it to
the numbers); ``check_signing`` gathers the facts and refuses with 409
``controlled_substance_requirements`` listing what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.actors import Actor
from server.errors import Conflict
from server.freetext import MIN_LETTERS, letters
from server.medication_catalogue import Catalogue, CatalogueRules, Schedule, catalogue
from server.medications import DOSE_CHANGES, MedicationChangeRow
from server.models import CheckIn, MedicationChange, PdmpCheck, PrescriberCredential, Visit
from server.services import Services
from server.timezones import clinic_zone, local_date
from server.us_states import state_name

PdmpResult = Literal["reviewed", "unavailable"]
# A note's medication changes that prescribe: starting, switching to, or changing the
# dose of a medication ("starts or changes"). Stop and continue issue nothing new.
PRESCRIBING: Final = DOSE_CHANGES


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months, on the last day of a shorter month (Aug 31 + 6
    months is Feb 28 or 29)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Credential:
    state: str
    license_expires_on: date | None
    dea: bool
    dea_expires_on: date | None


@dataclass(frozen=True)
class Prescription:
    """One change of the note that prescribes a controlled medication."""

    index: int
    drug: str
    schedule: Schedule
    moud: bool
    days_supply: int | None


@dataclass(frozen=True)
class Facts:
    today: date  # the clinic's date when signing
    flexibilities_end: date
    patient_state: str | None
    credentials: Mapping[str, Credential]
    # The latest PDMP check recorded for this visit in the patient's state.
    pdmp: PdmpResult | None
    prescriptions: Sequence[Prescription]
    in_person_evaluated_on: date | None
    # MOUD prescribed by telemedicine after the flexibilities ended, before this note:
    # the first one's date and the days' supply of all.
    moud_first_on: date | None
    moud_days_before: int
    audio_only: bool
    audio_only_reason: str


class Gap(_Strict):
    """One thing a sign still needs."""

    code: str
    text: str
    field: str | None = None


def rule_gaps(facts: Facts, rules: CatalogueRules) -> list[Gap]:
    """What the rules still need before this note can be signed (none: it may be)."""
    gaps: list[Gap] = []
    if facts.audio_only and letters(facts.audio_only_reason.strip()) < MIN_LETTERS:
        gaps.append(Gap(code="audio_only_reason", field="sections.audio_only_reason",
                        text="Say why video was not possible for this audio-only visit "
                             "(at least 10 letters)."))
    if not facts.prescriptions:
        return gaps
    state = facts.patient_state
    if state is None:
        gaps.append(Gap(code="patient_state_unknown",
                        text="The state the patient is in for this visit is not known: "
                             "the patient confirms it in the location step."))
    else:
        name = state_name(state)
        held = facts.credentials.get(state)
        if held is None or (held.license_expires_on is not None
                            and held.license_expires_on < facts.today):
            gaps.append(Gap(code="not_licensed_in_state",
                            text=f"You have no current licence recorded in {name}, where "
                                 "the patient is."))
        if held is None or not held.dea or (held.dea_expires_on is not None
                                            and held.dea_expires_on < facts.today):
            gaps.append(Gap(code="no_dea_registration_in_state",
                            text=f"You have no current DEA registration recorded in {name}."))
        if facts.pdmp is None:
            gaps.append(Gap(code="pdmp_check_missing",
                            text=f"Check the {name} PDMP (the patient's controlled "
                                 "prescriptions of the past year) and record it for this "
                                 "visit."))
    after_flexibilities = facts.today > facts.flexibilities_end
    evaluated = facts.in_person_evaluated_on is not None \
        and facts.in_person_evaluated_on <= facts.today
    moud_days = 0
    for rx in facts.prescriptions:
        field = f"medication_changes.{rx.index}.days_supply"
        if rx.days_supply is None:
            gaps.append(Gap(code="days_supply_missing", field=field,
                            text=f"Give the days' supply for {rx.drug}."))
            continue
        limit = rules.pdmp_unavailable_max_days_supply
        if rx.moud and facts.pdmp == "unavailable" and rx.days_supply > limit:
            gaps.append(Gap(code="pdmp_unavailable_supply_limit", field=field,
                            text=f"With the PDMP unavailable, {rx.drug} is limited to a "
                                 f"{limit}-day supply per prescription."))
        if not after_flexibilities or evaluated:
            continue
        if not rx.moud:
            gaps.append(Gap(code="in_person_evaluation_required",
                            field="sections.in_person_evaluated_on",
                            text=f"Since the telemedicine flexibilities ended on "
                                 f"{facts.flexibilities_end.isoformat()}, {rx.drug} "
                                 "(Schedule " + rx.schedule + ") needs your in-person "
                                 "evaluation of the patient first."))
            continue
        first = facts.moud_first_on or facts.today
        window_end = add_months(first, rules.moud_telemedicine_months)
        moud_days += rx.days_supply
        if facts.today >= window_end or \
                facts.moud_days_before + moud_days > (window_end - first).days:
            gaps.append(Gap(code="moud_telemedicine_limit", field=field,
                            text=f"{rx.drug} by telemedicine without an in-person "
                                 f"evaluation is limited to {rules.moud_telemedicine_months}"
                                 f" months' supply in total from {first.isoformat()} "
                                 f"(until {window_end.isoformat()})."))
    return gaps


def prescriptions_of(rows: Sequence[MedicationChangeRow],
                     found: Catalogue) -> list[Prescription]:
    out = []
    for index, row in enumerate(rows):
        entry = found.find(row.drug)
        if row.action in PRESCRIBING and entry is not None and entry.schedule is not None:
            out.append(Prescription(index=index, drug=row.drug, schedule=entry.schedule,
                                    moud=entry.moud, days_supply=row.days_supply))
    return out


def clinic_date(services: Services, now: datetime) -> date:
    return local_date(now, clinic_zone(services.settings))


async def credentials_of(session: AsyncSession, prescriber_id: int) -> dict[str, Credential]:
    rows = (await session.scalars(select(PrescriberCredential).where(
        PrescriberCredential.prescriber_id == prescriber_id))).all()
    return {r.state: Credential(state=r.state, license_expires_on=r.license_expires_on,
                                dea=bool(r.dea_number), dea_expires_on=r.dea_expires_on)
            for r in rows}


async def _moud_before(session: AsyncSession, services: Services, patient_id: int,
                       since: date, found: Catalogue) -> tuple[date | None, int]:
    """MOUD prescribed to the patient by signed notes after ``since`` (the flexibilities'
    end): the first one's clinic date and the days' supply of all."""
    changes = (await session.scalars(select(MedicationChange).where(
        MedicationChange.patient_id == patient_id,
        MedicationChange.action.in_(PRESCRIBING)).order_by(MedicationChange.at))).all()
    first: date | None = None
    days = 0
    for change in changes:
        entry = found.find(str(change.detail.get("drug") or ""))
        on = clinic_date(services, change.at)
        if entry is None or not entry.moud or on <= since:
            continue
        first = first or on
        supply = change.detail.get("days_supply")
        days += supply if isinstance(supply, int) else 0
    return first, days


def _date_or_none(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def signing_gaps(session: AsyncSession, services: Services, actor: Actor,
                       visit: Visit, sections: Mapping[Any, str],
                       rows: Sequence[MedicationChangeRow]) -> list[Gap]:
    """The facts for ``rule_gaps`` of this note, as the signer (``actor``) would sign it."""
    found = catalogue()
    now = services.clock.now()
    today = clinic_date(services, now)
    prescriptions = prescriptions_of(rows, found)
    state = await session.scalar(select(CheckIn.location_state).where(
        CheckIn.visit_id == visit.id))
    pdmp = None
    if state and prescriptions:
        pdmp = await session.scalar(select(PdmpCheck.result).where(
            PdmpCheck.visit_id == visit.id, PdmpCheck.state == state)
            .order_by(PdmpCheck.checked_at.desc(), PdmpCheck.id.desc()).limit(1))
    end = services.settings.telemedicine_flexibilities_end
    first, days = (None, 0)
    if any(p.moud for p in prescriptions):
        first, days = await _moud_before(session, services, visit.patient_id, end, found)
    facts = Facts(
        today=today, flexibilities_end=end, patient_state=state,
        credentials=await credentials_of(session, actor.user_id) if prescriptions else {},
        pdmp="reviewed" if pdmp == "reviewed" else "unavailable" if pdmp else None,
        prescriptions=prescriptions,
        in_person_evaluated_on=_date_or_none(sections.get("in_person_evaluated_on", "")),
        moud_first_on=first, moud_days_before=days,
        audio_only=sections.get("visit_mode") == "audio_only",
        audio_only_reason=sections.get("audio_only_reason", ""))
    return rule_gaps(facts, found.rules)


async def check_signing(session: AsyncSession, services: Services, actor: Actor,
                        visit: Visit, sections: Mapping[Any, str],
                        rows: Sequence[MedicationChangeRow]) -> None:
    """The signing gate's controlled-substance part: 409
    ``controlled_substance_requirements`` with every gap (``missing``), or nothing."""
    gaps = await signing_gaps(session, services, actor, visit, sections, rows)
    if gaps:
        # What is missing goes in `missing`, not in the message (messages carry no
        # clinical content).
        raise Conflict("This note cannot be signed yet: the rules for prescribing "
                       "controlled substances by telehealth are not met.",
                       code="controlled_substance_requirements", field=gaps[0].field,
                       extra={"missing": [g.model_dump(mode="json") for g in gaps]})
