"""The one source of "now" for domain code.

Deadlines and timeouts are tested with a controllable clock: the app holds a Clock,
and tests move it forward with ``advance()`` instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        """Move this clock forward (tests and drills only)."""
        self._offset += delta


def utcnow() -> datetime:
    return datetime.now(UTC)
