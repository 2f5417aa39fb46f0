"""The one step through which a patient's record leaves the program.

Every way out (a FHIR export to a recipient, a referral packet, a guest admitted to a
visit, a medical emergency) comes here. For each piece of data it asks ``server.part2``
whether it is a substance use disorder record; if it is, it goes only when a consent
covers this recipient and this purpose (``server.consents.covering``) and is labelled
and sent with the 42 CFR 2.32 notice, and the disclosure is recorded once for the
patient's accounting (``Part2Disclosure``). A medical emergency (42 CFR 2.51) needs no
consent and records the emergency instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, consents, counseling_notes, fhir
from server.access import access_escalation, access_patient_consents, require_role
from server.actors import Actor
from server.consents import Purpose, fhir_consent
from server.errors import ValidationFailed
from server.events import emit
from server.freetext import require_letters
from server.models import Part2Consent, Part2Disclosure, Role, User
from server.part2 import NO_REDISCLOSURE, NOTICE, Category, rules
from server.results import Instant, Person, Result
from server.timezones import local_date

RecipientKind = Literal["treating_providers", "payers", "operations", "other"]
Channel = Literal["fhir_export", "referral_packet", "visit_guest", "medical_emergency"]


class Recipient(BaseModel):
    """Who receives a disclosure: a person or organisation, and the class a TPO consent
    names ("other" for anyone a TPO consent does not cover)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    affiliation: str | None = Field(default=None, max_length=200)
    recipient_class: RecipientKind

    @field_validator("name", "affiliation")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None


class FhirDisclosureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient: Recipient
    purpose: Purpose


class Disclosure(Result):
    id: int
    patient: Person
    at: Instant
    channel: Channel
    recipient_name: str
    recipient_affiliation: str | None
    recipient_class: str | None
    purpose: str
    description: str
    categories: list[str]
    consent_id: int | None
    basis: Literal["consent", "medical_emergency"]
    disclosed_by: Person
    emergency_nature: str | None
    escalation_id: int | None
    visit_id: int | None


class Released(Result):
    """What a disclosure step let out: the categories that went (each with the consent it
    rested on) and those held back for want of one."""

    released: dict[str, int]
    withheld: list[str]
    disclosure: Disclosure | None


async def decide(session: AsyncSession, patient_id: int, present: set[Category], *,
                 recipient: Recipient, purpose: str,
                 now: datetime, zone: str) -> tuple[dict[Category, Part2Consent], list[str]]:
    """For each Part 2 category present, the consent it may go under, or withheld."""
    found = await consents.of_patient(session, patient_id)
    today = local_date(now, zone)
    released: dict[Category, Part2Consent] = {}
    withheld: list[str] = []
    for category in sorted(present):
        consent = consents.covering(found, category=category, purpose=purpose,
                                    recipient_class=recipient.recipient_class
                                    if recipient.recipient_class != "other" else None,
                                    recipient_name=recipient.name, today=today)
        if consent is None:
            withheld.append(category)
        else:
            released[category] = consent
    return released, withheld


def describe(categories: Iterable[str]) -> str:
    """The accounting's description of what went: the categories' plain names."""
    part2 = rules()
    return "; ".join(part2.label(c) for c in sorted(categories))  # type: ignore[arg-type]


async def record(session: AsyncSession, actor: Actor, patient_id: int, *, channel: Channel,
                 recipient: Recipient, purpose: str, categories: list[str],
                 consent_id: int | None, now: datetime, description: str | None = None,
                 emergency_nature: str | None = None, escalation_id: int | None = None,
                 visit_id: int | None = None,
                 content: dict[str, Any] | None = None) -> Disclosure:
    """One row of the accounting of disclosures, with its audit entry and event;
    ``content`` is what went, kept to print again (a referral packet)."""
    row = Part2Disclosure(
        patient_id=patient_id, at=now, channel=channel, recipient_name=recipient.name,
        recipient_affiliation=recipient.affiliation,
        recipient_class=recipient.recipient_class, purpose=purpose,
        description=description or describe(categories), categories=sorted(categories),
        consent_id=consent_id, disclosed_by_id=actor.user_id,
        emergency_nature=emergency_nature, escalation_id=escalation_id, visit_id=visit_id,
        content=content)
    session.add(row)
    await session.flush()
    audit.record(session, actor, "disclose", "disclosure", row.id, patient_id=patient_id,
                 at=now, channel=channel, consent_id=consent_id)
    emit(session, "disclosure.recorded", {patient_id}, patient_id=patient_id,
         disclosure_id=row.id)
    return await _result(session, row)


