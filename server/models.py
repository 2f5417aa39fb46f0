"""Database tables (SQLAlchemy 2 typed models).

Changes to these go with an Alembic migration in ``server/migrations/versions``;
``tests/test_migrations.py`` fails when the two drift apart.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime


class Role(enum.StrEnum):
    patient = "patient"
    prescriber = "prescriber"
    coordinator = "coordinator"
    admin = "admin"

    @property
    def is_staff(self) -> bool:
        return self is not Role.patient


class VisitKind(enum.StrEnum):
    intake = "intake"
    follow_up = "follow_up"


class VisitStatus(enum.StrEnum):
    scheduled = "scheduled"
    checked_in = "checked_in"
    waiting = "waiting"
    in_progress = "in_progress"
    completed = "completed"
    no_show = "no_show"
    cancelled = "cancelled"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable between SQLite and
    # PostgreSQL and easy to extend in a migration.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=32,
                values_callable=lambda e: [m.value for m in e])


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    profile: Mapped[PatientProfile | None] = relationship(
        back_populates="user", lazy="raise", uselist=False
    )


class PatientProfile(Base):
    __tablename__ = "patient_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date, default=None)
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    emergency_contact_name: Mapped[str | None] = mapped_column(String(200), default=None)
    emergency_contact_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    # Sex for AUDIT-C's cut-off; None uses the more sensitive one.
    sex: Mapped[str | None] = mapped_column(String(8), default=None)
    # AUDIT-C and ASRM are repeated this often (CLINICAL: every 90 days by default).
    screening_interval_days: Mapped[int] = mapped_column(Integer, default=90,
                                                         server_default="90")
    # In the program's substance-use track: the Brief Addiction Monitor monthly.
    substance_use_track: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=text("false"))

    user: Mapped[User] = relationship(back_populates="profile", lazy="raise")


class CareTeamMember(Base):
    """Who looks after which patient: their prescribers and coordinators."""

    __tablename__ = "care_team_members"
    __table_args__ = (UniqueConstraint("patient_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "care_role"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (Index("ix_visits_prescriber_scheduled", "prescriber_id", "scheduled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[VisitKind] = mapped_column(_enum(VisitKind, "visit_kind"))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_minutes: Mapped[int] = mapped_column(Integer, default=15)
    status: Mapped[VisitStatus] = mapped_column(
        _enum(VisitStatus, "visit_status"), default=VisitStatus.scheduled
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Every join link carries the value this had when it was made; revoking the links
    # (by staff, or the visit ending) moves it on, so the links made before stop working
    # (server/auth.py, "join links").
    join_link_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The calendar event's SEQUENCE: raised by every change a patient is told of, so
    # their calendar replaces the event it holds (RFC 5545).
    calendar_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # "Running a few minutes late": what the prescriber told the waiting patient, and
    # when, so a patient who (re)opens the waiting room still sees it.
    late_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    late_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    patient: Mapped[User] = relationship(foreign_keys=[patient_id], lazy="raise")
    prescriber: Mapped[User] = relationship(foreign_keys=[prescriber_id], lazy="raise")


class AuthSession(Base):
    """A server-side sign-in. The cookie holds a signed random id; we store its hash."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Set for a patient who came in through a visit's join link: that visit only.
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)


