"""The note panel's "Controlled substances" block: where the patient is for this visit,
whether the signer is licensed and DEA-registered there, and the visit's PDMP checks,
with the form that records one (static/controlled-panel.js). The signing gate itself is
server.controlled; this only shows what it will read."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import pdmp
from server.actors import Actor
from server.controlled import clinic_date, credentials_of
from server.models import CheckIn, Role
from server.services import Services
from server.us_states import US_STATES, state_name
from server.visits import VisitRecord


@dataclass(frozen=True)
class ControlledPanel:
    state: str | None
    state_name: str
    # For the prescriber viewing: a current licence / DEA registration in that state
    # (None: not a prescriber, or the state is not known).
    licensed: bool | None
    dea_registered: bool | None
    checks: list[pdmp.PdmpCheckRecord]
    states: dict[str, str]
    results: tuple[str, ...]


async def build(session: AsyncSession, services: Services, actor: Actor,
                visit: VisitRecord) -> ControlledPanel:
    state = await session.scalar(select(CheckIn.location_state).where(
        CheckIn.visit_id == visit.id))
    licensed = dea = None
    if state and actor.role is Role.prescriber:
        today = clinic_date(services, services.clock.now())
        held = (await credentials_of(session, actor.user_id)).get(state)
        licensed = held is not None and (held.license_expires_on is None
                                         or held.license_expires_on >= today)
        dea = held is not None and held.dea and (held.dea_expires_on is None
                                                 or held.dea_expires_on >= today)
    checks = await pdmp.visit_checks(session, services, actor, visit.id)
    return ControlledPanel(state=state, state_name=state_name(state), licensed=licensed,
                           dea_registered=dea, checks=checks, states=US_STATES,
                           results=pdmp.RESULTS)
