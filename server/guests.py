"""Guests of a video visit: an interpreter or family member the prescriber invites.

A guest has no account. The invitation email carries a random token; the database keeps
only its SHA-256, and the guest presents the token when joining the visit's room.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, consents, disclosures
from server.access import access_visit, require_full_session, require_role
from server.accounts import care_team_ids
from server.actors import Actor
from server.auth import join_link_expiry
from server.errors import Conflict, NotFound, ValidationFailed
from server.events import emit
from server.models import Part2Consent, Part2Disclosure, Role, User, VisitGuest
from server.outbox import queue_email
from server.part2 import rules
from server.results import Instant, Result
from server.services import Services
from server.timezones import local_date
from server.visits import ENDED, VisitRecord


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Guest(Result):
    """An invited guest of a visit (never their token)."""

    id: int
    visit_id: int
    name: str
    email: str
    invited_at: Instant
    expires_at: Instant
    admitted_at: Instant | None


class GuestInvited(Guest):
    """A new guest, and the invitation email queued for them."""

    outbox_id: int


GuestState = Literal["invited", "admitted", "revoked", "expired"]


class GuestEntry(Guest):
    """A guest as the visit's guest list shows them: where their invitation stands."""

    revoked_at: Instant | None
    state: GuestState


def _guest(guest: VisitGuest) -> Guest:
    return Guest(id=guest.id, visit_id=guest.visit_id, name=guest.name, email=guest.email,
                 invited_at=guest.invited_at, expires_at=guest.expires_at,
                 admitted_at=guest.admitted_at)


