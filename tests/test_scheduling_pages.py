"""The care team's scheduling pages, through the real app and database: booking a visit
on the clinic's clock (shown on the patient's too), conflicts with the prescriber's
other visits and "Book anyway", moving and cancelling, inviting and revoking guests, and
who is refused."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.models import (
    AuditEntry,
    OutboxEmail,
    Visit,
    VisitGuest,
    VisitKind,
    VisitStatus,
)
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_note_panel_pages import Page
from tests.test_timezones import set_zone

PACIFIC = "America/Los_Angeles"


def clinic_day(services: Services, days: int = 1) -> date:
    zone = ZoneInfo(services.settings.clinic_timezone)
    return services.clock.now().astimezone(zone).date() + timedelta(days=days)


def at(services: Services, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute),
                            tzinfo=ZoneInfo(services.settings.clinic_timezone))


def booking(clinic: Clinic, csrf: str, day: date, clock: str, **changes: str) -> dict[str, str]:
    return {"csrf_token": csrf, "patient_id": str(clinic.patient.id),
            "prescriber_id": str(clinic.prescriber.id), "kind": "follow_up",
            "visit_date": day.isoformat(), "visit_time": clock, "duration_minutes": "15",
            **changes}


def visit_row(run: Runner, services: Services, visit_id: int) -> Visit:
    async def load() -> Visit:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            return visit

    return run(load)


def emails(run: Runner, services: Services, kind: str) -> list[OutboxEmail]:
    async def load() -> list[OutboxEmail]:
        async with services.transaction() as session:
            return list((await session.scalars(
                select(OutboxEmail).where(OutboxEmail.kind == kind)
                .order_by(OutboxEmail.id))).all())

    return run(load)


def visit_count(run: Runner, services: Services) -> int:
    async def count() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count(Visit.id))) or 0)

    return run(count)


def add_visit_at(run: Runner, services: Services, patient_id: int, prescriber_id: int,
                 when: datetime, minutes: int = 15,
                 status: VisitStatus = VisitStatus.scheduled) -> int:
    async def make() -> int:
        async with services.transaction() as session:
            visit = Visit(patient_id=patient_id, prescriber_id=prescriber_id,
                          kind=VisitKind.follow_up, scheduled_at=when, duration_minutes=minutes,
                          status=status, created_at=services.clock.now())
            session.add(visit)
            await session.flush()
            return visit.id

    return run(make)


def created_id(response: Any) -> int:
    assert response.status_code == 303, response.text[:500]
    found = re.fullmatch(r"/visits/(\d+)/change\?done=scheduled", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


def test_a_prescriber_books_a_visit_on_the_clinics_clock_and_the_patient_is_invited(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    csrf = sign_in(clinic.prescriber)
    page = client.get(f"/visits/new?patient={clinic.patient.id}")
    assert page.status_code == 200
    parsed = Page(page.text)
    assert not parsed.inline, parsed.inline
    # The patient asked for and the prescriber (themself) are chosen; each patient
    # carries their zone for the live preview.
    assert re.search(rf'<option value="{clinic.patient.id}" data-zone="{PACIFIC}" selected>',
                     page.text)
    assert re.search(rf'<option value="{clinic.prescriber.id}" selected>', page.text)
    assert "/static/schedule-form.js" in page.text

    day = clinic_day(services)
    response = client.post("/visits/new", data=booking(
        clinic, csrf, day, "10:00", kind="intake", duration_minutes="60"),
        follow_redirects=False)
    visit_id = created_id(response)
    visit = visit_row(run, services, visit_id)
    assert visit.scheduled_at == at(services, day, 10)
    assert (visit.prescriber_id, visit.kind, visit.duration_minutes, visit.status) == \
        (clinic.prescriber.id, VisitKind.intake, 60, VisitStatus.scheduled)
    [invite] = emails(run, services, "visit_invite")
    assert invite.to_addr == clinic.patient.email
    assert invite.calendar and "METHOD:REQUEST" in invite.calendar

    shown = client.get(response.headers["location"])
    assert shown.status_code == 200
    assert "Booked." in shown.text
    # The clinic's clock and the patient's, each named.
    pacific = at(services, day, 10).astimezone(ZoneInfo(PACIFIC)).strftime("%H:%M %Z")
    assert re.search(rf"{pacific}</dd>|{pacific} \(America/Los Angeles\)", shown.text)
    assert "(America/New York)" in shown.text


def test_the_preview_shows_the_patients_clock_after_a_refusal(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    csrf = sign_in(clinic.prescriber)
    day = clinic_day(services)
    response = client.post("/visits/new", data=booking(
        clinic, csrf, day, "10:00", duration_minutes="500"))
    assert response.status_code == 422
    page = Page(response.text)
    assert page.has("duration-minutes-error")
    assert page.by_id["duration"].get("aria-invalid") == "true"
    assert page.by_id["duration"].get("aria-describedby") == "duration-minutes-error"
    assert "Enter a length from 5 to 240 minutes." in response.text
    # What was typed stays, and the preview names both clocks.
    assert 'value="500"' in response.text
    patient_time = at(services, day, 10).astimezone(ZoneInfo(PACIFIC)).strftime("%H:%M %Z")
    assert f'data-testid="patient-time">{day.strftime("%a %-d %b")}, {patient_time}' in \
        response.text
    assert visit_count(run, services) == 2


def test_every_wrong_field_is_named_beside_it(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    csrf = sign_in(clinic.coordinator)
    response = client.post("/visits/new", data={
        "csrf_token": csrf, "patient_id": "", "prescriber_id": "", "kind": "checkup",
        "visit_date": "31/12/2030", "visit_time": "", "duration_minutes": "15"})
    assert response.status_code == 422
    page = Page(response.text)
    for field in ("patient-id", "kind", "visit-date", "visit-time"):
        assert page.has(f"{field}-error"), field
    # A coordinator must choose the prescriber: the domain says so, beside the field.
    response = client.post("/visits/new", data=booking(
        clinic, csrf, clinic_day(services), "10:00", prescriber_id=""))
    assert response.status_code == 422
    assert Page(response.text).has("prescriber-id-error")
    assert "Choose the prescriber for this visit." in response.text
    # A prescriber not on the patient's care team.
    response = client.post("/visits/new", data=booking(
        clinic, csrf, clinic_day(services), "10:00",
        prescriber_id=str(clinic.other_prescriber.id)))
    assert response.status_code == 422
    assert "must be on the patient's care team" in html.unescape(response.text)
    # A time the clocks skip in the clinic's zone (the spring change, 02:30).
    spring = next(date(2031, 3, d) for d in range(8, 15) if date(2031, 3, d).weekday() == 6)
    response = client.post("/visits/new", data=booking(clinic, csrf, spring, "02:30"))
    assert response.status_code == 422
    assert Page(response.text).has("visit-time-error")
    assert "clocks go forward" in response.text
    assert visit_count(run, services) == 2


def test_a_conflict_is_shown_first_and_booked_only_when_asked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    day = clinic_day(services)
    # The prescriber sees patient2 at 10:00 for 30 minutes: patient2 is not on the
    # coordinator's care team.
    busy = add_visit_at(run, services, clinic.patient2.id, clinic.prescriber.id,
                        at(services, day, 10), minutes=30)
    # A cancelled visit at the same time holds nobody's time.
    add_visit_at(run, services, clinic.patient2.id, clinic.prescriber.id,
                 at(services, day, 10, 20), status=VisitStatus.cancelled)
    before = visit_count(run, services)
    csrf = sign_in(clinic.coordinator)
    response = client.post("/visits/new", data=booking(clinic, csrf, day, "10:15"))
    assert response.status_code == 409
    page = Page(response.text)
    [conflict] = page.by_testid["conflict"]
    assert conflict["data-visit-id"] == str(busy)
    # The coordinator learns when the prescriber is busy, not with whom.
    assert "another patient" in response.text and clinic.patient2.name not in response.text
    assert page.has("book-anyway")
    assert visit_count(run, services) == before
    checked = re.search(r'name="checked" value="([^"]*)"', response.text)
    assert checked is not None

    # "Book anyway" for another time than the one checked: checked again.
    moved = booking(clinic, csrf, day, "10:20", book_anyway="1", checked=checked.group(1))
    assert client.post("/visits/new", data=moved).status_code == 409
    # For the time checked: booked.
    anyway = booking(clinic, csrf, day, "10:15", book_anyway="1", checked=checked.group(1))
    visit_id = created_id(client.post("/visits/new", data=anyway, follow_redirects=False))
    assert visit_row(run, services, visit_id).scheduled_at == at(services, day, 10, 15)

    # Right after the busy visit ends: no conflict.
    created_id(client.post("/visits/new", data=booking(clinic, csrf, day, "10:30"),
                           follow_redirects=False))
    # The prescriber, on patient2's care team, sees whose visit it is.
    csrf = sign_in(clinic.prescriber)
    response = client.post("/visits/new", data=booking(clinic, csrf, day, "10:05"))
    assert response.status_code == 409
    assert clinic.patient2.name in response.text


def test_the_api_refuses_a_conflict_only_when_asked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    sign_in(clinic.prescriber)
    taken = visit_row(run, services, clinic.visit_id).scheduled_at
    body = {"patient_id": clinic.patient.id, "kind": "follow_up",
            "scheduled_at": (taken + timedelta(minutes=5)).isoformat()}
    refused = client.post("/api/v1/visits", json=body | {"check_conflicts": True})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "schedule_conflict" and error["field"] == "scheduled_at"
    assert {c["id"] for c in error["conflicts"]} == {clinic.visit_id, clinic.visit2_id}
    assert error["conflicts"][0]["patient"]["name"] in (clinic.patient.name,
                                                       clinic.patient2.name)
    # As before the field existed: booked.
    assert client.post("/api/v1/visits", json=body).status_code == 201
    moved = client.patch(f"/api/v1/visits/{clinic.visit_id}",
                         json={"duration_minutes": 45, "check_conflicts": True})
    assert moved.status_code == 409
    assert clinic.visit_id not in {c["id"] for c in moved.json()["error"]["conflicts"]}


def test_a_visit_is_moved_with_conflicts_shown_then_cancelled_in_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    csrf = sign_in(clinic.coordinator)
    visit_id = clinic.visit_id
    page = client.get(f"/visits/{visit_id}/change")
    assert page.status_code == 200
    parsed = Page(page.text)
    assert not parsed.inline
    assert parsed.has("change-submit") and parsed.has("cancel-confirm")
    # The cancel asks in the page (a <details>), never with confirm().
    assert "confirm(" not in page.text

    day = clinic_day(services, 2)
    other = add_visit_at(run, services, clinic.patient.id, clinic.prescriber.id,
                         at(services, day, 14))
    when = {"csrf_token": csrf, "visit_date": day.isoformat(), "visit_time": "14:10",
            "duration_minutes": "20"}
    response = client.post(f"/visits/{visit_id}/change", data=when)
    assert response.status_code == 409
    assert [c["data-visit-id"] for c in Page(response.text).by_testid["conflict"]] == \
        [str(other)]
    assert clinic.patient.name in response.text  # their own team's patient: named
    assert visit_row(run, services, visit_id).calendar_sequence == 0

    when["visit_time"] = "14:15"
    response = client.post(f"/visits/{visit_id}/change", data=when, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/visits/{visit_id}/change?done=moved"
    visit = visit_row(run, services, visit_id)
    assert (visit.scheduled_at, visit.duration_minutes, visit.calendar_sequence) == \
        (at(services, day, 14, 15), 20, 1)
    [changed] = emails(run, services, "visit_changed")
    assert changed.to_addr == clinic.patient.email
    assert "Moved." in client.get(response.headers["location"]).text

    # Moving by five minutes overlaps only itself: no conflict.
    when["visit_time"] = "14:20"
    assert client.post(f"/visits/{visit_id}/change", data=when,
                       follow_redirects=False).status_code == 303

    response = client.post(f"/visits/{visit_id}/cancel", data={"csrf_token": csrf},
                           follow_redirects=False)
    assert response.status_code == 303
    assert visit_row(run, services, visit_id).status is VisitStatus.cancelled
    [cancelled] = emails(run, services, "visit_cancelled")
    assert cancelled.calendar and "METHOD:CANCEL" in cancelled.calendar
    shown = client.get(response.headers["location"])
    parsed = Page(shown.text)
    assert parsed.has("not-changeable") and not parsed.has("change-submit")
    assert "Cancelled." in shown.text
    # A second cancel (another tab): said plainly, nothing sent.
    again = client.post(f"/visits/{visit_id}/cancel", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert 'Cannot cancel a visit in state "cancelled"' in html.unescape(again.text)
    assert len(emails(run, services, "visit_cancelled")) == 1


def test_a_visit_under_way_cannot_be_changed(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    visit_id = add_visit_at(run, services, clinic.patient.id, clinic.prescriber.id,
                            services.clock.now(), status=VisitStatus.waiting)
    csrf = sign_in(clinic.prescriber)
    page = Page(client.get(f"/visits/{visit_id}/change").text)
    assert page.has("not-changeable") and not page.has("change-submit")
    response = client.post(f"/visits/{visit_id}/change", data={
        "csrf_token": csrf, "visit_date": clinic_day(services).isoformat(),
        "visit_time": "09:00", "duration_minutes": "15"})
    assert response.status_code == 409
    assert 'Cannot reschedule a visit in state "waiting"' in html.unescape(response.text)


def test_guests_are_invited_listed_and_revoked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    visit_id = clinic.visit_id
    csrf = sign_in(clinic.prescriber)
    page = Page(client.get(f"/visits/{visit_id}/guests").text)
    assert page.has("invite-guest") and not page.has("guest")

    bad = client.post(f"/visits/{visit_id}/guests",
                      data={"csrf_token": csrf, "name": "Ana", "email": "ana at home"})
    assert bad.status_code == 422
    parsed = Page(bad.text)
    assert parsed.has("email-error") and not parsed.has("name-error")
    assert parsed.by_id["guest-email"].get("aria-invalid") == "true"
    assert 'value="Ana"' in bad.text

    response = client.post(f"/visits/{visit_id}/guests", follow_redirects=False, data={
        "csrf_token": csrf, "name": "Ana Interpreter", "email": "Ana@Interpreters.test"})
    assert response.status_code == 303
    [invitation] = emails(run, services, "visit_guest_invite")
    assert invitation.to_addr == "ana@interpreters.test"
    listed = client.get(response.headers["location"])
    [guest] = Page(listed.text).by_testid["guest"]
    assert guest["data-state"] == "invited"
    assert "Ana Interpreter" in listed.text and "Invited." in listed.text

    # A coordinator of the team sees the guests and may revoke; inviting is the
    # prescriber's.
    csrf = sign_in(clinic.coordinator)
    page = Page(client.get(f"/visits/{visit_id}/guests").text)
    assert page.has("guest") and page.has("revoke-guest") and not page.has("invite-guest")
    assert client.post(f"/visits/{visit_id}/guests", data={
        "csrf_token": csrf, "name": "Sam", "email": "sam@example.test"}).status_code == 403
    response = client.post(f"/visits/{visit_id}/guests/{guest['data-guest-id']}/revoke",
                           data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303

    async def revoked() -> datetime | None:
        async with services.transaction() as session:
            row = await session.get(VisitGuest, int(str(guest["data-guest-id"])))
            assert row is not None
            return row.revoked_at

    assert run(revoked) is not None
    listed = Page(client.get(response.headers["location"]).text)
    [guest] = listed.by_testid["guest"]
    assert guest["data-state"] == "revoked" and not listed.has("revoke-guest")


def test_outsiders_are_refused_and_the_refusals_audited(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    sign_in(clinic.patient)
    for path in ("/visits/new", f"/visits/{clinic.visit_id}/change",
                 f"/visits/{clinic.visit_id}/guests"):
        assert client.get(path).status_code == 403, path

    csrf = sign_in(clinic.other_prescriber)
    # The list offers only the actor's own patients: none.
    page = client.get("/visits/new")
    assert page.status_code == 200
    assert f'value="{clinic.patient.id}"' not in page.text
    assert client.get(f"/visits/new?patient={clinic.patient.id}").status_code == 403
    response = client.post("/visits/new", data=booking(
        clinic, csrf, clinic_day(services), "11:00",
        prescriber_id=str(clinic.other_prescriber.id)))
    assert response.status_code == 403
    assert visit_count(run, services) == 2

    csrf = sign_in(clinic.other_coordinator)
    for path in (f"/visits/{clinic.visit_id}/change", f"/visits/{clinic.visit_id}/guests"):
        assert client.get(path).status_code == 403, path
    assert client.post(f"/visits/{clinic.visit_id}/cancel",
                       data={"csrf_token": csrf}).status_code == 403
    assert visit_row(run, services, clinic.visit_id).status is VisitStatus.scheduled

    async def denials() -> set[tuple[int | None, int | None]]:
        async with services.transaction() as session:
            rows = await session.execute(select(AuditEntry.actor_id, AuditEntry.patient_id)
                                         .where(AuditEntry.outcome == "denied"))
            return {(a, p) for a, p in rows}

    found = run(denials)
    assert (clinic.other_prescriber.id, clinic.patient.id) in found
    assert (clinic.other_coordinator.id, clinic.patient.id) in found

    # A form without its CSRF token changes nothing.
    sign_in(clinic.prescriber)
    forged = client.post(f"/visits/{clinic.visit_id}/cancel", data={})
    assert forged.status_code == 403
    assert visit_row(run, services, clinic.visit_id).status is VisitStatus.scheduled


def test_the_pages_people_look_at_link_to_scheduling(
    client: TestClient, clinic: Clinic, sign_in: SignIn,
) -> None:
    sign_in(clinic.prescriber)
    day = Page(client.get("/day").text)
    assert day.has("schedule-visit")
    assert {str(a["href"]) for a in day.by_testid["visit-change"]} >= \
        {f"/visits/{clinic.visit_id}/change"}
    assert {str(a["href"]) for a in day.by_testid["visit-guests"]} >= \
        {f"/visits/{clinic.visit_id}/guests"}
    patient = Page(client.get(f"/patients/{clinic.patient.id}").text)
    [link] = patient.by_testid["schedule-next-visit"]
    assert link["href"] == f"/visits/new?patient={clinic.patient.id}"
    sign_in(clinic.coordinator)
    assert Page(client.get("/coordinator").text).has("schedule-visit")
    sign_in(clinic.patient)
    home = Page(client.get("/home").text)
    assert not home.has("visit-change") and not home.has("visit-guests")


def test_two_bookings_of_one_free_slot_at_once_book_one(
    run: Runner, services: Services, clinic: Clinic,
) -> None:
    """A double click, or the prescriber and a coordinator at the same moment: the
    prescriber's schedule is locked while a booking checks it, so the second sees the
    first and is refused, on SQLite and PostgreSQL alike."""
    from server import visits
    from server.actors import Actor
    from server.errors import APIError
    from server.models import VisitKind

    people = {"prescriber": clinic.prescriber, "coordinator": clinic.coordinator}
    actors = {k: Actor(p.id, p.role, p.name, p.email) for k, p in people.items()}
    slot = services.clock.now() + timedelta(days=9)

    async def race() -> list[object]:
        async def book(who: str, patient_id: int) -> object:
            try:
                async with services.transaction() as session:
                    made = await visits.create_visit(
                        session, services, actors[who], patient_id=patient_id,
                        prescriber_id=clinic.prescriber.id, kind=VisitKind.follow_up,
                        scheduled_at=slot, duration_minutes=30,
                        now=services.clock.now(), refuse_conflicts=True)
                    return made.id
            except APIError as error:
                return error.code

        return list(await asyncio.gather(book("prescriber", clinic.patient.id),
                                         book("coordinator", clinic.patient.id),
                                         book("prescriber", clinic.patient2.id)))

    outcomes = run(race)
    booked = [o for o in outcomes if isinstance(o, int)]
    assert len(booked) == 1, outcomes
    assert sorted(o for o in outcomes if not isinstance(o, int)) == [
        "schedule_conflict", "schedule_conflict"]

    async def at_slot() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(Visit).where(
                Visit.scheduled_at == slot)) or 0)

    assert run(at_slot) == 1
