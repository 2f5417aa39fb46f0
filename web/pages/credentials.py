"""A prescriber's state licences and DEA registrations, as a page: the clinic's admins
record any prescriber's; a prescriber reads their own (``server.prescriber_credentials``,
the same functions, access and audit as ``/api/v1/prescribers/{id}/credentials``).

The controlled-substance signing gate reads them (``server.controlled``), so its
message about a missing licence or DEA registration links here, and the prescriber it
checks does not write them: a prescriber sees the list read only, with whom to ask,
and their post is refused (``server.access.access_prescriber_credentials``).

For admins, one form holds the whole list, one row a state, like the API's body: Save replaces the
list; a row's Remove saves the list without that row; "Add another state" gives a blank
row (``static/credentials-form.js`` without a round trip; without JavaScript the page
comes back with the rows as typed and one more, nothing saved). Every row's problems are
shown at once, next to their fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Final
from urllib.parse import urlencode

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import prescriber_credentials as creds
from server.access import access_prescriber_credentials, records_prescriber_credentials
from server.controlled import clinic_date
from server.errors import ValidationFailed
from server.http import actor_of, client_ip, path_id, services_of
from server.models import User
from server.timezones import clinic_zone
from server.us_states import US_STATES, state_name
from web.forms import checked_form
from web.rendering import render

FIELDS: Final = ("state", "license_number", "license_expires_on", "dea_number",
                 "dea_expires_on")
LABELS: Final = {"state": "state", "license_number": "licence number",
                 "license_expires_on": "licence expiry date", "dea_number": "DEA number",
                 "dea_expires_on": "DEA expiry date"}
# What a browser may post: the API's limit of rows, and each field's longest value.
MAX_ROWS: Final = creds.MAX_STATES
MAX_LENGTH: Final = 40


@dataclass
class Row:
    """One state's row as the form shows it: the values (as typed, or as stored) and
    the problem with each field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    license_expired: bool = False
    dea_expired: bool = False

    @property
    def blank(self) -> bool:
        return not any(self.values.values())

    @property
    def label(self) -> str:
        code = self.values.get("state", "")
        return state_name(code) if code in US_STATES else "New state"


def _day(iso: str) -> str:
    """A stored date as the read-only list shows it, such as "30 Jun 2027"."""
    day = date.fromisoformat(iso)
    return f"{day.day} {day:%b %Y}"


def _blank() -> Row:
    return Row({name: "" for name in FIELDS})


def _stored(found: creds.Credentials, today: date) -> list[Row]:
    rows = []
    for c in found.credentials:
        rows.append(Row(
            {"state": c.state, "license_number": c.license_number,
             "license_expires_on": c.license_expires_on.isoformat()
             if c.license_expires_on else "",
             "dea_number": c.dea_number or "",
             "dea_expires_on": c.dea_expires_on.isoformat() if c.dea_expires_on else ""},
            license_expired=c.license_expires_on is not None and c.license_expires_on < today,
            dea_expired=c.dea_expires_on is not None and c.dea_expires_on < today))
    return rows


def _posted(form: FormData) -> list[Row]:
    """The rows as posted: each field's values in document order, one a row."""
    columns = {name: [str(v).strip()[:MAX_LENGTH] for v in form.getlist(name)]
               for name in FIELDS}
    count = max(len(values) for values in columns.values())
    if count > 2 * MAX_ROWS:
        raise ValidationFailed(f"At most {MAX_ROWS} states.", field="state")
    return [Row({name: (columns[name][i] if i < len(columns[name]) else "")
                 for name in FIELDS}) for i in range(count)]


def _message(name: str, error: ErrorDetails) -> str:
    """Pydantic's complaint about one field, in the page's words."""
    kind = error["type"]
    if kind in ("missing", "string_too_short"):
        return f"Enter the {LABELS[name]}."
    if kind.startswith("date"):
        return f"Enter the {LABELS[name]} as a date, such as 2027-06-30."
    if kind == "string_too_long":
        return f"The {LABELS[name]} is too long."
    text = re.sub(r"^Value error, ", "", str(error["msg"]))
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _checked(rows: list[Row]) -> list[creds.CredentialIn] | None:
    """Each filled row as the API's row, or None after marking every problem on its
    row: a field pydantic refuses, and a state listed twice."""
    kept: list[creds.CredentialIn] = []
    seen: set[str] = set()
    for row in rows:
        # A state listed twice is the second row's problem, whatever else is wrong
        # with the first.
        state = row.values["state"].upper()
        if state in US_STATES and state in seen:
            row.errors["state"] = (f"{state_name(state)} is already listed above; "
                                   "one row a state.")
        seen.add(state)
        given = {k: v for k, v in row.values.items() if v}
        try:
            credential = creds.CredentialIn.model_validate(given)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                name = str(error["loc"][0]) if error["loc"] else "state"
                name = name if name in FIELDS else "state"
                row.errors.setdefault(name, _message(name, error))
            continue
        kept.append(credential)
    if any(row.errors for row in rows):
        return None
    return kept


