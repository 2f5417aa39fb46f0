"""Admin pages: accounts, care teams, the on-call rota, the audit log and the email outbox."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import accounts, audit, oncall
from server.access import access_rota, require_role
from server.api.admin import audit_filter
from server.errors import APIError, ValidationFailed
from server.http import YEARS, actor_of, int_param, path_id, services_of
from server.models import CareTeamMember, OutboxEmail, Role
from server.timezones import clinic_zone
from web.forms import checked_form, text_field
from web.rendering import local_time, render


async def accounts_page(request: Request, *, error: str | None = None,
                        status: int = 200) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    async with services_of(request).transaction() as session:
        users = await accounts.list_users(session, actor)
    return render(request, "admin_accounts.html", status=status, users=users,
                  roles=[r.value for r in Role], error=error)


async def create_account(request: Request) -> Response:
    form, _ = await checked_form(request)
    actor = actor_of(request)
    require_role(actor, Role.admin)
    services = services_of(request)
    try:
        role_value = text_field(form, "role", max_length=32)
        if role_value not in Role.__members__:
            raise ValidationFailed("Choose a role.", field="role")
        async with services.transaction() as session:
            await accounts.create_user(
                session, actor, email=text_field(form, "email", max_length=254),
                name=text_field(form, "name", max_length=200), role=Role(role_value),
                password=text_field(form, "password", required=False, max_length=200) or None,
                now=services.clock.now(),
                timezone=(text_field(form, "timezone", required=False, max_length=64) or None)
                if role_value == Role.patient.value else None)
    except APIError as exc:
        return await accounts_page(request, error=exc.message, status=exc.status)
    return RedirectResponse("/admin", status_code=303)


async def set_account_active(request: Request) -> Response:
    form, _ = await checked_form(request)
    actor = actor_of(request)
    user_id = path_id(request, "user_id")
    async with services_of(request).transaction() as session:
        await accounts.set_active(session, actor, user_id, form.get("active") == "1")
    return RedirectResponse("/admin", status_code=303)


async def care_teams_page(request: Request, *, error: str | None = None,
                          status: int = 200) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    async with services_of(request).transaction() as session:
        users = await accounts.list_users(session, actor)
        rows = (await session.execute(select(CareTeamMember))).scalars().all()
    by_id = {u.id: u for u in users}
    teams: dict[int, list[accounts.Account]] = {u.id: [] for u in users
                                                if u.role is Role.patient}
    for row in rows:
        if row.patient_id in teams and row.member_id in by_id:
            teams[row.patient_id].append(by_id[row.member_id])
    return render(request, "admin_care_teams.html", status=status, error=error,
                  patients=[by_id[pid] for pid in teams], teams=teams,
                  staff=[u for u in users if u.role in (Role.prescriber, Role.coordinator)])


async def add_member(request: Request) -> Response:
    form, _ = await checked_form(request)
    actor = actor_of(request)
    services = services_of(request)
    try:
        async with services.transaction() as session:
            await accounts.add_to_care_team(
                session, actor, patient_id=int_param(str(form.get("patient_id")), "patient_id"),
                member_id=int_param(str(form.get("member_id")), "member_id"),
                now=services.clock.now())
    except APIError as exc:
        return await care_teams_page(request, error=exc.message, status=exc.status)
    return RedirectResponse("/admin/care-teams", status_code=303)


async def remove_member(request: Request) -> Response:
    form, _ = await checked_form(request)
    actor = actor_of(request)
    async with services_of(request).transaction() as session:
        await accounts.remove_from_care_team(
            session, actor, patient_id=int_param(str(form.get("patient_id")), "patient_id"),
            member_id=int_param(str(form.get("member_id")), "member_id"))
    return RedirectResponse("/admin/care-teams", status_code=303)


AUDIT_DATE_FIELDS = {"from": "From", "to": "To"}


def _day(raw: str, field: str) -> date:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{AUDIT_DATE_FIELDS[field]}: enter a date such as "
                               "2026-03-08.", field=field) from None
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise ValidationFailed(f"{AUDIT_DATE_FIELDS[field]}: enter a date from the year "
                               f"{YEARS[0]} to {YEARS[1]}.", field=field)
    return day


def _audit_page_filter(request: Request, zone: str
                       ) -> tuple[audit.AuditFilter, int | None, int | None]:
    """The API's filters, plus whole days in the clinic's zone (the date pickers) and the
    page's cursor; 422 naming the field."""
    params = request.query_params
    filters = audit_filter(request)
    first, last = (_day(params[name], name) if params.get(name) else None
                   for name in ("from", "to"))
    if first and last and last < first:
        raise ValidationFailed("To: choose a day on or after From.", field="to")
    since, until = audit.day_bounds(first, last, zone)
    if since is not None:
        filters = replace(filters, since=max(since, filters.since or since))
    if until is not None:
        filters = replace(filters, until=min(until, filters.until or until))
    before, after = (int_param(params[name], name) if params.get(name) else None
                     for name in ("before", "after"))
    return filters, before, after