async def _result(session: AsyncSession, row: Part2Disclosure) -> Disclosure:
    patient = await session.get(User, row.patient_id)
    by = await session.get(User, row.disclosed_by_id)
    assert patient is not None and by is not None
    return Disclosure(
        id=row.id, patient=Person(id=patient.id, name=patient.name), at=row.at,
        channel=row.channel,
        recipient_name=row.recipient_name, recipient_affiliation=row.recipient_affiliation,
        recipient_class=row.recipient_class, purpose=row.purpose,
        description=row.description, categories=list(row.categories),
        consent_id=row.consent_id,
        basis="medical_emergency" if row.channel == "medical_emergency" else "consent",
        disclosed_by=Person(id=by.id, name=by.name), emergency_nature=row.emergency_nature,
        escalation_id=row.escalation_id, visit_id=row.visit_id)


async def export_fhir(session: AsyncSession, actor: Actor, patient_id: int,
                      body: FhirDisclosureBody, *, now: datetime, zone: str,
                      organization: str) -> tuple[dict[str, Any], Released]:
    """The patient's record as a FHIR Bundle for someone outside the program.

    What Part 2 does not cover goes as it is; a Part 2 resource goes only under a consent
    covering this recipient and purpose, labelled, with the consent itself and the
    2.32 notice in the Bundle; the rest is left out. One accounting row when anything of
    Part 2 went.
    """
    require_role(actor, Role.prescriber, Role.coordinator)
    await access_patient_consents(session, actor, patient_id, write=True, now=now)
    found = await fhir.record_entries(session, patient_id)
    # Counseling notes are offered too: only a consent for them alone lets them go.
    found += [("sud_counseling_notes", entry)
              for entry in await counseling_notes.fhir_entries(session, patient_id)]
    present = {category for category, _ in found if category is not None}
    released, withheld = await decide(session, patient_id, present,
                                      recipient=body.recipient, purpose=body.purpose,
                                      now=now, zone=zone)
    entries = [entry if category is None else fhir.labelled(entry)
               for category, entry in found if category is None or category in released]
    entries += await consent_entries(session, released, now=now, zone=zone,
                                     organization=organization)
    disclosure = None
    if released:
        main = main_consent(released)
        disclosure = await record(session, actor, patient_id, channel="fhir_export",
                                  recipient=body.recipient, purpose=body.purpose,
                                  categories=list(released),
                                  consent_id=main.id if main else None, now=now)
    audit.record(session, actor, "export_fhir", "measures", patient_id, patient_id=patient_id,
                 at=now, count=len(entries), withheld=withheld)
    return fhir.bundle_of(entries, **notice_meta(released)), Released(
        released={c: v.id for c, v in released.items()}, withheld=withheld,
        disclosure=disclosure)


# Where the 2.32 notice sits in a Bundle (its meta): FHIR R4 has no element for it.
NOTICE_EXTENSION = "urn:mendwell:fhir:42cfr2.32-notice"


async def consent_entries(session: AsyncSession, released: dict[Category, Part2Consent], *,
                          now: datetime, zone: str,
                          organization: str) -> list[dict[str, Any]]:
    """The consents a disclosure rests on, as FHIR ``Consent`` entries of its Bundle."""
    today = local_date(now, zone)
    return [{"fullUrl": f"urn:mendwell:consent:{consent.id}",
             "resource": fhir_consent(await consents.result_of(session, consent, today),
                                      organization)}
            for consent in {c.id: c for c in released.values()}.values()]


