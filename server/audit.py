"""The audit log: who did what to which record, when, from where, and the outcome.

Every read and write of patient information goes through ``record``. Detail carries
identifiers and field names only, never clinical content.

Entries are written in the transaction that recorded them, at its commit, in one
statement: a page that reads eight parts of a record writes its eight rows in one
INSERT instead of one per read. A transaction that is rolled back writes none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import JsonValue
from sqlalchemy import Select, and_, event, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, aliased

from server.actors import Actor
from server.clock import utcnow
from server.errors import Refusal
from server.models import AuditEntry, User
from server.results import Instant, JsonData, Result

SUCCESS = "success"
DENIED = "denied"
FAILURE = "failure"

_PENDING = "mendwell.audit_pending"


def record(
    session: AsyncSession,
    actor: Actor | None,
    action: str,
    resource_type: str,
    resource_id: object = None,
    *,
    patient_id: int | None = None,
    outcome: str = SUCCESS,
    ip: str | None = None,
    at: datetime | None = None,
    **detail: JsonData,
) -> None:
    """Queue an entry; it is written when ``session``'s transaction commits."""
    session.info.setdefault(_PENDING, []).append({
        "at": at or utcnow(),
        "actor_id": actor.user_id if actor else None,
        "actor_role": actor.role.value if actor else None,
        "action": action,
        "resource_type": resource_type,
        "resource_id": None if resource_id is None else str(resource_id),
        "patient_id": patient_id,
        "outcome": outcome,
        "ip": ip or (actor.ip if actor else None),
        "detail": detail,
    })


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = _one_read_each(session.info.pop(_PENDING, None) or [])
    if pending:
        # One executemany for the transaction's entries, inside the transaction it
        # audits: the entries and the changes they describe commit together or not at all.
        # render_nulls: every entry gives every column, so an entry with a null (no
        # patient, a note not stored yet) does not split the batch into statements.
        session.execute(insert(AuditEntry).execution_options(render_nulls=True), pending)


def _one_read_each(pending: list[dict[str, object]]) -> list[dict[str, object]]:
    """One 'read' row per record a transaction read, the first: a page that shows a
    visit in its header, its panel and its check-in reads it three times, but its
    reader saw it once, and an audit log full of repeats hides what matters."""
    seen: set[tuple[object, ...]] = set()
    kept = []
    for entry in pending:
        if entry["action"] == "read" and entry["outcome"] == SUCCESS:
            key = (entry["actor_id"], entry["resource_type"], entry["resource_id"])
            if key in seen:
                continue
            seen.add(key)
        kept.append(entry)
    return kept


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    # What the outermost transaction did not write at its commit (it was rolled back)
    # must not be written by the session's next transaction.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def record_refusal(session: AsyncSession, actor: Actor, refusal: Refusal,
                   path: str) -> None:
    """The 'denied' entry of a refused access (``APIError.audit``, set by the access
    helpers), written in its own transaction: the request's was rolled back."""
    record(session, actor, refusal["action"], refusal["resource_type"],
           refusal["resource_id"], patient_id=refusal["patient_id"], outcome=DENIED,
           path=path)


def record_reads(
    session: AsyncSession,
    actor: Actor,
    resource_type: str,
    rows: Iterable[tuple[object, int]],
) -> None:
    """One 'read' entry per record returned by a list (resource id, patient id)."""
    now = utcnow()
    for resource_id, patient_id in rows:
        record(session, actor, "read", resource_type, resource_id, patient_id=patient_id, at=now)


