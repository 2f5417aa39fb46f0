"""Self-service password reset: an emailed link, single-use, expiring, throttled, and
never a hint of whether an address has an account.

The link carries a signed token (itsdangerous, its own salt) with the user's id and a
fingerprint of their current password hash: setting a password changes the hash, so a
link works once, and any older link stops working too. No table holds tokens, so there
is nothing to steal from the database that would open an account.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.actors import Actor
from server.auth import normalise_email
from server.errors import TooManyRequests, ValidationFailed
from server.models import AuthSession, LoginFailure, PasswordResetRequest, User
from server.outbox import queue_email
from server.passwords import hash_password, password_problem
from server.services import Services

SALT = "mendwell.password-reset"
KIND = "password_reset"
# Requests per address typed (with an account or not), in a window; and requests from
# one network address (a script trying addresses) in the same window.
PER_EMAIL = 3
PER_ADDRESS = 20
WINDOW = timedelta(hours=1)
# What the person is told after asking, whatever the address: the same words, status
# and email-less outcome for an address with no account.
SENT = ("If an account uses that address, we have emailed it a link to set a new "
        "password. The link works once, for {minutes} minutes.")


class LinkNotValid(ValidationFailed):
    """A reset link that is spoiled, out of date or used."""

    code = "reset_link_invalid"


def _fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:24]


def make_token(services: Services, user: User) -> str:
    return services.signer(SALT).dumps({"u": user.id, "f": _fingerprint(user.password_hash)})


async def request_reset(services: Services, *, email: str, ip: str) -> None:
    """Email a reset link to ``email`` if an active account uses it. Says nothing either
    way; raises TooManyRequests when the address or the network address asked too often
    (the same for an address with no account, so the limit tells nothing either)."""
    email = normalise_email(email)[:254]
    now = services.clock.now()
    since = now - WINDOW
    digest = hmac.new(services.settings.secret_key.get_secret_value().encode(),
                      email.encode(), hashlib.sha256).hexdigest()
    async with services.transaction() as session:
        asked = await session.scalar(
            select(func.count()).select_from(PasswordResetRequest).where(
                PasswordResetRequest.ip == ip, PasswordResetRequest.at >= since))
        if (asked or 0) >= PER_ADDRESS:
            raise TooManyRequests("Too many reset requests from this address. Try again "
                                  "later.", retry_after=int(WINDOW.total_seconds()))
        # Counted by the address typed, account or not: a limit reached only for
        # addresses with an account would tell which ones have one.
        sent = await session.scalar(
            select(func.count()).select_from(PasswordResetRequest).where(
                PasswordResetRequest.email_digest == digest,
                PasswordResetRequest.at >= since))
        if (sent or 0) >= PER_EMAIL:
            raise TooManyRequests("Too many reset requests for this address. Try again "
                                  "later.", retry_after=int(WINDOW.total_seconds()),
                                  field="email")
        session.add(PasswordResetRequest(email_digest=digest, ip=ip[:64], at=now))
        user = await session.scalar(select(User).where(User.email == email))
        # Recorded without the address asked for: an audit row is not a list of who
        # has an account.
        audit.record(session, Actor.of(user, ip=ip) if user and user.is_active else None,
                     "request_password_reset", "user",
                     user.id if user and user.is_active else None, ip=ip, at=now)
        if user is None or not user.is_active:
            return
        link = (f"{services.settings.base_url}/password-reset/new"
                f"?t={make_token(services, user)}")
        minutes = services.settings.password_reset_minutes
        queue_email(session, to=user.email, kind=KIND, now=now,
                    subject="Set a new Mendwell password",
                    body=(f"Hello {user.name},\n\n"
                          "Someone, probably you, asked to set a new password for your "
                          "Mendwell account. Open this link to choose one:\n\n"
                          f"{link}\n\n"
                          f"The link works once, for {minutes} minutes. If you did not ask, "
                          "ignore this email: your password stays as it is.\n"))


@dataclass(frozen=True)
class Reset:
    user_id: int
    sessions_ended: int


async def _user_of(session: AsyncSession, services: Services, token: str) -> User:
    try:
        data = services.signer(SALT).loads(
            token, max_age=services.settings.password_reset_minutes * 60)
    except SignatureExpired:
        raise LinkNotValid("This link is out of date. Ask for a new one.",
                           field="token") from None
    except BadSignature:
        raise LinkNotValid("This link is not valid. Ask for a new one.", field="token") \
            from None
    user = await session.get(User, data.get("u")) if isinstance(data, dict) and \
        isinstance(data.get("u"), int) else None
    if user is None or not user.is_active or data.get("f") != _fingerprint(user.password_hash):
        raise LinkNotValid("This link has been used already. Ask for a new one.",
                           field="token")
    return user


async def check_link(services: Services, token: str) -> None:
    """Raises LinkNotValid unless the link can still set a password."""
    async with services.transaction() as session:
        await _user_of(session, services, token)


async def complete_reset(services: Services, *, token: str, password: str,
                         ip: str) -> Reset:
    """Set the password the link was sent for, once; every session of the account ends
    (whoever had it open elsewhere signs in again) and its failed sign-ins are forgiven."""
    now: datetime = services.clock.now()
    async with services.transaction() as session:
        user = await _user_of(session, services, token)
        if problem := password_problem(password):
            raise ValidationFailed(f"The new password {problem}.", field="new_password")
        user.password_hash = hash_password(password)
        ended = await session.execute(
            update(AuthSession).where(AuthSession.user_id == user.id,
                                      AuthSession.ended_at.is_(None))
            .values(ended_at=now, end_reason="password_reset")
            .execution_options(synchronize_session=False))
        await session.execute(delete(LoginFailure).where(LoginFailure.email == user.email))
        count = int(getattr(ended, "rowcount", 0) or 0)
        audit.record(session, Actor.of(user, ip=ip), "reset_password", "user", user.id,
                     ip=ip, at=now, sessions_ended=count)
        return Reset(user_id=user.id, sessions_ended=count)
