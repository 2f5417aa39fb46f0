"""The email outbox: rows written with their cause, delivered by a sender task.

An email is queued in the same transaction as the change that caused it, so it exists
exactly when the change does. The sender claims due rows with a short lease (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), sends over SMTP, and marks the row sent at once.
Each message carries a Message-ID derived from the row, so in the rare case of a crash
between the SMTP server's acceptance and our mark, a resend is recognisably the same
message. Emails never carry clinical content: a sentence and a link.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib
from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.jobs import Job, claim
from server.models import OutboxEmail
from server.services import Services

log = logging.getLogger("mendwell.outbox")

LEASE = timedelta(seconds=60)
BATCH = 20


def queue_email(
    session: AsyncSession, *, to: str, subject: str, body: str, kind: str, now: datetime,
    calendar: str | None = None,
) -> OutboxEmail:
    email = OutboxEmail(to_addr=to, subject=subject, body=body, kind=kind, created_at=now,
                        next_attempt_at=now, calendar=calendar)
    session.add(email)
    return email


def backoff(services: Services, attempts: int) -> timedelta:
    s = services.settings
    seconds = min(s.outbox_retry_base_seconds * (2 ** max(attempts - 1, 0)),
                  s.outbox_retry_max_seconds)
    return timedelta(seconds=seconds)


async def _claim(services: Services, now: datetime) -> list[OutboxEmail]:
    async with services.transaction() as session:
        return await claim(session, OutboxEmail, _due(now),
                           (OutboxEmail.next_attempt_at, OutboxEmail.id),
                           {"claimed_until": now + LEASE}, BATCH)


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (OutboxEmail.sent_at.is_(None), OutboxEmail.failed_at.is_(None),
            OutboxEmail.next_attempt_at <= now,
            or_(OutboxEmail.claimed_until.is_(None), OutboxEmail.claimed_until < now))


def _message(services: Services, row: OutboxEmail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = services.settings.smtp_from
    message["To"] = row.to_addr
    message["Subject"] = row.subject
    domain = urlsplit(services.settings.base_url).hostname or "mendwell.local"
    message["Message-ID"] = make_msgid(idstring=f"outbox-{row.id}", domain=domain)
    message["X-Mendwell-Outbox-Id"] = str(row.id)
    message.set_content(row.body)
    if row.calendar:
        # As calendar programs expect an invitation: text/calendar with its METHOD.
        method = "CANCEL" if "\nMETHOD:CANCEL" in row.calendar.replace("\r", "") else "REQUEST"
        message.add_attachment(row.calendar.encode(), maintype="text", subtype="calendar",
                               filename="visit.ics", params={"method": method,
                                                             "charset": "utf-8"})
    return message


async def _send(services: Services, row: OutboxEmail) -> None:
    url = urlsplit(services.settings.smtp_url.get_secret_value())
    use_tls = url.scheme == "smtps"
    await aiosmtplib.send(
        _message(services, row),
        hostname=url.hostname or "127.0.0.1",
        port=url.port or (465 if use_tls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=use_tls,
        start_tls=True if url.scheme == "smtp+starttls" else None if not use_tls else False,
        timeout=15,
    )


async def deliver_due(services: Services) -> int:
    """Send what is due now; returns how many were sent. Safe to run on every instance."""
    if not services.settings.smtp_url:
        return 0
    now = services.clock.now()
    sent = 0
    for row in await _claim(services, now):
        try:
            await _send(services, row)
        except (aiosmtplib.SMTPException, OSError, socket.gaierror, TimeoutError) as exc:
            attempts = row.attempts + 1
            gave_up = attempts >= services.settings.outbox_max_attempts
            async with services.transaction() as session:
                await session.execute(
                    update(OutboxEmail).where(OutboxEmail.id == row.id).values(
                        attempts=attempts,
                        last_error=type(exc).__name__,
                        claimed_until=None,
                        next_attempt_at=services.clock.now() + backoff(services, attempts),
                        failed_at=services.clock.now() if gave_up else None,
                    )
                )
            log.warning("email %s not sent (attempt %s): %s", row.id, attempts,
                        type(exc).__name__)
            continue
        async with services.transaction() as session:
            await session.execute(
                update(OutboxEmail).where(OutboxEmail.id == row.id).values(
                    sent_at=services.clock.now(), attempts=row.attempts + 1,
                    claimed_until=None, last_error=None,
                )
            )
        sent += 1
    return sent


SENDER = Job("outbox sender", deliver_due, lambda settings: settings.outbox_poll_seconds)
