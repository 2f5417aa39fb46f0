"""Events: each state change names who should hear of it.

Domain functions call ``emit(session, event)`` inside their transaction; the events are
published on the bus only after the transaction commits, so a screen never shows a
change that was rolled back. Events carry ids and states, never clinical text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.clock import utcnow
from server.results import JsonData, JsonObject

_PENDING = "mendwell.pending_events"


@dataclass(frozen=True)
class Event:
    kind: str
    recipients: frozenset[int]
    # Ids, states and ISO times: JSON, as the bus carries it to the browser.
    data: dict[str, JsonData] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def to_json(self) -> JsonObject:
        return {"type": self.kind, "at": self.at.isoformat(), **self.data}


def emit(session: AsyncSession, kind: str, recipients: Iterable[int],
         **data: JsonData) -> Event:
    event = Event(kind, frozenset(recipients), data)
    session.info.setdefault(_PENDING, []).append(event)
    return event


def take_pending(session: AsyncSession) -> list[Event]:
    events: list[Event] = session.info.pop(_PENDING, [])
    return events