def notice_meta(released: dict[Category, Part2Consent]) -> dict[str, Any]:
    """The Bundle's meta when Part 2 data went: no redisclosure, and the 2.32 notice (a
    Bundle has no extensions of its own; its meta, an Element, may)."""
    if not released:
        return {}
    return {"meta": {"security": [NO_REDISCLOSURE],
                     "extension": [{"url": NOTICE_EXTENSION, "valueString": NOTICE}]}}


def main_consent(released: dict[Category, Part2Consent]) -> Part2Consent | None:
    """The consent the accounting names for a disclosure: the one that let most go."""
    return max(released.values(),
               key=lambda c: sum(1 for v in released.values() if v.id == c.id), default=None)


class EmergencyBody(BaseModel):
    """A disclosure to medical personnel in a medical emergency (42 CFR 2.51(c))."""

    model_config = ConfigDict(extra="forbid")

    recipient_name: str = Field(min_length=1, max_length=200)
    affiliation: str = Field(min_length=1, max_length=200)
    nature: str = Field(min_length=1, max_length=2000)
    disclosed_at: datetime | None = None
    # The escalation being handled, when there is one (its page offers this form).
    escalation_id: int | None = Field(default=None, ge=1)


async def record_emergency(session: AsyncSession, actor: Actor, patient_id: int | None,
                           body: EmergencyBody, *, now: datetime,
                           escalation_id: int | None = None) -> Disclosure:
    """Who received it, their affiliation, when, the nature of the emergency and who
    disclosed (the actor): 2.51(c). No consent is needed or looked for.

    Tied to an escalation, it is recorded by whoever may act on that escalation (on-call
    staff included, who may not be on the patient's care team); otherwise by the care
    team."""
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation_id = escalation_id or body.escalation_id
    if escalation_id is not None:
        escalation = await access_escalation(session, actor, escalation_id, write=True,
                                             now=now)
        if patient_id is not None and patient_id != escalation.patient_id:
            raise ValidationFailed("That escalation is another patient's.",
                                   field="escalation_id")
        patient_id = escalation.patient_id
    else:
        if patient_id is None:
            raise ValidationFailed("Name the patient.", field="patient_id")
        await access_patient_consents(session, actor, patient_id, write=True, now=now)
    nature = require_letters(body.nature, "nature", what="the nature of the emergency")
    when = body.disclosed_at or now
    if when > now + timedelta(minutes=5):
        raise ValidationFailed("A disclosure cannot be recorded in the future.",
                               field="disclosed_at")
    recipient = Recipient(name=body.recipient_name, affiliation=body.affiliation,
                          recipient_class="other")
    return await record(session, actor, patient_id, channel="medical_emergency",
                        recipient=recipient, purpose="medical_emergency",
                        categories=["sud_measures", "sud_checkin", "moud"],
                        consent_id=None, now=when, emergency_nature=nature,
                        escalation_id=escalation_id,
                        description="Substance use information needed to treat a medical "
                                    "emergency")


async def of_escalation(session: AsyncSession, escalation_id: int) -> list[Disclosure]:
    """The emergency disclosures recorded for an escalation (its page, whose reader's
    access to the escalation is already checked)."""
    rows = (await session.scalars(select(Part2Disclosure).where(
        Part2Disclosure.escalation_id == escalation_id).order_by(Part2Disclosure.at))).all()
    return [await _result(session, row) for row in rows]


async def accounting(session: AsyncSession, actor: Actor, patient_id: int, *,
                     now: datetime) -> list[Disclosure]:
    """The patient's disclosures of the past ``retention_years`` (3), newest first."""
    await access_patient_consents(session, actor, patient_id, now=now)
    since = now - timedelta(days=365 * rules().retention_years + 1)
    rows = (await session.scalars(select(Part2Disclosure).where(
        Part2Disclosure.patient_id == patient_id, Part2Disclosure.at >= since)
        .order_by(Part2Disclosure.at.desc(), Part2Disclosure.id.desc()))).all()
    audit.record_reads(session, actor, "disclosure", [(r.id, patient_id) for r in rows])
    return [await _result(session, row) for row in rows]
