"""Sign-in, server-side sessions, throttling and join links.

The cookie holds an itsdangerous-signed random token; the database keeps only the
token's SHA-256, so a copy of the database does not let anyone into a session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from server import audit
from server.actors import Actor
from server.errors import TooManyRequests, Unauthorized
from server.models import AuthSession, LoginFailure, Role, User, Visit
from server.passwords import verify_password
from server.services import Services
from server.session_cache import all_caches

COOKIE_NAME = "mendwell_session"
COOKIE_SALT = "mendwell.session"
JOIN_SALT = "mendwell.join"
# Writing last_seen_at on every request would make every read a write; a minute of
# slack on a 15-minute idle timeout is immaterial.
TOUCH_INTERVAL = timedelta(seconds=30)


@dataclass(frozen=True)
class SignedIn:
    session: AuthSession
    user: User
    cookie: str


@dataclass(frozen=True)
class Current:
    """A live session with its user, as loaded for a request."""

    session: AuthSession
    user: User
    idle_expires_at: datetime

    def actor(self, ip: str | None) -> Actor:
        return Actor.of(self.user, scope_visit_id=self.session.visit_id,
                        session_id=self.session.id, ip=ip)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def idle_timeout(services: Services, role: Role) -> timedelta:
    minutes = services.settings.staff_idle_minutes if role.is_staff else \
        services.settings.patient_idle_minutes
    return timedelta(minutes=minutes)


async def _check_throttle(
    session: AsyncSession, services: Services, email: str, ip: str, now: datetime
) -> None:
    s = services.settings
    since = now - timedelta(minutes=s.login_window_minutes)
    retry_after = s.login_window_minutes * 60
    by_account = await session.scalar(
        select(func.count()).select_from(LoginFailure)
        .where(LoginFailure.email == email, LoginFailure.at >= since)
    )
    if (by_account or 0) >= s.login_account_limit:
        raise TooManyRequests(
            "Too many failed sign-ins for this account. Try again later or reset the password.",
            retry_after=retry_after, field="email",
        )
    by_address = await session.scalar(
        select(func.count()).select_from(LoginFailure)
        .where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    if (by_address or 0) >= s.login_address_limit:
        raise TooManyRequests(
            "Too many failed sign-ins from this address. Try again later.",
            retry_after=retry_after,
        )


async def authenticate(
    services: Services, *, email: str, password: str, ip: str, user_agent: str | None
) -> SignedIn:
    """Check a password and start a session; raises Unauthorized or TooManyRequests."""
    email = normalise_email(email)
    now = services.clock.now()
    async with services.transaction() as session:
        await _check_throttle(session, services, email, ip, now)
        user = await session.scalar(select(User).where(User.email == email))
        # Always run one argon2 verification so the reply takes as long for an
        # unknown address as for a wrong password.
        ok = verify_password(user.password_hash if user else None, password)
        if not ok or user is None or not user.is_active:
            session.add(LoginFailure(email=email, ip=ip, at=now))
            audit.record(session, Actor.of(user) if user else None, "login", "session",
                         outcome=audit.FAILURE, ip=ip,
                         patient_id=user.id if user and user.role is Role.patient else None)
            failed = True
        else:
            failed = False
            await session.execute(delete(LoginFailure).where(LoginFailure.email == email))
            user.last_login_at = now
            signed_in = await start_session(session, services, user, ip=ip,
                                            user_agent=user_agent)
            audit.record(session, Actor.of(user, ip=ip), "login", "session",
                         signed_in.session.id, ip=ip)
    if failed:
        raise Unauthorized("The email or password is not right.", code="invalid_credentials")
    return signed_in


async def start_session(
    session: AsyncSession,
    services: Services,
    user: User,
    *,
    ip: str | None,
    user_agent: str | None,
    visit_id: int | None = None,
) -> SignedIn:
    now = services.clock.now()
    token = secrets.token_urlsafe(32)
    record = AuthSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        visit_id=visit_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=services.settings.session_max_hours),
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
    )
    session.add(record)
    await session.flush()
    cookie = services.signer(COOKIE_SALT).dumps(token)
    return SignedIn(record, user, cookie)


async def load_session(
    services: Services, cookie: str | None, *, touch: bool = True
) -> Current | None:
    """The live session behind a cookie, touched unless ``touch`` is false (a screen
    refreshing itself is not a person being active); None when absent, forged or
    expired.

    A session loaded in the last few seconds comes from ``services.session_cache``
    without a database round trip, for as long as the database path would have
    returned the same (see ``server.session_cache``)."""
    if not cookie:
        return None
    try:
        token = services.signer(COOKIE_SALT).loads(
            cookie, max_age=services.settings.session_max_hours * 3600
        )
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(token, str):
        return None
    key = _token_hash(token)
    now = services.clock.now()
    cached = services.session_cache.get(key, now)
    if cached is not None:
        return cached
    generation = services.session_cache.generation
    async with services.transaction() as session:
        row = await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == key)
        )
        found = row.first()
        if found is None:
            return None
        auth, user = found[0], found[1]
        if auth.ended_at is not None or not user.is_active:
            return None
        idle = idle_timeout(services, user.role)
        reason = None
        if now >= auth.expires_at:
            reason = "expired"
        elif now - auth.last_seen_at >= idle:
            reason = "idle"
        if reason:
            auth.ended_at = now
            auth.end_reason = reason
            audit.record(session, Actor.of(user), "logout", "session", auth.id,
                         ip=auth.ip, reason=reason)
            return None
        if touch and now - auth.last_seen_at >= TOUCH_INTERVAL:
            auth.last_seen_at = now
        current = Current(auth, user, min(auth.last_seen_at + idle, auth.expires_at))
    # Held until the touch would fall due (so a cached answer never skips a write the
    # database path would make), and never past the idle or absolute end.
    services.session_cache.put(
        key, current, min(auth.last_seen_at + TOUCH_INTERVAL, current.idle_expires_at), now,
        generation=generation)
    return current


async def touch(services: Services, current: Current) -> Current:
    """Mark the session active now (the "stay signed in" button)."""
    now = services.clock.now()
    async with services.transaction() as session:
        await session.execute(
            update(AuthSession).where(AuthSession.id == current.session.id)
            .values(last_seen_at=now).execution_options(**_FORGETS_ITSELF)
        )
    _forget_session(current.session.id)
    idle = idle_timeout(services, current.user.role)
    return Current(current.session, current.user, min(now + idle, current.session.expires_at))


async def end_session(services: Services, current: Current, *, ip: str | None) -> None:
    now = services.clock.now()
    async with services.transaction() as session:
        await session.execute(
            update(AuthSession).where(AuthSession.id == current.session.id)
            .values(ended_at=now, end_reason="logout").execution_options(**_FORGETS_ITSELF)
        )
        audit.record(session, current.actor(ip), "logout", "session", current.session.id)
    # A logout is never answered from a cache, from the next request on.
    _forget_session(current.session.id)


# --- keeping cached sessions honest -------------------------------------------------
# Whatever changes a session or user row through SQLAlchemy in this process drops the
# cached sessions it concerns from every app's cache, whichever code path made the
# change (deactivation, a password change, a test ending a session by hand). Another
# process notices through the database within SESSION_CACHE_SECONDS.


@event.listens_for(Session, "after_flush")
def _forget_flushed_changes(session: Session, _flush: UOWTransaction) -> None:
    changed = [obj for obj in (*session.dirty, *session.deleted)
               if isinstance(obj, (AuthSession, User))]
    for cache in all_caches() if changed else ():
        for obj in changed:
            if isinstance(obj, AuthSession):
                cache.drop_session(obj.id)
            else:
                cache.drop_user(obj.id)


# Set on this module's own bulk statements, which drop the one session they change.
_FORGETS_ITSELF = {"mendwell_forgets_itself": True}


def _forget_session(session_id: int) -> None:
    for cache in all_caches():
        cache.drop_session(session_id)


@event.listens_for(Session, "do_orm_execute")
def _forget_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete) or \
            state.execution_options.get("mendwell_forgets_itself"):
        return
    table = getattr(state.statement, "table", None)
    if table is not None and table.name in (AuthSession.__tablename__, User.__tablename__):
        for cache in all_caches():
            cache.clear()


def csrf_ok(current: Current, supplied: str | None) -> bool:
    # compare_digest raises TypeError on non-ASCII text: compare bytes, so a forged header
    # is a refusal (403), never a server error.
    if not supplied:
        return False
    return hmac.compare_digest(current.session.csrf_token.encode(),
                               supplied.encode("utf-8", "surrogatepass"))


# --- join links -------------------------------------------------------------------
# A join link is a signed token naming the visit, its patient and the visit's
# ``join_link_version`` when it was made. A signature alone cannot be taken back, so
# revoking moves the visit's version on (the links made before no longer match) and ends
# the sessions that links started (``invalidate_join_links``). Staff revoke a visit's
# links (server/visits.py, ``revoke_join_links``), and ending the visit does too.


def make_join_token(services: Services, visit: Visit) -> str:
    """A signed token that admits this visit's patient to this visit only, until the
    visit's links are revoked or it expires."""
    return services.signer(JOIN_SALT).dumps(
        {"v": visit.id, "p": visit.patient_id, "g": visit.join_link_version,
         "n": secrets.token_hex(4)}
    )


