"""The admin's audit log page: people by name, newest first in pages of 50 with Older and
Newer links that keep the filters, whole days in the clinic's zone from date pickers, a
bad date shown by its field (never a 500), and the look itself audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from starlette.testclient import TestClient

from server import audit
from server.actors import Actor
from server.audit import PAGE_SIZE
from server.models import AuditEntry, Role
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic, Person
from tests.conftest import Runner, SignIn
from tests.test_note_panel_pages import Page
from tests.test_room_page_cost import statements

ROW_ID = re.compile(r'data-testid="audit-row" data-id="(\d+)"')


def actor_of(person: Person) -> Actor:
    return Actor(person.id, Role(person.role), person.name, person.email, ip="10.0.0.9")


def add_entries(run: Runner, services: Services,
                rows: list[tuple[Person | None, datetime, str, int | None]]) -> None:
    """Entries as the app writes them (audit.record): who, when, action, patient."""

    async def write() -> None:
        async with services.transaction() as session:
            for person, at, action, patient_id in rows:
                audit.record(session, actor_of(person) if person else None, action,
                             "visit", 7, patient_id=patient_id, at=at)

    run(write)


def shown_ids(html: str) -> list[int]:
    return [int(found) for found in ROW_ID.findall(html)]


def link(html: str, testid: str) -> str | None:
    found = Page(html).by_testid.get(testid)
    return unescape(str(found[0]["href"])) if found else None


def read_rows(run: Runner, services: Services, actor_id: int,
              after_id: int = 0) -> list[AuditEntry]:
    async def query() -> list[AuditEntry]:
        async with services.transaction() as session:
            return list((await session.scalars(
                select(AuditEntry).where(AuditEntry.actor_id == actor_id,
                                         AuditEntry.action == "read",
                                         AuditEntry.id > after_id)
                .order_by(AuditEntry.id))).all())

    return run(query)


def last_id(run: Runner, services: Services) -> int:
    async def query() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(AuditEntry.id).order_by(
                AuditEntry.id.desc()).limit(1)) or 0)

    return run(query)


# --- names -------------------------------------------------------------------------


def test_rows_name_the_actor_with_their_role_and_the_patient(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    now = services.clock.now()
    add_entries(run, services, [
        (clinic.prescriber, now - timedelta(minutes=3), "read", clinic.patient.id),
        (clinic.coordinator, now - timedelta(minutes=2), "update", clinic.patient2.id),
        (None, now - timedelta(minutes=1), "send", None),
    ])
    sign_in(clinic.admin)
    response = client.get("/admin/audit", params={"resource_type": "visit"})
    assert response.status_code == 200
    page = Page(response.text)
    assert len(page.by_testid["audit-row"]) == 3
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))
    assert f"{clinic.prescriber.name} (prescriber)" in text
    assert f"{clinic.coordinator.name} (coordinator)" in text
    assert clinic.patient.name in text and clinic.patient2.name in text
    assert "System" in text  # no actor: the app itself (a job)
    # A name filters the log by that person.
    assert f'href="/admin/audit?actor_id={clinic.prescriber.id}"' in response.text
    assert f'href="/admin/audit?patient_id={clinic.patient2.id}"' in response.text
    # Times in the clinic's zone, named (the moment filter): New York is EST or EDT.
    assert re.search(r"\d\d:\d\d E[SD]T", text), text[:500]


def test_names_cost_one_query_however_many_people_are_on_the_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    now = services.clock.now()
    people = [clinic.prescriber, clinic.coordinator, clinic.other_prescriber,
              clinic.other_coordinator, clinic.patient, clinic.patient2]
    sign_in(clinic.admin)
    add_entries(run, services, [(clinic.prescriber, now, "probe-one", clinic.patient.id)])
    client.get("/admin/audit")  # the session is cached from here on, for both looks
    with statements(services) as one:
        assert client.get("/admin/audit", params={"action": "probe-one"}).status_code == 200
    add_entries(run, services, [
        (people[i % len(people)], now - timedelta(seconds=i), "probe-many",
         (clinic.patient, clinic.patient2)[i % 2].id) for i in range(PAGE_SIZE)])
    with statements(services) as many:
        response = client.get("/admin/audit", params={"action": "probe-many"})
    assert len(Page(response.text).by_testid["audit-row"]) == PAGE_SIZE
    for person in people:
        assert person.name in response.text
    # As many statements for 50 rows by six people as for one row by one.
    assert len(many) == len(one), [s for s, _ in many]
    assert sum("FROM audit_log" in s for s, _ in many) == 1


# --- paging -------------------------------------------------------------------------


def test_older_and_newer_walk_120_entries_in_pages_keeping_the_filters(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    now = services.clock.now()
    # Pairs written at the same instant: the order between them is the id's.
    add_entries(run, services, [
        (clinic.prescriber, now - timedelta(minutes=i // 2), "probe", clinic.patient.id)
        for i in range(120)])
    add_entries(run, services, [(clinic.coordinator, now, "other", clinic.patient.id)])
    sign_in(clinic.admin)

    first = client.get("/admin/audit", params={"action": "probe", "outcome": "success"})
    assert first.status_code == 200
    pages = [shown_ids(first.text)]
    assert link(first.text, "audit-newer") is None  # already the newest
    html = first.text
    while (older := link(html, "audit-older")) is not None:
        query = parse_qs(urlsplit(older).query)
        assert (query["action"], query["outcome"]) == (["probe"], ["success"])
        html = client.get(older).text
        pages.append(shown_ids(html))
    assert [len(p) for p in pages] == [50, 50, 20]
    walked = [i for p in pages for i in p]
    # Every entry once, newest first (at, then id), none of the filtered-out ones.
    assert len(set(walked)) == 120

    async def expected_order() -> list[int]:
        async with services.transaction() as session:
            return list((await session.scalars(
                select(AuditEntry.id).where(AuditEntry.action == "probe")
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()))).all())

    assert walked == run(expected_order)

    # And back: Newer from the last page gives the same pages, the first one full.
    back = [pages[-1]]
    while (newer := link(html, "audit-newer")) is not None:
        assert parse_qs(urlsplit(newer).query)["action"] == ["probe"]
        html = client.get(newer).text
        back.append(shown_ids(html))
    assert back == list(reversed(pages))
    assert link(html, "audit-older") is not None


# --- dates --------------------------------------------------------------------------


def test_days_are_the_clinics_whole_days_across_the_clock_changes(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    assert services.settings.clinic_timezone == "America/New_York"

    def utc(*parts: int) -> datetime:
        return datetime(*parts, tzinfo=UTC)

    # 8 March 2026 in New York is 23 hours long (05:00 to 04:00 UTC), 1 November 2026 is 25
    # (04:00 to 05:00 UTC). The entries sit a minute either side of each edge.
    edges = {
        "before spring": utc(2026, 3, 8, 4, 59), "spring start": utc(2026, 3, 8, 5, 0),
        "spring end": utc(2026, 3, 9, 3, 59), "after spring": utc(2026, 3, 9, 4, 0),
        "before fall": utc(2026, 11, 1, 3, 59), "fall start": utc(2026, 11, 1, 4, 0),
        "fall end": utc(2026, 11, 2, 4, 59), "after fall": utc(2026, 11, 2, 5, 0),
    }
    add_entries(run, services, [(clinic.prescriber, at, f"probe {name}", None)
                                for name, at in edges.items()])
    sign_in(clinic.admin)

    def actions(**params: str) -> set[str]:
        response = client.get("/admin/audit", params={"resource_type": "visit", **params})
        assert response.status_code == 200, response.text[:300]
        found = re.findall(r"<td>(probe [a-z ]+)</td>", response.text)
        return {name.removeprefix("probe ") for name in found}

    assert actions(**{"from": "2026-03-08", "to": "2026-03-08"}) == {"spring start",
                                                                     "spring end"}
    assert actions(**{"from": "2026-11-01", "to": "2026-11-01"}) == {"fall start", "fall end"}
    assert actions(**{"from": "2026-03-09"}) == {"after spring", "before fall", "fall start",
                                                 "fall end", "after fall"}
    assert actions(to="2026-03-07") == {"before spring"}
    # The export link carries the same days as UTC instants, so it lists the same rows.
    response = client.get("/admin/audit", params={"from": "2026-03-08", "to": "2026-03-08",
                                                  "resource_type": "visit"})
    export = link(response.text, "audit-export")
    assert export is not None
    csv = client.get(export).text
    assert "2026-03-08T05:00:00" in csv and "2026-03-09T03:59:00" in csv
    assert "2026-03-08T04:59:00" not in csv and "2026-03-09T04:00:00" not in csv


def test_a_bad_date_is_shown_by_its_field_not_a_500(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.admin)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"from": "2026-02-30"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "0001-01-01"}, "to"),
        ({"to": "9999-12-31"}, "to"),
        ({"from": "2026-03-09", "to": "2026-03-08"}, "to"),
        ({"actor_id": "me"}, "actor_id"),
    ]
    for params, field in cases:
        response = client.get("/admin/audit", params=params)
        assert response.status_code == 422, (params, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        page = Page(response.text)
        assert page.has(f"audit-error-{field}"), params
        field_input = page.by_testid[f"audit-{field}"][0]
        assert field_input["aria-invalid"] == "true"
        assert field_input["aria-describedby"] == f"f-{field}-error"
        # The form comes back as it was typed, to correct it.
        assert field_input["value"] == params[field]
        assert "Traceback" not in response.text
    response = client.get("/admin/audit", params={"before": "x"})
    assert response.status_code == 422 and Page(response.text).has("audit-error")


# --- the look itself, and one read row per record --------------------------------------


def test_each_look_at_the_log_is_in_the_log(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.admin)
    mark = last_id(run, services)
    response = client.get("/admin/audit")
    shown = len(Page(response.text).by_testid["audit-row"])
    [look] = read_rows(run, services, clinic.admin.id, mark)
    assert (look.resource_type, look.detail["count"]) == ("audit_log", shown)
    # A refused look (a bad date) shows nothing and writes no read.
    mark = last_id(run, services)
    assert client.get("/admin/audit", params={"from": "nope"}).status_code == 422
    assert read_rows(run, services, clinic.admin.id, mark) == []


def test_the_room_and_each_note_panel_part_write_one_read_row_per_record(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    for path in (f"/visits/{clinic.visit_id}", f"/visits/{clinic.visit_id}?part=safety",
                 f"/visits/{clinic.visit_id}?part=labs",
                 f"/visits/{clinic.visit_id}?part=medications"):
        mark = last_id(run, services)
        assert client.get(path).status_code == 200, path
        rows = [(e.resource_type, e.resource_id)
                for e in read_rows(run, services, clinic.prescriber.id, mark)]
        assert rows, f"{path} audits what it shows"
        assert len(rows) == len(set(rows)), (path, sorted(rows))
        # Every row of that one request concerns this visit's patient.
        assert {e.patient_id for e in read_rows(run, services, clinic.prescriber.id, mark)} \
            == {clinic.patient.id}
