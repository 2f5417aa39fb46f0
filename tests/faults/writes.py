"""The writes a fault test keeps making through an outage, and how it counts them after.

Three kinds, as a visit makes them: the prescriber's note autosave (a chain of versions),
the coordinator's escalation timeline entries, the patient's check-in draft. Each write
carries a unique mark; what was acknowledged (2xx) is kept, and afterwards the database
is read directly: every acknowledged write must be there exactly once, and each write's
rows must be whole (a note version with its audit record, an escalation entry with its
audit record, a check-in version with the check-in's counter).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select

from server.db import create_engine, session_factory
from server.models import AuditEntry, CheckIn, CheckInVersion, EscalationEvent, VisitNote

# Keys a write is answered with: acknowledged (written), refused as unavailable
# (not written, try again), anything else (a failure of the test's subject).
ACKNOWLEDGED = (200, 201)


class Response(Protocol):
    status_code: int
    headers: Any

    def json(self) -> Any: ...


class Http(Protocol):
    def request(self, method: str, url: str, *, json: Any = ...,
                headers: dict[str, str] | None = ...) -> Any: ...


@dataclass
class Outcome:
    kind: str
    mark: int
    status: int
    seconds: float
    retry_after: str | None = None
    code: str | None = None


@dataclass
class Writes:
    """Makes the writes (``note``, ``event``, ``draft``) and remembers their answers."""

    http: Http
    visit_id: int
    escalation_id: int
    prescriber: dict[str, str]
    coordinator: dict[str, str]
    patient: dict[str, str]
    note_version: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    # What the note was last acknowledged as: (version, text).
    note_saved: tuple[int, str] | None = None
    # A save whose answer never came (the server died under it) may have been written.
    note_in_doubt: list[tuple[int, str]] = field(default_factory=list)
    marks: int = 0
    # What the client raises when no answer came at all (the serving process died).
    lost: tuple[type[BaseException], ...] = (OSError,)

    def _send(self, kind: str, method: str, url: str, body: dict[str, Any],
              headers: dict[str, str]) -> tuple[Outcome, Any]:
        self.marks += 1
        started = time.monotonic()
        try:
            response = self.http.request(method, url, json=body, headers=headers)
        except self.lost:
            # No answer at all: the process serving it died (the app-kill test).
            outcome = Outcome(kind, self.marks, 0, time.monotonic() - started)
            self.outcomes.append(outcome)
            return outcome, None
        data = response.json() if response.headers.get("content-type", "").startswith(
            "application/json") else None
        code = data.get("error", {}).get("code") if isinstance(data, dict) else None
        outcome = Outcome(kind, self.marks, response.status_code, time.monotonic() - started,
                          response.headers.get("retry-after"), code)
        self.outcomes.append(outcome)
        return outcome, data

    def note(self) -> Outcome:
        text = f"Autosave {self.marks + 1}: sleeping better."
        outcome, data = self._send(
            "note", "PUT", f"/api/v1/visits/{self.visit_id}/note",
            {"version": self.note_version, "sections": {"interval_history": text}},
            self.prescriber)
        if outcome.status in ACKNOWLEDGED:
            self.note_version = data["version"]
            self.note_saved = (self.note_version, text)
        elif outcome.status == 409 and outcome.code == "version_conflict":
            # A save that was written but whose answer was lost: the page merges and
            # carries on from the version the server has (note-autosave.js).
            self.note_version = data["error"]["current"]["version"]
        else:
            # Not acknowledged: not written, or written with its answer lost (the
            # server died, or the database went away, between commit and answer).
            self.note_in_doubt.append((self.note_version + 1, text))
        return outcome

    def event(self) -> Outcome:
        outcome, _ = self._send(
            "event", "POST", f"/api/v1/escalations/{self.escalation_id}/events",
            {"kind": "note", "text": f"Fault test entry {self.marks + 1}: left a message"},
            self.coordinator)
        return outcome

    def draft(self) -> Outcome:
        outcome, _ = self._send(
            "draft", "PUT", f"/api/v1/visits/{self.visit_id}/checkin/draft",
            {"sleep": {"hours": 6.5, "quality": "fair"},
             "side_effects": [{"effect": "other", "severity": "mild",
                               "details": f"Fault test draft {self.marks + 1}"}]},
            self.patient)
        return outcome

    def round(self) -> list[Outcome]:
        return [self.note(), self.event(), self.draft()]

    def acknowledged(self, kind: str) -> list[int]:
        return [o.mark for o in self.outcomes if o.kind == kind and o.status in ACKNOWLEDGED]

    def unanswered(self, kind: str) -> list[int]:
        """Writes that got no answer, or an answer that is not an acknowledgement."""
        return [o.mark for o in self.outcomes
                if o.kind == kind and o.status not in ACKNOWLEDGED]

    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.outcomes)


@dataclass
class Stored:
    """What the database holds of the writes, read directly."""

    note_version: int
    note_text: str | None
    note_audits: int
    events: Counter[int]          # mark -> rows
    event_audits: int
    drafts: Counter[int]          # mark -> versions
    draft_version: int


def _mark(text: str) -> int:
    """The write's mark from its text ("... entry 12: ...")."""
    return int(text.split(":", 1)[0].rsplit(" ", 1)[1])


