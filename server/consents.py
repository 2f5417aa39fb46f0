"""Part 2 consents: signed by the patient on their own pages or recorded from paper by
staff, revoked in writing, never edited (42 CFR 2.31).

A consent holds the elements 2.31(a) requires: the patient, who may disclose (the
program), what (the categories of ``server.part2``), to whom (a named recipient, or for a
TPO consent the classes "my treating providers", "payers", "people who run the
program"), the purpose, the right to revoke (the form says it; revoking is one action
here), an expiry date or event, and the signature (the typed full name) with its date.

Which consent covers a disclosure is decided here (``covering``); ``server.disclosures``
is the one step through which anything leaves the program.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_patient_consents, require_full_session, require_role
from server.actors import Actor
from server.errors import Conflict, NotFound, ValidationFailed
from server.events import emit
from server.models import Part2Consent, Role, User
from server.part2 import CATEGORIES, Category, rules
from server.results import Instant, Person, Result
from server.timezones import local_date

Purpose = Literal["treatment", "payment", "health_care_operations", "other"]
RecipientClass = Literal["treating_providers", "payers", "operations"]
ConsentKind = Literal["tpo", "specific", "counseling_notes", "guest"]

TPO_PURPOSES: frozenset[str] = frozenset({"treatment", "payment", "health_care_operations"})
# Under a TPO consent each class of recipient receives for its own purpose only.
CLASS_PURPOSE: dict[str, str] = {"treating_providers": "treatment", "payers": "payment",
                                 "operations": "health_care_operations"}
PURPOSE_LABELS: dict[str, str] = {
    "treatment": "Treatment", "payment": "Payment",
    "health_care_operations": "Running the program (health care operations)",
    "other": "Another purpose"}
# HL7 v3 ActReason codes for the purposes of use ("other" has none: its text says it).
ACT_REASON: dict[str, str] = {"treatment": "TREAT", "payment": "HPAYMT",
                              "health_care_operations": "HOPERAT"}
CLASS_LABELS: dict[str, str] = {
    "treating_providers": "My treating providers",
    "payers": "My health plan and others who pay for my care",
    "operations": "People who help run the program (health care operations)"}


class ConsentBody(BaseModel):
    """A consent as the patient signs it or as staff copy it from paper."""

    model_config = ConfigDict(extra="forbid", strict=False)

    kind: Literal["tpo", "specific", "counseling_notes"]
    categories: list[Category] = Field(min_length=1, max_length=len(CATEGORIES))
    recipient_classes: list[RecipientClass] = Field(default_factory=list, max_length=3)
    recipient_name: str | None = Field(default=None, max_length=200)
    purposes: list[Purpose] = Field(min_length=1, max_length=4)
    purpose_text: str | None = Field(default=None, max_length=500)
    expires_on: date | None = None
    expiry_event: str | None = Field(default=None, max_length=200)
    signed_name: str = Field(min_length=1, max_length=200)
    # Paper only: the date written on the form (a patient signing here signs today).
    signed_on: date | None = None

    @field_validator("recipient_name", "purpose_text", "expiry_event", "signed_name")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None


def check_elements(body: ConsentBody) -> None:
    """The elements 42 CFR 2.31(a) requires, each refused with the field to fix."""
    counseling = "sud_counseling_notes" in body.categories
    if body.kind == "counseling_notes" and body.categories != ["sud_counseling_notes"]:
        raise ValidationFailed("A consent for counseling notes covers those notes only "
                               "(42 CFR 2.31(b)).", field="categories")
    if counseling and body.kind != "counseling_notes":
        raise ValidationFailed("Counseling notes need a consent of their own.",
                               field="categories")
    if body.kind == "tpo":
        if not body.recipient_classes:
            raise ValidationFailed("Choose who may receive the records.",
                                   field="recipient_classes")
        if not set(body.purposes) <= TPO_PURPOSES:
            raise ValidationFailed("A TPO consent is for treatment, payment and health "
                                   "care operations only.", field="purposes")
    elif not body.recipient_name:
        raise ValidationFailed("Name who may receive the records.", field="recipient_name")
    if "other" in body.purposes and not body.purpose_text:
        raise ValidationFailed("Say what the other purpose is.", field="purpose_text")
    if body.expires_on is None and not body.expiry_event:
        raise ValidationFailed("Give the date or the event when the consent ends.",
                               field="expires_on")
    if not body.signed_name:
        raise ValidationFailed("Type your full name to sign.", field="signed_name")


class Consent(Result):
    id: int
    patient: Person
    form_version: int
    kind: ConsentKind
    categories: list[str]
    recipient_classes: list[str]
    recipient_name: str | None
    purposes: list[str]
    purpose_text: str | None
    expires_on: date | None
    expiry_event: str | None
    signed_name: str
    signed_on: date
    source: Literal["patient", "paper"]
    recorded_by: Person
    created_at: Instant
    visit_id: int | None
    guest_id: int | None
    revoked_at: Instant | None
    active: bool

    @property
    def recipient_text(self) -> str:
        if self.recipient_name:
            return self.recipient_name
        return "; ".join(CLASS_LABELS[c] for c in self.recipient_classes)

    @property
    def purpose_labels(self) -> list[str]:
        return [self.purpose_text or PURPOSE_LABELS[p] if p == "other" else PURPOSE_LABELS[p]
                for p in self.purposes]

    @property
    def category_labels(self) -> list[str]:
        return [rules().label(c) for c in self.categories]  # type: ignore[arg-type]


def is_active(consent: Part2Consent, today: date) -> bool:
    """Signed, not revoked, not past its expiry date. An expiry *event* ("when I leave
    the program") is ended by revoking on the patient's word; the program cannot see it
    happen, so until then the consent stands."""
    if consent.revoked_at is not None:
        return False
    return consent.expires_on is None or consent.expires_on >= today


def covers(consent: Part2Consent, *, category: str, purpose: str,
           recipient_class: str | None, recipient_name: str, today: date) -> bool:
    """Whether this consent lets this category go to this recipient for this purpose."""
    if not is_active(consent, today) or category not in consent.categories:
        return False
    if purpose not in consent.purposes:
        return False
    if consent.kind == "tpo":
        return recipient_class in consent.recipient_classes and \
            CLASS_PURPOSE.get(recipient_class or "") == purpose
    return consent.recipient_name is not None and \
        _same_name(consent.recipient_name, recipient_name)


def covering(consents: Iterable[Part2Consent], *, category: str, purpose: str,
             recipient_class: str | None, recipient_name: str,
             today: date) -> Part2Consent | None:
    """The consent a disclosure of ``category`` rests on: the most recent that covers
    it, or none."""
    found = [c for c in consents if covers(c, category=category, purpose=purpose,
                                           recipient_class=recipient_class,
                                           recipient_name=recipient_name, today=today)]
    return max(found, key=lambda c: (c.created_at, c.id)) if found else None


def _same_name(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().casefold()
    return norm(a) == norm(b)


async def result_of(session: AsyncSession, consent: Part2Consent, today: date) -> Consent:
    patient = await session.get(User, consent.patient_id)
    recorder = await session.get(User, consent.recorded_by_id)
    assert patient is not None and recorder is not None
    return Consent(
        id=consent.id, patient=Person(id=patient.id, name=patient.name),
        form_version=consent.form_version, kind=consent.kind,
        categories=list(consent.categories), recipient_classes=list(consent.recipient_classes),
        recipient_name=consent.recipient_name, purposes=list(consent.purposes),
        purpose_text=consent.purpose_text, expires_on=consent.expires_on,
        expiry_event=consent.expiry_event, signed_name=consent.signed_name,
        signed_on=consent.signed_on, source=consent.source,
        recorded_by=Person(id=recorder.id, name=recorder.name),
        created_at=consent.created_at, visit_id=consent.visit_id,
        guest_id=consent.guest_id, revoked_at=consent.revoked_at,
        active=is_active(consent, today))


async def sign(session: AsyncSession, actor: Actor, patient_id: int, body: ConsentBody, *,
               now: datetime, zone: str) -> Consent:
    """The patient signs a consent on their own page: the typed name must be theirs."""
    require_role(actor, Role.patient)
    patient = await access_patient_consents(session, actor, patient_id, write=True, now=now)
    require_full_session(actor)
    if not _same_name(body.signed_name or "", patient.name):
        raise ValidationFailed("Type your full name as it is on your account to sign.",
                               field="signed_name")
    today = local_date(now, zone)
    return await _store(session, actor, patient, body, source="patient", signed_on=today,
                        now=now, today=today)


async def record_paper(session: AsyncSession, actor: Actor, patient_id: int,
                       body: ConsentBody, *, now: datetime, zone: str) -> Consent:
    """Staff copy a consent the patient signed on paper (the paper is kept as the
    program keeps its records)."""
    require_role(actor, Role.prescriber, Role.coordinator)
    patient = await access_patient_consents(session, actor, patient_id, write=True, now=now)
    today = local_date(now, zone)
    if body.signed_on is None:
        raise ValidationFailed("Give the date written on the signed form.", field="signed_on")
    if body.signed_on > today:
        raise ValidationFailed("The form cannot be signed in the future.", field="signed_on")
    return await _store(session, actor, patient, body, source="paper",
                        signed_on=body.signed_on, now=now, today=today)


async def _store(session: AsyncSession, actor: Actor, patient: User, body: ConsentBody, *,
                 source: str, signed_on: date, now: datetime, today: date) -> Consent:
    check_elements(body)
    if body.expires_on is not None and body.expires_on < signed_on:
        raise ValidationFailed("The consent would end before it was signed.",
                               field="expires_on")
    consent = Part2Consent(
        patient_id=patient.id, form_version=rules().form_version, kind=body.kind,
        categories=list(dict.fromkeys(body.categories)),
        recipient_classes=list(dict.fromkeys(body.recipient_classes))
        if body.kind == "tpo" else [],
        recipient_name=body.recipient_name if body.kind != "tpo" else None,
        purposes=list(dict.fromkeys(body.purposes)), purpose_text=body.purpose_text,
        expires_on=body.expires_on, expiry_event=body.expiry_event,
        signed_name=body.signed_name, signed_on=signed_on, source=source,
        recorded_by_id=actor.user_id, created_at=now)
    session.add(consent)
    await session.flush()
    audit.record(session, actor, "create", "consent", consent.id, patient_id=patient.id,
                 at=now, kind=body.kind, source=source)
    emit(session, "consent.signed", {patient.id}, patient_id=patient.id,
         consent_id=consent.id)
    return await result_of(session, consent, today)


async def revoke(session: AsyncSession, actor: Actor, consent_id: int, *, now: datetime,
                 zone: str) -> Consent:
    """Stop a consent: no disclosure after this moment rests on it (42 CFR 2.31(a)(6)).
    The patient revokes their own; staff record a revocation the patient gave them."""
    consent = await session.get(Part2Consent, consent_id, with_for_update=True)
    if consent is None:
        raise NotFound(f"There is no consent {consent_id}.", field="consent_id")
    await access_patient_consents(session, actor, consent.patient_id, write=True, now=now)
    if actor.role is Role.patient:
        require_full_session(actor)
    if consent.revoked_at is not None:
        raise Conflict("This consent is already revoked.", code="already_revoked",
                       field="consent_id")
    consent.revoked_at = now
    consent.revoked_by_id = actor.user_id
    audit.record(session, actor, "revoke", "consent", consent.id,
                 patient_id=consent.patient_id, at=now)
    emit(session, "consent.revoked", {consent.patient_id}, patient_id=consent.patient_id,
         consent_id=consent.id)
    return await result_of(session, consent, local_date(now, zone))


async def list_for(session: AsyncSession, actor: Actor, patient_id: int, *, now: datetime,
                   zone: str) -> list[Consent]:
    await access_patient_consents(session, actor, patient_id, now=now)
    rows = (await session.scalars(select(Part2Consent).where(
        Part2Consent.patient_id == patient_id).order_by(Part2Consent.created_at.desc(),
                                                        Part2Consent.id.desc()))).all()
    audit.record_reads(session, actor, "consent", [(c.id, patient_id) for c in rows])
    today = local_date(now, zone)
    return [await result_of(session, c, today) for c in rows]


async def of_patient(session: AsyncSession, patient_id: int) -> Sequence[Part2Consent]:
    """Every consent of the patient, for the disclosure step (which checks access)."""
    return (await session.scalars(select(Part2Consent).where(
        Part2Consent.patient_id == patient_id))).all()


def fhir_consent(consent: Consent, organization: str) -> dict[str, object]:
    """The consent as a FHIR R4 ``Consent`` (scope ``patient-privacy``, a 42 CFR Part 2
    policy rule), for the patient's record and the referral packet."""
    provision: dict[str, object] = {
        "type": "permit",
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                     "code": ACT_REASON[p], "display": PURPOSE_LABELS[p]}
                    for p in consent.purposes if p in ACT_REASON],
        "class": [{"system": "urn:mendwell:part2-category", "code": c}
                              for c in consent.categories],
        "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP", "display": "information recipient"}]},
            "reference": {"display": consent.recipient_text}}],
    }
    if consent.expires_on is not None:
        provision["period"] = {"start": consent.signed_on.isoformat(),
                               "end": consent.expires_on.isoformat()}
    resource: dict[str, object] = {
        "resourceType": "Consent", "id": f"consent-{consent.id}",
        "status": "inactive" if consent.revoked_at else "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": f"Patient/{consent.patient.id}"},
        "dateTime": consent.created_at.isoformat(),
        "organization": [{"display": organization}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "42CFRPart2"}]},
        "provision": provision,
    }
    return resource
