"""Which clock a page shows: the clinic's for staff, the patient's own for patients.

A patient in another state who reads "10:00" for a visit booked at 10:00 in the clinic's
zone joins an hour early or late; so every time a patient reads is in the time zone of
their profile (with its abbreviation), and staff read the clinic's
(``MENDWELL_CLINIC_TIMEZONE``), which also sets the clinic's day and business days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.actors import Actor
from server.errors import ValidationFailed
from server.models import PatientProfile, Role
from server.settings import Settings, is_zone_name

DEFAULT_ZONE = "America/New_York"


def check_zone(name: str, *, field: str = "timezone") -> str:
    if not is_zone_name(name):
        raise ValidationFailed(
            "Enter a time zone by its name, such as America/Chicago.", field=field)
    return name


def clinic_zone(settings: Settings) -> str:
    return settings.clinic_timezone


def local_date(moment: datetime, zone: str) -> date:
    """The calendar day ``moment`` falls on in ``zone`` (a due date, a consent's
    expiry, "today" on the clinic's clock)."""
    return moment.astimezone(ZoneInfo(zone)).date()


async def patient_zone(session: AsyncSession, settings: Settings, patient_id: int) -> str:
    zone = await session.scalar(
        select(PatientProfile.timezone).where(PatientProfile.user_id == patient_id))
    return zone if zone and is_zone_name(zone) else clinic_zone(settings)


async def viewer_zone(session: AsyncSession, settings: Settings, actor: Actor) -> str:
    """The zone the acting user reads times in."""
    if actor.role is Role.patient:
        return await patient_zone(session, settings, actor.user_id)
    return clinic_zone(settings)


def wall_clock(day: date, at: time, zone: str, *, field: str = "time") -> datetime:
    """``day`` at ``at`` on the clocks of ``zone``, as an aware datetime. A time the clocks
    skip (going forward) is refused rather than guessed: an hour off is a missed visit.
    A time they pass twice (going back) is the first of the two."""
    tz = ZoneInfo(zone)
    local = datetime.combine(day, at, tzinfo=tz)
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise ValidationFailed(f"{at.strftime('%H:%M')} does not exist on that day in "
                               f"{zone.replace('_', ' ')} (the clocks go forward).", field=field)
    return local
