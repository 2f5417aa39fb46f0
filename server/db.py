"""Database engine, sessions and the column types shared by the models."""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type and hands back naive values; PostgreSQL stores
    ``timestamptz``. Either way the application only ever sees aware UTC datetimes,
    and refuses naive ones on the way in, because a naive time in a clinical record
    is an ambiguity nobody can resolve later.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# How long a request waits for the database before it is answered 503 `unavailable`
# (docs/reliability.md, "Outages"). A server that refuses connections (stopped,
# restarting) is noticed at once; these bound the wait for one that does not answer.
CONNECT_TIMEOUT_SECONDS = 5.0      # opening a PostgreSQL connection (asyncpg: 60 s)
STATEMENT_TIMEOUT_SECONDS = 10.0   # one PostgreSQL statement, row-lock waits included
POOL_TIMEOUT_SECONDS = 10.0        # waiting for a free pooled connection (SQLAlchemy: 30 s)
# SQLite has no server to lose: what a request waits for is another writer's lock.
SQLITE_BUSY_SECONDS = 30


def create_engine(url: str, *,
                  statement_timeout: float | None = STATEMENT_TIMEOUT_SECONDS) -> AsyncEngine:
    """The engine for ``url``. ``statement_timeout=None`` lets a statement run as long as
    it takes (migrations); serving keeps the bound."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # One writer at a time; wait for the lock rather than failing a clinical write.
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    else:
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 20
        kwargs["pool_pre_ping"] = True
        kwargs["pool_timeout"] = POOL_TIMEOUT_SECONDS
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS,
                                  "command_timeout": statement_timeout}
    engine = create_async_engine(url, hide_parameters=True, **kwargs)  # server/logs.py
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; synchronous=FULL makes a commit durable
    # before we acknowledge it (a check-in must survive a power cut once saved).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on error."""
    async with factory() as session, session.begin():
        yield session


# The network going away under a connection, as the OS reports it.
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                             errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                             errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})
# PostgreSQL saying it cannot serve now, by SQLSTATE (asyncpg's exceptions carry it):
# connection exceptions (class 08: asyncpg's PostgresConnectionError,
# ConnectionDoesNotExistError, ...), shutting down or starting up (57P01-57P03:
# AdminShutdownError, CrashShutdownError, CannotConnectNowError), out of connection
# slots (53300).
_POSTGRES_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLite's primary result codes (the low byte of an extended one): SQLITE_BUSY,
# SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 13, 14})


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (stopped, restarting,
    not answering, out of connections), rather than that a query was wrong.

    The first is answered 503 with Retry-After: trying again later will work. The second
    stays a 500, since it is a bug. SQLAlchemy and the drivers wrap what went wrong, so
    the whole chain of causes is judged.
    """
    for cause in _causes(exc):
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, sa_exc.TimeoutError):  # no pooled connection came free
            return True
        if isinstance(cause, ConnectionError | TimeoutError | socket.gaierror):
            return True
        if isinstance(cause, OSError) and cause.errno in _NETWORK_ERRNOS:
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith("08") or
                                          sqlstate in _POSTGRES_UNAVAILABLE):
            return True
        # SQLite: another writer held the lock for the whole busy timeout, or the file
        # cannot be opened, read or written (a disk gone, full or failing).
        code = getattr(cause, "sqlite_errorcode", None)  # unset when raised by Python
        if isinstance(cause, sqlite3.Error) and isinstance(code, int) and \
                code & 0xFF in _SQLITE_UNAVAILABLE:
            return True
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it wraps (``orig``) and what it was raised from, a few levels deep.
    Not ``__context__``: an error raised while handling another is not caused by it."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 8:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