async def stored(database_url: str, writes: Writes) -> Stored:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            note = (await session.scalars(
                select(VisitNote).where(VisitNote.visit_id == writes.visit_id))).one()
            note_audits = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(
                    AuditEntry.resource_type == "note", AuditEntry.action == "save",
                    AuditEntry.resource_id == str(note.id)))
            events = (await session.scalars(select(EscalationEvent).where(
                EscalationEvent.escalation_id == writes.escalation_id,
                EscalationEvent.kind == "note"))).all()
            event_audits = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(
                    AuditEntry.resource_type == "escalation", AuditEntry.action == "note",
                    AuditEntry.resource_id == str(writes.escalation_id)))
            checkin = (await session.scalars(
                select(CheckIn).where(CheckIn.visit_id == writes.visit_id))).one()
            versions = (await session.scalars(select(CheckInVersion).where(
                CheckInVersion.checkin_id == checkin.id))).all()
    finally:
        await engine.dispose()
    return Stored(
        note_version=note.version,
        note_text=note.sections.get("interval_history"),
        note_audits=int(note_audits or 0),
        events=Counter(_mark(e.detail["text"]) for e in events
                       if str(e.detail.get("text", "")).startswith("Fault test entry")),
        event_audits=int(event_audits or 0),
        drafts=Counter(_mark(v.data["side_effects"][0]["details"]) for v in versions
                       if v.data.get("side_effects")),
        draft_version=checkin.version,
    )


def check_exactly_once(writes: Writes, found: Stored, *, events_before: int = 0) -> None:
    """Every acknowledged write is stored once; nothing is half-written; what was not
    acknowledged is stored at most once (a write whose answer was lost may have landed).
    ``events_before``: timeline entries of the escalation written outside ``writes``."""
    for mark in writes.acknowledged("event"):
        assert found.events[mark] == 1, (mark, found.events)
    for mark in writes.unanswered("event"):
        assert found.events[mark] <= 1, (mark, found.events)
    for mark in writes.acknowledged("draft"):
        assert found.drafts[mark] == 1, (mark, found.drafts)
    for mark in writes.unanswered("draft"):
        assert found.drafts[mark] <= 1, (mark, found.drafts)
    # Whole: each entry with its audit record, each version with its counter.
    assert found.event_audits == sum(found.events.values()) + events_before
    assert found.draft_version == sum(found.drafts.values())
    assert found.note_audits == found.note_version
    # The note is at the last acknowledged save, or one a lost answer left behind.
    saved = writes.note_saved
    assert saved is not None
    candidates = [saved, *[c for c in writes.note_in_doubt if c[0] == writes.note_version]]
    if found.note_version == writes.note_version:
        assert (found.note_version, found.note_text) in candidates, (found, candidates)
    else:
        # The last save's answer was lost, and it landed.
        assert (found.note_version, found.note_text) in writes.note_in_doubt, found
