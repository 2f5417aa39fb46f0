"""Text chat in a visit's call, kept with the visit as part of its record.

A message is sent from the call (``signaling.rooms``: the ``chat`` message) by an
admitted member: the patient once let in, the care team, an admitted guest. It is
stored once per (visit, ``client_id``): the sender's page picks the id, and sends the
message again with the same id after a reconnect when it cannot know whether the first
try arrived; the second try gets the stored message back, never a second row.

Reading: the members of the call get the chat so far when they are let in (a guest only
what was sent since their admission: a clinic does not show an interpreter what was said
before they were there); afterwards the care team and the patient read it with the
visit's record (``messages_for``). Every write and read is audited, and neither the audit
log, the logs nor the events ever carry a message's text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_visit, access_visit_room
from server.accounts import care_team_ids
from server.actors import Actor
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.events import emit
from server.freetext import unstorable_at
from server.models import Role, User, Visit, VisitChatMessage, VisitGuest, VisitStatus
from server.results import Instant, JsonObject, Result
from server.visits import ENDED

MAX_CHARACTERS: Final = 2000
CLIENT_ID_MAX: Final = 64


@dataclass(frozen=True)
class Sender:
    """Who sends or reads in the call: a signed-in user, or an invited guest (no account,
    so no ``Actor``)."""

    name: str
    actor: Actor | None = None
    guest_id: int | None = None
    ip: str | None = None            # a guest's, for the audit log (a user's is the actor's)

    @classmethod
    def of_user(cls, actor: Actor) -> Sender:
        return cls(actor.name, actor)

    @classmethod
    def of_guest(cls, guest_id: int, name: str, ip: str | None = None) -> Sender:
        return cls(name, None, guest_id, ip)

    @property
    def user_id(self) -> int | None:
        return self.actor.user_id if self.actor else None

    @property
    def who(self) -> str:
        return _who(self.user_id, self.guest_id)


class ChatAuthor(Result):
    """Who wrote a message: ``who`` is the room's key for a person (``user:<id>`` or
    ``guest:<id>``), ``name`` as shown when they wrote it."""

    who: str
    name: str
    role: str


class ChatMessage(Result):
    id: int
    visit_id: int
    client_id: str
    sender: ChatAuthor
    text: str
    sent_at: Instant

    def to_json(self, *, exclude: set[str] | None = None) -> JsonObject:
        # "from", as a relayed signal names its sender; a Python field cannot be called so.
        data = super().to_json(exclude=exclude)
        data["from"] = data.pop("sender")
        return data


class ChatSent(Result):
    """The stored message; ``created`` is false for a resend of one stored earlier."""

    message: ChatMessage
    created: bool


def clean_text(text: str) -> str:
    """The message as stored: trimmed, 1 to ``MAX_CHARACTERS`` characters, something
    visible in it; 422 naming ``text`` otherwise. Nothing else is changed: what the
    person wrote (any script, right-to-left, emoji) is kept exactly."""
    stripped = text.strip()
    if unstorable_at(stripped) is not None:
        raise ValidationFailed("The message holds a character that cannot be stored "
                               "(NUL or a lone surrogate).", code="invalid_text", field="text")
    # Zero-width spaces and joiners (Cf) and other invisible characters alone would be a
    # message that shows as nothing.
    if not any(not char.isspace() and unicodedata.category(char)[0] not in "CZ"
               for char in stripped):
        raise ValidationFailed("Write a message first.", code="text_empty", field="text")
    if len(stripped) > MAX_CHARACTERS:
        raise ValidationFailed(f"A message holds at most {MAX_CHARACTERS} characters; this "
                               f"one has {len(stripped)}.", code="text_too_long", field="text",
                               extra={"max_characters": MAX_CHARACTERS})
    return stripped


def _check_client_id(client_id: str) -> None:
    if not 8 <= len(client_id) <= CLIENT_ID_MAX or not client_id.isascii() or \
            not all(c.isalnum() or c in "_-" for c in client_id):
        raise ValidationFailed("client_id must be 8 to 64 characters of A-Z, a-z, 0-9, _ and -.",
                               field="client_id")


async def _visit_for(session: AsyncSession, sender: Sender, visit_id: int) -> Visit:
    """The visit, if ``sender`` is an admitted member of its call now (refusing a patient
    still waiting: ``not_admitted``)."""
    if sender.actor is not None:
        visit = await access_visit_room(session, sender.actor, visit_id)
        admitted = sender.actor.role is not Role.patient or \
            visit.status is VisitStatus.in_progress
    else:
        guest = await session.get(VisitGuest, sender.guest_id)
        found = await session.get(Visit, visit_id)
        if found is None:
            raise NotFound(f"There is no visit {visit_id}.", field="visit_id")
        if guest is None or guest.visit_id != visit_id or guest.revoked_at is not None:
            raise Forbidden("This invitation is not for this visit.")
        visit, admitted = found, guest.admitted_at is not None
    if visit.status in ENDED:
        raise Conflict(f'The visit is over (state "{visit.status.value}"): its chat is '
                       "closed.", code="visit_ended", field="visit_id")
    if not admitted:
        raise Conflict("You can send messages once you have been let in.",
                       code="not_admitted", field="type")
    return visit


def _who(user_id: int | None, guest_id: int | None) -> str:
    return f"user:{user_id}" if user_id is not None else f"guest:{guest_id}"


def _message(row: VisitChatMessage, role: str) -> ChatMessage:
    return ChatMessage(
        id=row.id, visit_id=row.visit_id, client_id=row.client_id,
        sender=ChatAuthor(who=_who(row.sender_user_id, row.sender_guest_id),
                          name=row.sender_name, role=role),
        text=row.text, sent_at=row.sent_at)


async def _stored(session: AsyncSession, visit_id: int, *, client_id: str | None = None,
                  since: datetime | None = None) -> list[ChatMessage]:
    query = select(VisitChatMessage, User.role).outerjoin(
        User, User.id == VisitChatMessage.sender_user_id).where(
        VisitChatMessage.visit_id == visit_id)
    if client_id is not None:
        query = query.where(VisitChatMessage.client_id == client_id)
    if since is not None:
        query = query.where(VisitChatMessage.sent_at >= since)
    rows = await session.execute(query.order_by(VisitChatMessage.sent_at,
                                                VisitChatMessage.id))
    return [_message(row, "guest" if role is None else role.value) for row, role in rows]


async def send_message(session: AsyncSession, sender: Sender, visit_id: int, client_id: str,
                       text: str, now: datetime) -> ChatSent:
    """Store a message from an admitted member of the visit's call, once per
    ``client_id``: a resend returns the message stored the first time."""
    _check_client_id(client_id)
    text = clean_text(text)
    visit = await _visit_for(session, sender, visit_id)
    values = {"visit_id": visit_id, "client_id": client_id, "text": text, "sent_at": now,
              "sender_user_id": sender.user_id, "sender_guest_id": sender.guest_id,
              "sender_name": sender.name[:200]}
    # Two sends of one client_id racing (a resend crossing the first try on another
    # instance): the unique (visit_id, client_id) lets one insert and the other do
    # nothing, on both databases, without an error that would spoil the transaction.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = await session.scalar(
        dialect.insert(VisitChatMessage).values(values)
        .on_conflict_do_nothing(index_elements=["visit_id", "client_id"])
        .returning(VisitChatMessage.id))
    [stored] = await _stored(session, visit_id, client_id=client_id)
    if stored.sender.who != sender.who:
        raise Conflict("This client_id is taken by another message in this visit.",
                       code="client_id_in_use", field="client_id")
    if inserted is None:
        return ChatSent(message=stored, created=False)
    audit.record(session, sender.actor, "create", "chat_message", inserted,
                 patient_id=visit.patient_id, at=now, ip=sender.ip, visit_id=visit_id,
                 guest_id=sender.guest_id)
    emit(session, "visit.chat_message", await care_team_ids(session, visit.patient_id),
         visit_id=visit_id, message_id=inserted)
    return ChatSent(message=stored, created=True)


async def history_for(session: AsyncSession, sender: Sender, visit_id: int) -> list[ChatMessage]:
    """The chat so far, for a member just let in (or back in): everything for the patient
    and the care team, and for a guest what was sent since their admission."""
    visit = await _visit_for(session, sender, visit_id)
    since = None
    if sender.actor is None:
        guest = await session.get(VisitGuest, sender.guest_id)
        since = guest.admitted_at if guest is not None else None
    found = await _stored(session, visit_id, since=since)
    audit.record(session, sender.actor, "read", "visit_chat", visit_id,
                 patient_id=visit.patient_id, ip=sender.ip, count=len(found),
                 guest_id=sender.guest_id)
    return found


async def messages_for(session: AsyncSession, actor: Actor, visit_id: int, *,
                       now: datetime | None = None) -> list[ChatMessage]:
    """A visit's chat as part of its record: whoever may read the visit (the care team,
    the patient, an admin with a break-glass grant)."""
    visit = await access_visit(session, actor, visit_id, now=now)
    found = await _stored(session, visit_id)
    audit.record(session, actor, "read", "visit_chat", visit_id, patient_id=visit.patient_id,
                 count=len(found))
    return found