@dataclass(frozen=True)
class JoinLink:
    """What a valid join token says (``read_join_token``)."""

    visit_id: int
    patient_id: int
    sent_at: datetime
    version: int


class JoinLinkError(Exception):
    """Why a join link cannot be used, in words for the patient."""


async def invalidate_join_links(session: AsyncSession, visit: Visit, *, now: datetime,
                                reason: str) -> int:
    """Make the visit's join links stop working and end the sessions they started
    (``reason`` is their end reason); the number of sessions ended. The caller records
    why (an audit entry, an event): this is part of revoking, or of ending the visit."""
    # In the database, so that the row stays locked until the transaction ends: a join
    # in flight (``join_submit`` locks the visit before it checks the version) waits,
    # then sees the new version.
    await session.execute(
        update(Visit).where(Visit.id == visit.id)
        .values(join_link_version=Visit.join_link_version + 1)
        .execution_options(synchronize_session=False))
    await session.refresh(visit, ["join_link_version"])
    # Only join links start sessions bound to one visit (AuthSession.visit_id).
    ended = await session.execute(
        update(AuthSession).where(AuthSession.visit_id == visit.id,
                                  AuthSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason).execution_options(synchronize_session=False))
    return int(getattr(ended, "rowcount", 0) or 0)


# However far ahead a visit is booked, a link older than this is not accepted.
JOIN_LINK_MAX_AGE = timedelta(days=90)