async def invite_guest(
    session: AsyncSession, services: Services, actor: Actor, visit_id: int, *,
    name: str, email: str,
) -> GuestInvited:
    """Invite a guest into the visit and queue the email with their join link."""
    require_role(actor, Role.prescriber)
    require_full_session(actor)
    visit = await access_visit(session, actor, visit_id, write=True)
    if visit.status in ENDED:
        raise Conflict(f'Cannot invite a guest to a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    name, email = name.strip(), email.strip().lower()
    if not name:
        raise ValidationFailed("Enter the guest's name.", field="name")
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise ValidationFailed("Enter a valid email address.", field="email")
    now = services.clock.now()
    token = secrets.token_urlsafe(32)
    guest = VisitGuest(visit_id=visit.id, name=name, email=email, token_hash=token_hash(token),
                       invited_by_id=actor.user_id, invited_at=now,
                       expires_at=join_link_expiry(services, now, visit.scheduled_at))
    session.add(guest)
    await session.flush()
    link = f"{services.settings.base_url}/visits/{visit.id}/guest?t={token}"
    # Nothing about the patient or the reason for the visit: a guest's mailbox is not
    # part of the care team's record.
    outgoing = queue_email(
        session, to=email, kind="visit_guest_invite", now=now,
        subject="You are invited to a Mendwell video visit",
        body=(
            f"Hello {name},\n\n"
            "You have been invited to join a video visit as a guest. Open this link on "
            "your phone or computer at the time you were given. Nothing to install.\n\n"
            f"{link}\n\n"
            f"The link works until {services.settings.join_link_hours} hours after the visit "
            "starts. If you did not expect this email, you can ignore it.\n"
        ),
    )
    await session.flush()
    audit.record(session, actor, "invite_guest", "visit", visit.id, patient_id=visit.patient_id,
                 guest_id=guest.id, outbox_id=outgoing.id)
    # The patient too: their open room asks them to agree to the guest's presence.
    emit(session, "visit.guest_invited",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, guest_id=guest.id)
    return GuestInvited(**_guest(guest).model_dump(), outbox_id=outgoing.id)


async def list_guests(session: AsyncSession, actor: Actor, visit_id: int, *,
                      now: datetime) -> list[GuestEntry]:
    """Everyone invited into the visit, first invited first, with where each stands (the
    care team's guest page). Audited as one read of the visit's guests."""
    require_role(actor, Role.prescriber, Role.coordinator)
    visit = await access_visit(session, actor, visit_id, now=now)
    rows = (await session.scalars(select(VisitGuest).where(VisitGuest.visit_id == visit.id)
                                  .order_by(VisitGuest.invited_at, VisitGuest.id))).all()
    audit.record(session, actor, "read", "visit_guests", visit.id, patient_id=visit.patient_id,
                 count=len(rows))

    def state(guest: VisitGuest) -> GuestState:
        if guest.revoked_at is not None:
            return "revoked"
        if guest.admitted_at is not None:
            return "admitted"
        return "expired" if guest.expires_at <= now else "invited"

    return [GuestEntry(**_guest(g).model_dump(), revoked_at=g.revoked_at, state=state(g))
            for g in rows]


async def guest_for_token(
    session: AsyncSession, visit_id: int, token: str, *, now: datetime
) -> Guest | None:
    """The invited guest a token belongs to, while the invitation is good."""
    guest = await session.scalar(select(VisitGuest).where(
        VisitGuest.token_hash == token_hash(token), VisitGuest.visit_id == visit_id))
    if guest is None or guest.revoked_at is not None or guest.expires_at <= now:
        return None
    return _guest(guest)


async def _guest_of(session: AsyncSession, actor: Actor, visit_id: int,
                    guest_id: int) -> tuple[VisitGuest, int]:
    require_role(actor, Role.prescriber, Role.coordinator)
    visit = await access_visit(session, actor, visit_id, write=True)
    guest = await session.get(VisitGuest, guest_id)
    if guest is None or guest.visit_id != visit.id:
        raise NotFound(f"There is no guest {guest_id} in this visit.", field="guest_id")
    if visit.status in ENDED:
        raise Conflict(f'Cannot change guests of a visit in state "{visit.status.value}".',
                       field="status", extra={"status": visit.status.value})
    return guest, visit.patient_id


async def admit_guest(
    session: AsyncSession, actor: Actor, visit_id: int, guest_id: int, *, now: datetime
) -> Guest:
    """Let a waiting guest in; stored, so a reconnect is not admitted twice."""
    guest, patient_id = await _guest_of(session, actor, visit_id, guest_id)
    if guest.admitted_at is not None:
        return _guest(guest)
    # 42 CFR Part 2: a guest hears what the patient says, substance use included, so the
    # patient agrees to their presence first; the admission is then a disclosure.
    consent = await guest_consent(session, guest.id)
    if consent is None:
        raise Conflict(f"{guest.name} can join once the patient agrees to their presence; "
                       "the patient is asked on their screen.",
                       code="guest_consent_required", field="guest_id")
    await disclose_to_guest(session, actor, guest, consent, patient_id, now=now)
    guest.admitted_at = now
    guest.admitted_by_id = actor.user_id
    audit.record(session, actor, "admit_guest", "visit", visit_id, patient_id=patient_id,
                 guest_id=guest.id, at=now)
    emit(session, "visit.guest_admitted", await care_team_ids(session, patient_id),
         visit_id=visit_id, guest_id=guest.id)
    return _guest(guest)


async def guest_consent(session: AsyncSession, guest_id: int) -> Part2Consent | None:
    """The patient's standing consent to this guest's presence, if any."""
    found: Part2Consent | None = await session.scalar(select(Part2Consent).where(
        Part2Consent.guest_id == guest_id, Part2Consent.kind == "guest",
        Part2Consent.revoked_at.is_(None)).order_by(Part2Consent.id.desc()).limit(1))
    return found


async def disclose_to_guest(session: AsyncSession, actor: Actor, guest: VisitGuest,
                            consent: Part2Consent, patient_id: int, *,
                            now: datetime) -> None:
    """The accounting row of a guest's presence: once per guest and visit, however often
    they are let in again after a reconnect or a removal."""
    already = await session.scalar(select(Part2Disclosure.id).where(
        Part2Disclosure.consent_id == consent.id, Part2Disclosure.channel == "visit_guest")
        .limit(1))
    if already is not None:
        return
    await disclosures.record(
        session, actor, patient_id, channel="visit_guest",
        recipient=disclosures.Recipient(name=guest.name, recipient_class="other"),
        purpose="treatment", categories=list(consent.categories), consent_id=consent.id,
        now=now, visit_id=guest.visit_id,
        description="Presence in a video visit, hearing what was said in it")


class PendingGuest(Result):
    """A guest invited into the patient's visit who waits for the patient's agreement."""

    id: int
    name: str
    invited_by: str


async def pending_consent(session: AsyncSession, actor: Actor, visit: VisitRecord, *,
                          now: datetime) -> list[PendingGuest]:
    """The visit's guests the patient has not agreed to yet (the patient's room; the
    visit as ``visits.get_visit`` gave it to this actor, access already checked)."""
    require_role(actor, Role.patient)
    consented = select(Part2Consent.guest_id).where(
        Part2Consent.kind == "guest", Part2Consent.revoked_at.is_(None),
        Part2Consent.guest_id.is_not(None))
    rows = (await session.execute(
        select(VisitGuest, User.name).join(User, User.id == VisitGuest.invited_by_id)
        .where(VisitGuest.visit_id == visit.id, VisitGuest.revoked_at.is_(None),
               VisitGuest.expires_at > now, VisitGuest.id.not_in(consented))
        .order_by(VisitGuest.invited_at, VisitGuest.id))).all()
    return [PendingGuest(id=g.id, name=g.name, invited_by=name) for g, name in rows]


async def consent_to_guest(session: AsyncSession, actor: Actor, visit_id: int,
                           guest_id: int, *, now: datetime, zone: str) -> consents.Consent:
    """The patient agrees, in their own session, to a guest being present in this visit:
    a Part 2 consent naming the guest, for treatment, ending with the visit (a join-link
    session may give it: it is about this one visit)."""
    require_role(actor, Role.patient)
    visit = await access_visit(session, actor, visit_id, now=now)
    guest = await session.get(VisitGuest, guest_id)
    if guest is None or guest.visit_id != visit.id or guest.revoked_at is not None:
        raise NotFound(f"There is no guest {guest_id} invited to this visit.",
                       field="guest_id")
    if visit.status in ENDED:
        raise Conflict(f'The visit is over ("{visit.status.value}").', field="status")
    existing = await guest_consent(session, guest.id)
    today = local_date(now, zone)
    if existing is not None:
        return await consents.result_of(session, existing, today)
    patient = await session.get(User, visit.patient_id)
    assert patient is not None
    consent = Part2Consent(
        patient_id=visit.patient_id, form_version=rules().form_version, kind="guest",
        categories=["sud_measures", "sud_checkin", "moud"], recipient_classes=[],
        recipient_name=guest.name, purposes=["treatment"], expiry_event="The end of this visit",
        signed_name=patient.name, signed_on=today, source="patient",
        recorded_by_id=actor.user_id, created_at=now, visit_id=visit.id, guest_id=guest.id)
    session.add(consent)
    await session.flush()
    audit.record(session, actor, "create", "consent", consent.id, patient_id=visit.patient_id,
                 at=now, kind="guest", guest_id=guest.id)
    emit(session, "visit.guest_consented",
         await care_team_ids(session, visit.patient_id) | {visit.patient_id},
         visit_id=visit.id, guest_id=guest.id)
    return await consents.result_of(session, consent, today)


async def remove_guest(
    session: AsyncSession, actor: Actor, visit_id: int, guest_id: int, *, now: datetime
) -> Guest:
    """Send a guest back to the waiting room."""
    guest, patient_id = await _guest_of(session, actor, visit_id, guest_id)
    guest.admitted_at = None
    guest.admitted_by_id = None
    audit.record(session, actor, "remove_guest", "visit", visit_id, patient_id=patient_id,
                 guest_id=guest.id, at=now)
    return _guest(guest)


async def dismiss_guest(
    session: AsyncSession, actor: Actor, visit_id: int, guest_id: int, *, revoke: bool,
    now: datetime,
) -> Guest:
    """Send a guest out of the visit, freeing their seat.

    Their admission goes, so if they open the link again they wait to be let in. With
    ``revoke`` the invitation ends too: the link stops working (for someone the patient
    does not want there, or a link that reached the wrong person).
    """
    guest, patient_id = await _guest_of(session, actor, visit_id, guest_id)
    guest.admitted_at = None
    guest.admitted_by_id = None
    if revoke and guest.revoked_at is None:
        guest.revoked_at = now
    audit.record(session, actor, "dismiss_guest", "visit", visit_id, patient_id=patient_id,
                 guest_id=guest.id, revoked=revoke, at=now)
    emit(session, "visit.guest_dismissed", await care_team_ids(session, patient_id),
         visit_id=visit_id, guest_id=guest.id, revoked=revoke)
    return _guest(guest)