def _audit_links(request: Request, page: audit.AuditPage,
                 filters: audit.AuditFilter) -> dict[str, str]:
    """Older and Newer keep the filters; the export takes the same entries' filters in
    the API's terms (the days as UTC instants)."""
    kept = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("before", "after") and v]
    links = {}
    if page.older is not None:
        links["older"] = "/admin/audit?" + urlencode([*kept, ("before", str(page.older))])
    if page.newer is not None:
        links["newer"] = "/admin/audit?" + urlencode([*kept, ("after", str(page.newer))])
    export = [(k, v) for k, v in kept if k not in ("from", "to", "since", "until")]
    export += [(name, value.isoformat()) for name, value in
               (("since", filters.since), ("until", filters.until)) if value is not None]
    links["export"] = "/api/v1/audit.csv" + ("?" + urlencode(export) if export else "")
    return links


async def audit_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    services = services_of(request)
    zone = clinic_zone(services.settings)
    try:
        filters, before, after = _audit_page_filter(request, zone)
    except ValidationFailed as exc:
        # The form again with the error by its field, not an error page.
        return render(request, "admin_audit.html", status=exc.status, page=None, links={},
                      params=request.query_params, tz=zone, error=exc.message,
                      error_field=exc.field)
    async with services.transaction() as session:
        page = await audit.read_page(session, actor, filters, before=before, after=after)
    return render(request, "admin_audit.html", page=page, tz=zone,
                  links=_audit_links(request, page, filters), params=request.query_params,
                  error=None, error_field=None)


async def outbox_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.admin)
    services = services_of(request)
    async with services.transaction() as session:
        emails = list((await session.scalars(
            select(OutboxEmail).order_by(OutboxEmail.id.desc()).limit(100))).all())
        audit.record(session, actor, "read", "outbox", None, count=len(emails))
    return render(request, "admin_outbox.html", emails=emails,
                  tz=clinic_zone(services.settings),
                  show_body=services.settings.is_development,
                  smtp=bool(services.settings.smtp_url))


# --- the on-call rota (safety invariant 5) -------------------------------------------

SHIFT_FIELDS = ("user_id", "starts_at", "ends_at")
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows
SHIFT_WORDS = {"starts_at": "starts", "ends_at": "ends"}
# How far ahead the page looks for hours nobody covers.
GAP_HORIZON = timedelta(days=7)


def clinic_time(form: FormData, name: str, zone: str) -> datetime:
    """A datetime-local field read as the clinic's wall clock (the admin's zone on every
    staff page), as an aware datetime."""
    text = text_field(form, name, required=False, max_length=32)
    if not text:
        raise ValidationFailed(f"Enter when the shift {SHIFT_WORDS[name]}.", field=name)
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed("Enter a date and time.", field=name) from None
    if not YEARS[0] <= naive.year <= YEARS[1]:
        # Checked before the zone: 9999-12-31 23:59 has no UTC time west of Greenwich.
        raise ValidationFailed(f"Enter a date from {YEARS[0]} to {YEARS[1]}.", field=name)
    if naive.tzinfo is not None:
        return naive
    tz = ZoneInfo(zone)
    local = naive.replace(tzinfo=tz)
    # A time skipped when the clocks go forward does not come back unchanged from UTC;
    # guessing which hour was meant could leave an hour nobody is on call.
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise ValidationFailed(f"{naive.strftime('%H:%M')} does not exist on that day in "
                               f"{zone} (the clocks go forward).", field=name)
    return local