@dataclass(frozen=True)
class AuditFilter:
    actor_id: int | None = None
    patient_id: int | None = None
    action: str | None = None
    resource_type: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_query(f: AuditFilter) -> Select[AuditEntry]:
    actor_id, patient_id, action = f.actor_id, f.patient_id, f.action
    resource_type, outcome, since, until = f.resource_type, f.outcome, f.since, f.until
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    if patient_id is not None:
        query = query.where(AuditEntry.patient_id == patient_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if resource_type:
        query = query.where(AuditEntry.resource_type == resource_type)
    if outcome:
        query = query.where(AuditEntry.outcome == outcome)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return query


class AuditRecord(Result):
    """One entry of the audit log, as the admin API lists and exports it."""

    id: int
    at: Instant
    actor_id: int | None
    actor_role: str | None
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: int | None
    outcome: str
    ip: str | None
    detail: dict[str, JsonValue]


def audit_record(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=entry.id, at=entry.at, actor_id=entry.actor_id, actor_role=entry.actor_role,
        action=entry.action, resource_type=entry.resource_type,
        resource_id=entry.resource_id, patient_id=entry.patient_id, outcome=entry.outcome,
        ip=entry.ip, detail=entry.detail)


# --- the admin's page of the log ------------------------------------------------------

PAGE_SIZE = 50


def day_bounds(first: date | None, last: date | None, zone: str
               ) -> tuple[datetime | None, datetime | None]:
    """The UTC instants from the start of ``first`` to the end of ``last``, both whole
    days in ``zone`` (the clinic's): an admin asking for "8 March" means the clinic's
    8 March, which in New York is 23 hours long and starts at 05:00 UTC."""
    tz = ZoneInfo(zone)
    since = datetime.combine(first, time.min, tzinfo=tz).astimezone(UTC) if first else None
    until = (datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
             if last else None)
    return since, until


class AuditRow(Result):
    """An entry as the page shows it: its people by name as well as by id."""

    id: int
    at: Instant
    actor_id: int | None
    actor_name: str | None
    actor_role: str | None
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: int | None
    patient_name: str | None
    outcome: str
    ip: str | None


class AuditPage(Result):
    """Newest first. ``older``: the id to page on from (``before``); ``newer``: the id to
    page back from (``after``), or None on the newest page."""

    rows: list[AuditRow]
    older: int | None
    newer: int | None


async def read_page(session: AsyncSession, actor: Actor, f: AuditFilter, *,
                    before: int | None = None, after: int | None = None,
                    size: int = PAGE_SIZE) -> AuditPage:
    """One page of the log, its people's names in the same query (one query a page,
    not one a row), itself recorded as a read of the log.

    Keyset paging on (at, id): reading the log writes to it, so counting pages by
    offset would shift every older page by a row at each look."""
    who, patient = aliased(User), aliased(User)
    query = (audit_query(f)
             .add_columns(who.name, patient.name)
             .outerjoin(who, who.id == AuditEntry.actor_id)
             .outerjoin(patient, patient.id == AuditEntry.patient_id))
    cursor = before if before is not None else after
    if cursor is not None:
        at = select(AuditEntry.at).where(AuditEntry.id == cursor).scalar_subquery()
        if before is not None:
            query = query.where(or_(AuditEntry.at < at,
                                    and_(AuditEntry.at == at, AuditEntry.id < cursor)))
        else:
            query = query.where(or_(AuditEntry.at > at,
                                    and_(AuditEntry.at == at, AuditEntry.id > cursor)))
            # The nearest newer entries first, shown newest first below.
            query = query.order_by(None).order_by(AuditEntry.at, AuditEntry.id)
    found = list((await session.execute(query.limit(size + 1))).all())
    more = len(found) > size
    if after is not None and not more:
        # Back at the newest entries: show the newest page, full, as the first look did.
        return await read_page(session, actor, f, size=size)
    found = found[:size]
    if after is not None:
        found.reverse()
    rows = [AuditRow(
        id=e.id, at=e.at, actor_id=e.actor_id, actor_name=actor_name,
        actor_role=e.actor_role, action=e.action, resource_type=e.resource_type,
        resource_id=e.resource_id, patient_id=e.patient_id, patient_name=patient_name,
        outcome=e.outcome, ip=e.ip) for e, actor_name, patient_name in found]
    older = rows[-1].id if rows and (more or after is not None) else None
    newer = rows[0].id if rows and (before is not None or after is not None) else None
    record(session, actor, "read", "audit_log", None, count=len(rows))
    return AuditPage(rows=rows, older=older, newer=newer)