async def credentials_page(request: Request, *, rows: list[Row] | None = None,
                           status: int = 200, error: str | None = None,
                           done: str | None = None) -> Response:
    actor = actor_of(request)
    prescriber_id = path_id(request, "prescriber_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await creds.get_credentials(session, actor, prescriber_id)
        prescriber = await session.get(User, prescriber_id)
    assert prescriber is not None  # get_credentials found them
    today = clinic_date(services, services.clock.now())
    editable = records_prescriber_credentials(actor)
    if rows is None:
        rows = [*_stored(found, today), *([_blank()] if editable else [])]
    updated = max((c.updated_at for c in found.credentials), default=None)
    return render(request, "credentials.html", status=status, prescriber=prescriber,
                  rows=rows, blank_row=_blank(), states=US_STATES, editable=editable,
                  day=_day, own=actor.user_id == prescriber_id,
                  error=error, done=done or _done(request), updated=updated,
                  tz=clinic_zone(services.settings))


def _done(request: Request) -> str | None:
    if not request.query_params.get("saved"):
        return None
    removed = [state_name(code) for code in request.query_params.getlist("removed")
               if code in US_STATES]
    return f"Saved. Removed: {', '.join(removed)}." if removed else "Saved."


async def credentials_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    prescriber_id = path_id(request, "prescriber_id")
    services = services_of(request)
    # Before anything of the form is read: a prescriber may not even get a row added.
    async with services.transaction() as session:
        await access_prescriber_credentials(session, actor, prescriber_id, write=True)
    rows = _posted(form)
    if form.get("add"):
        # Without JavaScript: the rows as typed and a blank one; nothing is saved yet.
        typed = [row for row in rows if not row.blank]
        return await credentials_page(request, rows=[*typed, _blank()],
                                      done="Fill in the new row, then save.")
    removed: list[str] = []
    for chosen in {str(v) for v in form.getlist("remove")}:
        # The row's place in the form (0 is the first): not an id, so not int_param.
        if not (len(chosen) <= 3 and chosen.isascii() and chosen.isdigit()
                and int(chosen) < len(rows)):
            raise ValidationFailed("Choose a row to remove.", field="remove")
    for index in sorted({int(str(v)) for v in form.getlist("remove")}, reverse=True):
        removed.append(rows.pop(index).values.get("state", ""))
    rows = [row for row in rows if not row.blank]
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(f"At most {MAX_ROWS} states.", field="state")
    kept = _checked(rows)
    if kept is None:
        return await credentials_page(
            request, rows=[*rows, _blank()], status=422,
            error="Nothing was saved: correct the fields marked below.")
    try:
        body = creds.CredentialsPut(credentials=kept)
        async with services.transaction() as session:
            await creds.set_credentials(session, services, actor, prescriber_id, body)
    except ValidationFailed as exc:
        # A rule of the domain's own (an expiry date without its DEA number): by its row.
        place = re.fullmatch(r"credentials\.(\d+)\.(\w+)", exc.field or "")
        by_field = bool(place and int(place[1]) < len(rows) and place[2] in FIELDS)
        if place and by_field:
            rows[int(place[1])].errors[place[2]] = exc.message
        return await credentials_page(
            request, rows=[*rows, _blank()], status=422,
            error="Nothing was saved: correct the fields marked below." if by_field
            else exc.message)
    gone = [code for code in removed if code in US_STATES]
    query = urlencode([("saved", "1"), *(("removed", code) for code in sorted(gone))])
    return RedirectResponse(f"/prescribers/{prescriber_id}/credentials?{query}",
                            status_code=303)


ROUTES = [
    Route("/prescribers/{prescriber_id}/credentials", credentials_page, methods=["GET"]),
    Route("/prescribers/{prescriber_id}/credentials", credentials_submit, methods=["POST"]),
]
