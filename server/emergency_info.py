"""The patient's emergency information: where they are, a callback number, a contact.

CLINICAL.md, safety invariant 8 ("Emergency information is real"): phone numbers are
parsed with ``phonenumbers`` (numbers without a country code read in the clinic's
region, ``MENDWELL_PHONE_REGION``) and stored in E.164; an address needs at least 8
characters with letters in it; a contact name at least 2 letters. Anything else is 422
naming the field, so "   ", "abc" or "---" never reaches a coordinator as a place to
send help.

A number is accepted when it is possible for its region (right length and pattern).
Whether a number is assigned to a line changes every day and cannot be known here, so
an unassigned area code is not refused: the callback is what the patient says reaches
them, and the coordinator hears at once if it does not.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.functional_validators import AfterValidator

from server.freetext import letters
from server.results import Instant, Result
from server.us_states import UsState

ADDRESS_MIN_CHARS: Final = 8
# The words of every location step (the check-in form, ``/visits/{id}/where``, the API's
# 422 naming ``location.state``).
STATE_MISSING: Final = "Choose the state you are in now."
CONTACT_NAME_MIN_LETTERS: Final = 2
DEFAULT_REGION: Final = "US"


def e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """The number in E.164 (``+16175550100``), or ValueError saying what is wrong."""
    text = raw.strip()
    if not any(char.isdigit() for char in text):
        raise ValueError("enter a phone number with its digits")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError("this is not a phone number we can call") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("this phone number has too few or too many digits")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def readable_phone(value: str | None) -> str | None:
    """A stored number as people read it (``+1 617-555-0100``); as stored when it is
    not E.164 (a number kept from before numbers were checked)."""
    if not value:
        return value
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _phone(value: str, info: ValidationInfo) -> str:
    region = (info.context or {}).get("phone_region", DEFAULT_REGION)
    return e164(value, region)


def _address(value: str) -> str:
    text = value.strip()
    if len(text) < ADDRESS_MIN_CHARS or letters(text) == 0:
        raise ValueError(f"give the full address, at least {ADDRESS_MIN_CHARS} characters "
                         "with the street or place name")
    return text


def _contact_name(value: str) -> str:
    text = value.strip()
    if letters(text) < CONTACT_NAME_MIN_LETTERS:
        raise ValueError("give the contact's name")
    return text


Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
Address = Annotated[str, Field(max_length=500), AfterValidator(_address)]
ContactName = Annotated[str, Field(max_length=200), AfterValidator(_contact_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Location(_Strict):
    address: Address
    # The US state the patient is in (USPS code): its licence, DEA registration and PDMP
    # apply to prescribing a controlled substance (server.controlled). Required for every
    # confirmation, but not by this model: the rule depends on the visit's risk
    # (server.checkins.require_state: on the crisis path the address and callback are
    # kept without it, so a missing state never holds up help).
    state: UsState | None = None


class DraftLocation(_Strict):
    """A draft's location: the state the patient chose so far may come alone (kept with
    the draft like any answer, confirming nothing); an address, when given, is checked
    as strictly as at completion and confirms the place."""

    address: Address | None = None
    state: UsState | None = None

    def confirmed(self) -> Location | None:
        return None if self.address is None else Location(address=self.address,
                                                          state=self.state)


class EmergencyContact(_Strict):
    name: ContactName
    phone: Phone


class EmergencyInfoBody(_Strict):
    """``PUT /api/v1/visits/{id}/checkin/emergency-info``: the patient confirms where they
    are and a callback number now (the contact may come with them)."""

    location: Location
    callback_phone: Phone
    emergency_contact: EmergencyContact | None = None


def validation_context(region: str) -> dict[str, str]:
    """What the validators above need: ``model_validate(data, context=...)``."""
    return {"phone_region": region}


class KnownLocation(Result):
    """A place as the patient gave it: the address, and the US state (USPS code) they
    named with it, None when they did not (on the crisis path, or before states were
    asked). The state comes from the same confirmation as the address, never an older
    one: there are Springfields in many states, and whoever sends help there needs the
    right one."""

    address: str | None
    state: str | None


class KnownContact(Result):
    name: str | None
    phone: str | None


# "checkin": confirmed for this visit; "last_checkin": an earlier visit's check-in
# (``on_file_at`` says when); "profile": the patient's profile.
Source = Literal["checkin", "last_checkin", "profile"]


class EmergencyInfo(Result):
    """Emergency information as a screen shows it: each value with when the patient
    confirmed it for this visit, or None when it is only on file (an earlier visit's
    check-in, the profile), which the screen labels as not confirmed today."""

    location: KnownLocation
    callback_phone: str | None
    emergency_contact: KnownContact
    # When the location and callback were confirmed for this visit; None: on file only.
    confirmed_at: Instant | None
    contact_confirmed_at: Instant | None
    source: Source | None  # None: nothing at all
    on_file_at: Instant | None = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def address(self) -> str | None:
        return self.location.address

    @property
    def state(self) -> str | None:
        return self.location.state

    @property
    def contact_name(self) -> str | None:
        return self.emergency_contact.name

    @property
    def contact_phone(self) -> str | None:
        return self.emergency_contact.phone
