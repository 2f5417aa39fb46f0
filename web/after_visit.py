"""The after-visit summary in the patient's words: medication changes as sentences, and
the visits whose summary is ready (for the patient's home).

Pure reading helpers over ``server.notes.AfterVisitSummary``, shared by the summary page
(``web.pages.summary``) and the patient's home.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import audit
from server.actors import Actor
from server.medications import MedicationChangeRow
from server.models import NoteStatus, Visit, VisitNote
from web.rendering import local_time

# Routes as the patient reads them; anything else is shown as the prescriber wrote it.
ROUTE_WORDS: Final = {"oral": "by mouth", "po": "by mouth", "sublingual": "under the tongue",
                      "transdermal": "as a skin patch", "intramuscular": "as an injection",
                      "im": "as an injection", "subcutaneous": "as an injection under the skin",
                      "intranasal": "as a nasal spray"}


@dataclass(frozen=True)
class Change:
    """One medication change as a sentence, and why."""

    drug: str
    text: str
    why: str | None


def _dose(row: MedicationChangeRow) -> str:
    amount = " ".join(part for part in (row.dose, row.unit) if part)
    how = ROUTE_WORDS.get(row.route.strip().lower(), row.route) if row.route else ""
    return ", ".join(part for part in (amount, how, row.frequency or "") if part)


def change_sentence(row: MedicationChangeRow) -> Change:
    drug = row.drug.strip()
    dose = _dose(row)
    at = f" {dose}" if dose else ""
    to = f" to {dose}" if dose else ""
    action = row.action
    if action == "start":
        text = f"Start taking {drug}{at}."
    elif action == "increase":
        text = f"Take more {drug}: the dose goes up{to}."
    elif action == "decrease":
        text = f"Take less {drug}: the dose goes down{to}."
    elif action == "switch":
        text = f"Stop taking {row.replaces or 'your old medication'} and start " \
               f"{drug}{at} instead."
    elif action == "taper":
        text = f"Lower {drug} slowly (taper){to}. Do not stop it all at once."
    elif action == "stop":
        text = f"Stop taking {drug}."
    else:
        text = f"Keep taking {drug}{at}, as before."
    return Change(drug, text, row.reason or None)


@dataclass(frozen=True)
class SummaryLink:
    visit_id: int
    day: str
    prescriber: str


async def signed_summaries(session: AsyncSession, actor: Actor, tz: str,
                           limit: int = 5) -> list[SummaryLink]:
    """The patient's own visits whose note is signed, newest first (for their home)."""
    query = (select(Visit).join(VisitNote, VisitNote.visit_id == Visit.id)
             .options(selectinload(Visit.prescriber))
             .where(Visit.patient_id == actor.user_id, VisitNote.status == NoteStatus.signed)
             .order_by(Visit.scheduled_at.desc()).limit(limit))
    if actor.scope_visit_id is not None:
        query = query.where(Visit.id == actor.scope_visit_id)
    found = list((await session.scalars(query)).all())
    audit.record_reads(session, actor, "visit", [(v.id, v.patient_id) for v in found])
    return [SummaryLink(v.id, local_time(v.scheduled_at, tz, "%A %-d %B"),
                        v.prescriber.name) for v in found]
