"""Recently loaded sessions, held in this process for a few seconds.

Every request of a signed-in person needs their session row and user; reading them is
a database transaction of its own, which on a busy page (the visit room) cost about as
much as the page's own. The cache keeps the decoded session per token hash for at
most ``SESSION_CACHE_SECONDS``, and never past the moment the database path would do
something with it: the touch of ``last_seen_at`` falling due, the idle timeout, the
absolute lifetime. So a cached session is only ever one the database would also have
answered live and left unchanged.

What ends a session drops it here at once (logout, ``touch``, an expiry found on the
database path), and so does any flush or bulk statement that changes a ``sessions`` or
``users`` row in this process (an admin deactivating an account, a password change):
see the listeners at the end of ``server.auth``. Another instance learns of a logout through
the database only, so there a session stays usable for at most
``SESSION_CACHE_SECONDS`` after it ended (documented in docs/security.md).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.auth import Current

# The longest a logout or deactivation on another instance goes unnoticed here.
SESSION_CACHE_SECONDS = 5
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    current: Current
    until: datetime


class SessionCache:
    """Live sessions by token hash, each until a time set when it was stored."""

    def __init__(self, ttl: timedelta = timedelta(seconds=SESSION_CACHE_SECONDS),
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        # Counts the drops. A load that read the database before a logout must not
        # store what it read after the logout dropped it: ``put`` is given the
        # generation seen before the read and stores nothing if a drop came since.
        self.generation = 0
        _ALL.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: datetime) -> Current | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.until:
            del self._entries[key]
            return None
        return entry.current

    def put(self, key: str, current: Current, until: datetime, now: datetime, *,
            generation: int) -> None:
        """Hold ``current`` until ``until`` or the cache's own lifetime, whichever is
        sooner; nothing is held when that is already past, or when anything was dropped
        since ``generation`` was read."""
        until = min(until, now + self.ttl)
        if until <= now or self.ttl <= timedelta(0) or generation != self.generation:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= self.max_entries:
            self._evict(now)
        self._entries[key] = _Entry(current, until)

    def drop_session(self, session_id: int) -> None:
        self.generation += 1
        for key in [k for k, e in self._entries.items() if e.current.session.id == session_id]:
            del self._entries[key]

    def drop_user(self, user_id: int) -> None:
        self.generation += 1
        for key in [k for k, e in self._entries.items() if e.current.user.id == user_id]:
            del self._entries[key]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def _evict(self, now: datetime) -> None:
        for key in [k for k, e in self._entries.items() if now >= e.until]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest stored


# Every cache in this process (one per running app; tests start several), so a change
# made through any app's database session reaches them all.
_ALL: weakref.WeakSet[SessionCache] = weakref.WeakSet()


def all_caches() -> list[SessionCache]:
    return list(_ALL)