class LoginFailure(Base):
    """Failed sign-ins, counted per account and per address for throttling."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_at", "email", "at"),
                      Index("ix_login_failures_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what to which record, when, from where, and how it ended.

    Append-only: the application has no code path that updates or deletes a row, and
    the migration installs triggers that refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_patient_at", "patient_id", "at"),
                      Index("ix_audit_log_actor_at", "actor_id", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    actor_role: Mapped[str | None] = mapped_column(String(32), default=None)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64), default=None)
    patient_id: Mapped[int | None] = mapped_column(Integer, default=None)
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxEmail(Base):
    """An email waiting to be sent, written in the same transaction as its cause."""

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_due", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # An iCalendar object sent with the email as text/calendar (a visit's event).
    calendar: Mapped[str | None] = mapped_column(Text, default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)


class BreakGlassGrant(Base):
    """An admin's time-limited, justified, audited access to one patient's record."""

    __tablename__ = "break_glass_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckInStatus(enum.StrEnum):
    draft = "draft"
    completed = "completed"


class CheckIn(Base):
    """A patient's pre-visit check-in: answers, scores, triage and emergency information.

    A draft is saved as the patient goes, so nothing typed is lost; completing it stores
    the scores and the triage result and hands them to the escalation workflow. Every
    saved version of the answers is kept (``CheckInVersion``).
    """

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[CheckInStatus] = mapped_column(
        _enum(CheckInStatus, "checkin_status"), default=CheckInStatus.draft
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The whole body as the patient last sent it (draft or final).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # How many versions of the answers are saved (the last one's ``seq``).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The scores of the latest scored answers (the completion's, once completed).
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The visit's risk (CLINICAL.md, safety invariant 1): the highest level any saved
    # version reached and every reason any version showed. Never lowered.
    level: Mapped[str | None] = mapped_column(String(16), default=None)
    reasons: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # Emergency information as the patient confirmed it for this visit, and when
    # (invariant 2): location and callback number together, the contact on its own.
    location_address: Mapped[str | None] = mapped_column(String(500), default=None)
    # The US state (USPS code) the patient says they are in for this visit: where the
    # prescriber must be licensed, and whose PDMP is checked (CLINICAL.md, "Controlled
    # substances by telehealth").
    location_state: Mapped[str | None] = mapped_column(String(2), default=None)
    callback_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    location_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(),
                                                                   default=None)
    emergency_contact_name: Mapped[str | None] = mapped_column(String(200), default=None)
    emergency_contact_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    contact_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(),
                                                                  default=None)


class CheckInVersion(Base):
    """One saved version of a check-in's answers, as triaged when it was saved.

    Written for every draft save that changed the answers and for the completion, never
    updated: an answer that triggered a reason stays on record even when the patient
    changes it later, and staff see which answers triggered and when.
    """

    __tablename__ = "checkin_versions"
    __table_args__ = (UniqueConstraint("checkin_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # draft | completion
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    level: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)


class MeasureResult(Base):
    """One instrument's total from one completed check-in: the points of a trend."""

    __tablename__ = "measure_results"
    __table_args__ = (Index("ix_measure_results_patient_instrument_at",
                            "patient_id", "instrument", "at"),
                      # One score per instrument per check-in, whatever races to complete.
                      UniqueConstraint("checkin_id", "instrument"))

    id: Mapped[int] = mapped_column(primary_key=True)
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    instrument: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    total: Mapped[int | None] = mapped_column(Integer, default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class VisitGuest(Base):
    """Someone the prescriber invited into one visit: an interpreter, a family member.

    Guests have no account. The invitation link carries a random token whose SHA-256 is
    kept here; the guest presents it when joining the visit's room. ``admitted_at`` is
    the stored admission, so a guest who reconnects does not wait a second time.
    """

    __tablename__ = "visit_guests"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    admitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class VisitChatMessage(Base):
    """A text message sent in a visit's call: kept with the visit as part of its record
    and shown to staff afterwards. The sender is a user or a guest; their name as shown
    when they sent it is kept beside them. ``client_id`` is the sender's own id for the
    message, so a message resent after a reconnect is stored once."""

    __tablename__ = "visit_chat_messages"
    __table_args__ = (UniqueConstraint("visit_id", "client_id"),
                      Index("ix_visit_chat_messages_visit_sent", "visit_id", "sent_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    sender_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    sender_guest_id: Mapped[int | None] = mapped_column(ForeignKey("visit_guests.id"),
                                                        default=None)
    sender_name: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PasswordResetRequest(Base):
    """One "email me a reset link", kept for throttling: by the address typed (as a keyed
    digest, so the table is no list of addresses) and by the client address, the same
    whether or not an account uses the address."""

    __tablename__ = "password_reset_requests"
    __table_args__ = (Index("ix_password_reset_requests_email_at", "email_digest", "at"),
                      Index("ix_password_reset_requests_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email_digest: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class VisitReminder(Base):
    """A reminder email due before a visit (``MENDWELL_REMINDER_HOURS``): a timer row,
    sent once by whichever instance claims it, and replaced when the visit moves."""

    __tablename__ = "visit_reminders"
    __table_args__ = (UniqueConstraint("visit_id", "hours"),
                      Index("ix_visit_reminders_due", "sent_at", "due_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    hours: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class VisitWait(Base):
    """A patient's stay in the waiting room, and the due time of its long-wait alert.

    The alert is a timer row: whichever instance claims it first when it falls due
    alerts the coordinators, once, and a restart does not lose it.
    """

    __tablename__ = "visit_waits"
    __table_args__ = (Index("ix_visit_waits_due", "ended_at", "alerted_at", "alert_due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    alert_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # admitted, left, ended
    end_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    # The visit's status before it became "waiting", restored if the patient leaves.
    from_status: Mapped[str] = mapped_column(String(32))


class EscalationStatus(enum.StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    in_progress = "in_progress"
    resolved = "resolved"


class Escalation(Base):
    """A safety concern that someone must own and close with a disposition.

    The patient's emergency information (location, callback number, emergency contact)
    is copied when raised and again at every later confirmation while it is open, with
    when it was confirmed (``emergency_confirmed_at``; None: only on file), so the
    coordinator has the freshest on one screen.
    """

    __tablename__ = "escalations"
    __table_args__ = (
        Index("ix_escalations_patient_status", "patient_id", "status"),
        # One open escalation per patient (safety invariant 3), held by the database
        # whatever races to raise one.
        Index("ux_escalations_open_patient", "patient_id", unique=True,
              sqlite_where=text("status != 'resolved'"),
              postgresql_where=text("status != 'resolved'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"), default=None)
    level: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The text of every manual raise, oldest first (never dropped, invariant 3).
    reason_text: Mapped[str | None] = mapped_column(Text, default=None)
    source: Mapped[str] = mapped_column(String(16))  # checkin | manual
    status: Mapped[EscalationStatus] = mapped_column(
        _enum(EscalationStatus, "escalation_status"), default=EscalationStatus.open)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    # When it was raised or last re-armed: the acknowledgement deadline and the re-alert
    # interval count from here, and neither moves until the next re-arm (invariant 4).
    armed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    disposition: Mapped[str | None] = mapped_column(String(32), default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
    no_action_reason: Mapped[str | None] = mapped_column(Text, default=None)
    location_address: Mapped[str | None] = mapped_column(String(500), default=None)
    # The US state of that location (USPS code), when the patient gave it: the coordinator
    # calling emergency services for a patient in another town needs it.
    location_state: Mapped[str | None] = mapped_column(String(2), default=None)
    callback_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    emergency_contact_name: Mapped[str | None] = mapped_column(String(200), default=None)
    emergency_contact_phone: Mapped[str | None] = mapped_column(String(40), default=None)
    # When the patient confirmed the location and callback above (None: on file only),
    # and where they come from: "checkin" (confirmed), "last_checkin" or "profile".
    emergency_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(),
                                                                    default=None)
    emergency_source: Mapped[str | None] = mapped_column(String(16), default=None)
    # Re-alerts sent since it was last raised or re-armed.
    realerts: Mapped[int] = mapped_column(Integer, default=0)


class EscalationTrigger(Base):
    """What raised, re-armed or added to an escalation: a check-in (and the saved version
    of its answers that triggered) or a manual raise with its text."""

    __tablename__ = "escalation_triggers"

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))  # checkin | manual
    level: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"), default=None)
    checkin_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkin_versions.id"), default=None)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    # raised | rearmed | added: what this trigger did to the escalation.
    effect: Mapped[str] = mapped_column(String(16))


class OnCallShift(Base):
    """One person's turn on the on-call rota (safety invariant 5): from, until.

    While on call, a prescriber or coordinator sees and acts on every care team's open
    escalations and is the backup for an emergency nobody acknowledges.
    """

    __tablename__ = "on_call_shifts"
    __table_args__ = (Index("ix_on_call_shifts_span", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"),
                                                        default=None)


class EscalationEvent(Base):
    """One step of an escalation's timeline: who, when, what."""

    __tablename__ = "escalation_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Timer(Base):
    """Something to do at a due time (an acknowledgement deadline, a re-alert).

    Claimed by exactly one instance when due (``FOR UPDATE SKIP LOCKED`` on PostgreSQL);
    its effects and ``fired_at`` commit together, so it fires once and a crash before
    the commit leaves it due for the next instance.
    """

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due", "fired_at", "cancelled_at", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    fired_by: Mapped[str | None] = mapped_column(String(64), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class NoteStatus(enum.StrEnum):
    draft = "draft"
    signed = "signed"


class VisitNote(Base):
    """The prescriber's note for one visit. ``version`` grows with every save; a save
    based on an older version is refused, never merged silently."""

    __tablename__ = "visit_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[NoteStatus] = mapped_column(_enum(NoteStatus, "note_status"),
                                               default=NoteStatus.draft)
    sections: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    medication_changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    follow_up_days: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)


class NoteAddendum(Base):
    __tablename__ = "note_addenda"

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("visit_notes.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(Text)
    # A safety assessment given with the addendum (assessed, risk_judgement, plan).
    safety: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class SafetyAddendumTask(Base):
    """A check-in with safety reasons arrived after the note was signed (invariant 7):
    the prescriber owes an addendum with a safety assessment. Shown at the top of their
    day until an addendum with one is written."""

    __tablename__ = "safety_addendum_tasks"
    __table_args__ = (
        Index("ix_safety_addendum_tasks_open", "prescriber_id", "done_at"),
        # One open task per note: later reasons are added to it.
        Index("ux_safety_addendum_tasks_open_note", "note_id", unique=True,
              sqlite_where=text("done_at IS NULL"),
              postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("visit_notes.id"), index=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id"))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    addendum_id: Mapped[int | None] = mapped_column(ForeignKey("note_addenda.id"),
                                                    default=None)


class Medication(Base):
    """A medication on the patient's list, kept by signed notes."""

    __tablename__ = "medications"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    drug: Mapped[str] = mapped_column(String(120))
    dose: Mapped[str | None] = mapped_column(String(40), default=None)
    unit: Mapped[str | None] = mapped_column(String(20), default=None)
    route: Mapped[str | None] = mapped_column(String(40), default=None)
    frequency: Mapped[str | None] = mapped_column(String(60), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MedicationChange(Base):
    """One change to a medication: who, when, why, from which signed note."""

    __tablename__ = "medication_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    medication_id: Mapped[int] = mapped_column(ForeignKey("medications.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("visit_notes.id"), default=None)
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Part2Consent(Base):
    """A patient's written consent to disclose their substance use disorder records
    (42 CFR 2.31): what, to whom, for what, until when, signed by whom and when.

    Never edited once signed: a change is a new consent, and revoking one (2.31(a)(6))
    only stamps ``revoked_at``, so the accounting can always show what a past disclosure
    rested on. ``form_version`` is the wording the patient saw (server/part2_rules.toml).
    """

    __tablename__ = "part2_consents"
    __table_args__ = (Index("ix_part2_consents_patient", "patient_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    form_version: Mapped[int] = mapped_column(Integer)
    # tpo (all future treatment, payment and operations), specific (one recipient),
    # counseling_notes (SUD counseling notes only), guest (a guest's presence in a visit)
    kind: Mapped[str] = mapped_column(String(20))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Classes of recipient for a TPO consent (treating_providers, payers, operations);
    # a specific consent names one recipient instead.
    recipient_classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    recipient_name: Mapped[str | None] = mapped_column(String(200), default=None)
    purposes: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose_text: Mapped[str | None] = mapped_column(String(500), default=None)
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    expiry_event: Mapped[str | None] = mapped_column(String(200), default=None)
    signed_name: Mapped[str] = mapped_column(String(200))
    signed_on: Mapped[date] = mapped_column(Date)
    # patient (signed on their own pages) or paper (signed on paper, recorded by staff)
    source: Mapped[str] = mapped_column(String(16))
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    guest_id: Mapped[int | None] = mapped_column(ForeignKey("visit_guests.id"), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)


class Part2Disclosure(Base):
    """Something that left the program with Part 2 data in it, or might have: one row
    per disclosure, for the patient's accounting of disclosures (kept 3 years at least).
    ``consent_id`` is what it rested on; a medical emergency (42 CFR 2.51) rests on none
    and records the emergency instead."""

    __tablename__ = "part2_disclosures"
    __table_args__ = (Index("ix_part2_disclosures_patient_at", "patient_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # fhir_export, referral_packet, visit_guest, medical_emergency
    channel: Mapped[str] = mapped_column(String(32))
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_affiliation: Mapped[str | None] = mapped_column(String(200), default=None)
    recipient_class: Mapped[str | None] = mapped_column(String(32), default=None)
    purpose: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_id: Mapped[int | None] = mapped_column(ForeignKey("part2_consents.id"),
                                                   default=None)
    disclosed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    emergency_nature: Mapped[str | None] = mapped_column(Text, default=None)
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalations.id"),
                                                      default=None)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    # What went, as it went (a referral packet's FHIR Bundle and level of care): printed
    # again from here, which is a read of what was disclosed, not a new disclosure.
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class SudCounselingNote(Base):
    """A substance use disorder counseling note (42 CFR 2.11): kept apart from the visit
    note and the rest of the record, and never disclosed without a consent of its own."""

    __tablename__ = "sud_counseling_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), default=None)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(Text)


class LabResult(Base):
    """A lab result staff entered (value, unit, the date the sample was taken), for the
    monitoring rules (server/lab_rules.toml)."""

    __tablename__ = "lab_results"
    __table_args__ = (Index("ix_lab_results_patient_test", "patient_id", "test", "taken_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    test: Mapped[str] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float, default=None)
    text_value: Mapped[str | None] = mapped_column(String(200), default=None)
    unit: Mapped[str | None] = mapped_column(String(20), default=None)
    taken_on: Mapped[date] = mapped_column(Date)
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PrescriberCredential(Base):
    """A prescriber's licence to practise in one US state, and their DEA registration
    there if they hold one (a DEA registration is per state)."""

    __tablename__ = "prescriber_credentials"
    __table_args__ = (UniqueConstraint("prescriber_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(2))
    license_number: Mapped[str] = mapped_column(String(40))
    license_expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    dea_number: Mapped[str | None] = mapped_column(String(20), default=None)
    dea_expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class PdmpCheck(Base):
    """A check of a state's prescription drug monitoring program for this visit's
    patient: when, which state, and what came of it (``reviewed``, or ``unavailable``
    with the attempt recorded)."""

    __tablename__ = "pdmp_checks"
    __table_args__ = (Index("ix_pdmp_checks_visit", "visit_id", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(2))
    result: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, default=None)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
