"""A prescriber's state licences and DEA registrations, on their profile.

CLINICAL.md, "Controlled substances by telehealth": the clinician must be licensed, and
DEA-registered for controlled substances, in the state where the patient is during the
visit. A DEA registration is per state, so each row is one state: the licence, and the
registration there if there is one. The signing gate reads them (``server.controlled``),
so the prescriber it checks must not write them: the clinic's admins, who verify them,
add, change and remove them; a prescriber reads their own
(``server.access.access_prescriber_credentials``). Every change is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit
from server.access import access_prescriber_credentials
from server.actors import Actor
from server.errors import ValidationFailed
from server.events import emit
from server.models import PrescriberCredential
from server.results import Instant, Result
from server.services import Services
from server.us_states import UsState

MAX_STATES: Final = 60


def _dea_number(value: str) -> str:
    """A DEA registration number: two letters and seven digits whose last is the check
    digit (the sum of the 1st, 3rd and 5th digits plus twice the sum of the 2nd, 4th and
    6th ends in it), so a typo is caught here rather than at the pharmacy."""
    text = value.strip().upper()
    if len(text) != 9 or not text[:2].isalpha() or not text[2:].isdigit():
        raise ValueError("a DEA number is two letters and seven digits, such as AB1234563")
    d = [int(c) for c in text[2:]]
    if (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 != d[6]:
        raise ValueError("this DEA number's check digit does not match; check it")
    return text


DeaNumber = Annotated[str, Field(max_length=20), AfterValidator(_dea_number)]


class CredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: UsState
    license_number: str = Field(min_length=1, max_length=40)
    license_expires_on: dt.date | None = None
    dea_number: DeaNumber | None = None
    dea_expires_on: dt.date | None = None


class CredentialsPut(BaseModel):
    """``PUT /api/v1/prescribers/{id}/credentials``: the whole list, one row a state."""

    model_config = ConfigDict(extra="forbid")

    credentials: list[CredentialIn] = Field(max_length=MAX_STATES)

    @model_validator(mode="after")
    def _one_row_a_state(self) -> CredentialsPut:
        seen: set[str] = set()
        for row in self.credentials:
            if row.state in seen:
                raise ValueError(f"{row.state} is listed twice; one row a state")
            seen.add(row.state)
        return self


class Credential(Result):
    id: int
    state: str
    license_number: str
    license_expires_on: dt.date | None
    dea_number: str | None
    dea_expires_on: dt.date | None
    updated_at: Instant


class Credentials(Result):
    prescriber_id: int
    credentials: list[Credential]


async def _listed(session: AsyncSession, prescriber_id: int) -> Credentials:
    rows = (await session.scalars(select(PrescriberCredential).where(
        PrescriberCredential.prescriber_id == prescriber_id)
        .order_by(PrescriberCredential.state))).all()
    return Credentials(prescriber_id=prescriber_id, credentials=[Credential(
        id=r.id, state=r.state, license_number=r.license_number,
        license_expires_on=r.license_expires_on, dea_number=r.dea_number,
        dea_expires_on=r.dea_expires_on, updated_at=r.updated_at) for r in rows])


async def get_credentials(session: AsyncSession, actor: Actor,
                          prescriber_id: int) -> Credentials:
    """A prescriber's licences and registrations (admins, and the prescriber)."""
    user = await access_prescriber_credentials(session, actor, prescriber_id, write=False)
    return await _listed(session, user.id)


async def set_credentials(session: AsyncSession, services: Services, actor: Actor,
                          prescriber_id: int, body: CredentialsPut) -> Credentials:
    """Replace the prescriber's licences and registrations with ``body``'s (admins only:
    a prescriber is refused with 403 ``credentials_recorded_by_admins``)."""
    user = await access_prescriber_credentials(session, actor, prescriber_id, write=True)
    for index, row in enumerate(body.credentials):
        if row.dea_expires_on is not None and row.dea_number is None:
            raise ValidationFailed("Give the DEA number this expiry date belongs to.",
                                   field=f"credentials.{index}.dea_number")
    now = services.clock.now()
    await session.execute(delete(PrescriberCredential).where(
        PrescriberCredential.prescriber_id == user.id))
    for row in body.credentials:
        session.add(PrescriberCredential(
            prescriber_id=user.id, state=row.state, license_number=row.license_number.strip(),
            license_expires_on=row.license_expires_on, dea_number=row.dea_number,
            dea_expires_on=row.dea_expires_on, updated_at=now, updated_by_id=actor.user_id))
    await session.flush()
    audit.record(session, actor, "update", "prescriber_credentials", user.id,
                 states=[row.state for row in body.credentials])
    emit(session, "prescriber.credentials_updated", {user.id, actor.user_id},
         prescriber_id=user.id)
    return await _listed(session, user.id)