def join_link_expiry(services: Services, sent_at: datetime, starts_at: datetime) -> datetime:
    """A link works until MENDWELL_JOIN_LINK_HOURS after its visit starts (or after it was
    sent, for a link sent late): an invitation to a visit weeks ahead still works on the
    day, and a link stops working soon after its visit. Read with the visit's current
    start, so a rescheduled visit keeps its link."""
    return max(sent_at, starts_at) + timedelta(hours=services.settings.join_link_hours)


def read_join_token(services: Services, token: str, visit_id: int) -> JoinLink:
    """What a join token for ``visit_id`` says; raises JoinLinkError. The caller checks
    it against the visit (``check_join_link``)."""
    try:
        data, signed_at = services.signer(JOIN_SALT).loads(
            token, max_age=int(JOIN_LINK_MAX_AGE.total_seconds()), return_timestamp=True
        )
    except SignatureExpired:
        raise JoinLinkError("This link has expired. Ask your care team for a new one.") from None
    except BadSignature:
        raise JoinLinkError("This link is not valid. Please use the link from your email "
                            "exactly as it was sent.") from None
    if not isinstance(data, dict) or not isinstance(data.get("v"), int) or \
            not isinstance(data.get("p"), int):
        raise JoinLinkError("This link is not valid.")
    if data["v"] != visit_id:
        raise JoinLinkError("This link is for a different visit.")
    # Links sent before links could be revoked carry no version: the first one, 0.
    version = data.get("g", 0)
    if not isinstance(version, int):
        raise JoinLinkError("This link is not valid.")
    return JoinLink(data["v"], data["p"], signed_at, version)


def check_join_link(services: Services, link: JoinLink, visit: Visit) -> None:
    """Raises JoinLinkError when the visit's links were revoked since this one was made,
    or it expired (``join_link_expiry``, from the visit's current start)."""
    if link.version != visit.join_link_version:
        raise JoinLinkError("This link has been withdrawn. Ask your care team for a new one.")
    if services.clock.now() > join_link_expiry(services, link.sent_at, visit.scheduled_at):
        raise JoinLinkError("This link has expired. Ask your care team for a new one.")