async def on_call_page(request: Request, *, error: str | None = None,
                       error_field: str | None = None, values: dict[str, str] | None = None,
                       status: int = 200) -> Response:
    actor = actor_of(request)
    access_rota(actor, manage=True)
    services = services_of(request)
    now = services.clock.now()
    zone = clinic_zone(services.settings)
    async with services.transaction() as session:
        shifts = await oncall.list_shifts(session, actor, now=now)
        on_call = await oncall.who_is_on_call(session, now)
        people = await oncall.candidates(session, actor)
    # The form starts at the next full quarter hour, for a day: edited, rarely typed.
    start = (now + timedelta(minutes=15 - now.minute % 15)).replace(second=0, microsecond=0)
    defaults = {"user_id": "", "starts_at": local_time(start, zone, LOCAL_INPUT),
                "ends_at": local_time(start + timedelta(days=1), zone, LOCAL_INPUT)}
    return render(request, "admin_on_call.html", status=status, shifts=shifts,
                  on_call=on_call, people=people, tz=zone, values=values or defaults,
                  gaps=oncall.gaps(shifts, now, now + GAP_HORIZON),
                  error=error, error_field=error_field if error_field in SHIFT_FIELDS else None)


async def add_on_call_shift(request: Request) -> Response:
    form, _ = await checked_form(request)
    actor = actor_of(request)
    access_rota(actor, manage=True)
    services = services_of(request)
    zone = clinic_zone(services.settings)
    try:
        chosen = text_field(form, "user_id", required=False, max_length=12)
        if not chosen:
            raise ValidationFailed("Choose who is on call.", field="user_id")
        user_id = int_param(chosen, "user_id")
        starts_at = clinic_time(form, "starts_at", zone)
        ends_at = clinic_time(form, "ends_at", zone)
        async with services.transaction() as session:
            await oncall.add_shift(session, actor, user_id=user_id, starts_at=starts_at,
                                   ends_at=ends_at, now=services.clock.now())
    except APIError as exc:
        values = {name: str(form.get(name) or "")[:32] for name in SHIFT_FIELDS}
        return await on_call_page(request, error=exc.message, error_field=exc.field,
                                  values=values, status=exc.status)
    return RedirectResponse("/admin/on-call", status_code=303)


async def end_on_call_shift(request: Request) -> Response:
    await checked_form(request)
    actor = actor_of(request)
    access_rota(actor, manage=True)
    shift_id = path_id(request, "shift_id")
    services = services_of(request)
    try:
        async with services.transaction() as session:
            await oncall.end_shift(session, actor, shift_id, now=services.clock.now())
    except APIError as exc:
        # Already over (another admin ended it), or gone: the page shows the rota as it is.
        return await on_call_page(request, error=exc.message, status=exc.status)
    return RedirectResponse("/admin/on-call", status_code=303)


ROUTES = [
    Route("/admin", accounts_page, methods=["GET"]),
    Route("/admin/users", create_account, methods=["POST"]),
    Route("/admin/users/{user_id}/active", set_account_active, methods=["POST"]),
    Route("/admin/care-teams", care_teams_page, methods=["GET"]),
    Route("/admin/care-teams/add", add_member, methods=["POST"]),
    Route("/admin/care-teams/remove", remove_member, methods=["POST"]),
    Route("/admin/on-call", on_call_page, methods=["GET"]),
    Route("/admin/on-call", add_on_call_shift, methods=["POST"]),
    Route("/admin/on-call/{shift_id}/end", end_on_call_shift, methods=["POST"]),
    Route("/admin/audit", audit_page, methods=["GET"]),
    Route("/admin/outbox", outbox_page, methods=["GET"]),
]
