"""The prescriber's day as the clinic's cockpit (issue 17): each visit's card with the
wait, the check-in at a glance and Admit, read in a fixed number of queries; and the
"running late" notice, stored on the visit and shown in the patient's waiting room."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server import checkins, visits
from server.actors import Actor
from server.models import AuditEntry, CheckIn, Medication, Visit, VisitKind, VisitStatus
from server.services import Services
from tests.checkin_bodies import checkin_body
from tests.clinic import Clinic, Person
from tests.conftest import Runner, SignIn
from tests.signaling_support import connect, cookie_of
from tests.test_room_page_cost import statements

# PHQ-9 13 with item 9 answered "several days", so the C-SSRS screener is asked too.
PHQ9 = [2, 2, 2, 2, 1, 1, 1, 1, 1]
CSSRS = {"q1": True, "q2": False, "q6": False}


def actor(person: Person) -> Actor:
    return Actor(person.id, person.role, person.name, person.email)


@dataclass
class Node:
    """An element of a page, enough to find cards and what is in them
    (``all(data_testid="admit")``) and to read their text."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def all(self, **wanted: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if all(child.attrs.get(k.replace("_", "-")) == v for k, v in wanted.items()):
                    found.append(child)
                found.extend(child.all(**wanted))
        return found

    def one(self, **wanted: str) -> Node | None:
        found = self.all(**wanted)
        return found[0] if found else None

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    return builder.root


def card(html: str, visit_id: int) -> Node:
    found = parse(html).one(data_testid="day-card", data_visit_id=str(visit_id))
    assert found is not None, f"no card for visit {visit_id}"
    return found


def wait(run: Runner, services: Services, clinic: Clinic, visit_id: int,
         patient: Person | None = None) -> None:
    """The patient enters the waiting room, as the signaling socket's hello does."""
    async def enter() -> None:
        async with services.transaction() as session:
            await visits.mark_waiting(session, actor(patient or clinic.patient), visit_id,
                                      now=services.clock.now(),
                                      alert_after=timedelta(minutes=10))

    run(enter)


def set_status(run: Runner, services: Services, visit_id: int, status: VisitStatus) -> None:
    async def change() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            visit.status = status

    run(change)


def late(client: TestClient, visit_id: int, body: Any) -> Any:
    return client.post(f"/api/v1/visits/{visit_id}/running-late", json=body)


# --- running late ----------------------------------------------------------------------


def test_running_late_is_stored_audited_and_told_to_the_patient_and_the_team(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.patient)) as patient, \
            connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator)) as team, \
            connect(client, "/ws/events",
                    cookie_of(sign_in, clinic.other_coordinator)) as outsider:
        for ws in (patient, team, outsider):
            ws.expect("subscribed")
        sign_in(clinic.prescriber)
        told = late(client, clinic.visit_id, {"minutes": 10})
        assert told.status_code == 200, told.text
        assert told.json()["late_minutes"] == 10
        assert told.json()["late_notice_at"] is not None
        for ws in (patient, team):
            event = ws.expect("visit.running_late")
            assert (event["visit_id"], event["minutes"]) == (clinic.visit_id, 10)
            assert event["since"] == told.json()["late_notice_at"]
        assert outsider.quiet(0.3) == []

        # The patient reads it with the visit (their page's catch-up after a gap).
        sign_in(clinic.patient)
        assert client.get(f"/api/v1/visits/{clinic.visit_id}").json()["late_minutes"] == 10

        # Taken back with 0.
        sign_in(clinic.coordinator)
        cleared = late(client, clinic.visit_id, {"minutes": 0})
        assert cleared.status_code == 200, cleared.text
        assert (cleared.json()["late_minutes"], cleared.json()["late_notice_at"]) == (None, None)
        assert patient.expect("visit.running_late")["minutes"] == 0

    async def audited() -> list[tuple[int | None, str | None, Any]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "running_late").order_by(AuditEntry.id))).all()
            return [(r.actor_id, r.resource_id, r.detail["minutes"]) for r in rows]

    assert run(audited) == [(clinic.prescriber.id, str(clinic.visit_id), 10),
                            (clinic.coordinator.id, str(clinic.visit_id), 0)]


@pytest.mark.parametrize(("who", "status"), [
    ("patient", 403), ("patient2", 403), ("other_prescriber", 403),
    ("other_coordinator", 403), ("admin", 403)])
def test_only_the_care_team_says_it_is_running_late(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    who: str, status: int
) -> None:
    sign_in(getattr(clinic, who))
    assert late(client, clinic.visit_id, {"minutes": 5}).status_code == status

    async def stored() -> int | None:
        async with services.transaction() as session:
            visit = await session.get(Visit, clinic.visit_id)
            assert visit is not None
            return visit.late_minutes

    assert run(stored) is None


@pytest.mark.parametrize("body", [
    {"minutes": -1}, {"minutes": 61}, {"minutes": "5"}, {"minutes": 5.5},
    {"minutes": True}, {"minutes": None}, {}])
def test_bad_minutes_are_422_naming_the_field(
    client: TestClient, clinic: Clinic, sign_in: SignIn, body: dict[str, Any]
) -> None:
    sign_in(clinic.prescriber)
    refused = late(client, clinic.visit_id, body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "minutes"


def test_a_visit_under_way_cannot_be_late_but_its_notice_can_be_taken_back(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert late(client, clinic.visit_id, {"minutes": 15}).status_code == 200
    set_status(run, services, clinic.visit_id, VisitStatus.in_progress)
    refused = late(client, clinic.visit_id, {"minutes": 5})
    assert refused.status_code == 409
    assert refused.json()["error"]["status"] == "in_progress"
    assert late(client, clinic.visit_id, {"minutes": 0}).status_code == 200


def test_the_waiting_room_says_it_when_it_is_opened(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    async def located() -> None:
        async with services.transaction() as session:
            await checkins.confirm_emergency_info(
                session, services, actor(clinic.patient), clinic.visit_id,
                {"location": {"address": "12 Elm Street, Springfield", "state": "MA"},
                 "callback_phone": "+1 617 555 0100"})

    run(located)
    sign_in(clinic.prescriber)
    assert late(client, clinic.visit_id, {"minutes": 10}).status_code == 200
    sign_in(clinic.patient)
    notice = parse(client.get(f"/visits/{clinic.visit_id}").text).one(
        data_testid="running-late")
    assert notice is not None
    assert notice.get("aria-live") == "polite" and notice.get("role") == "status"
    assert notice.text() == (
        f"{clinic.prescriber.name} is running about 10 minutes late. "
        "Please keep this page open.")
    # Once the visit is under way the notice means nothing: not shown.
    set_status(run, services, clinic.visit_id, VisitStatus.in_progress)
    notice = parse(client.get(f"/visits/{clinic.visit_id}").text).one(
        data_testid="running-late")
    assert notice is not None and notice.text() == ""


# --- the day's cards -------------------------------------------------------------------


def test_a_card_shows_the_check_in_at_a_glance(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    before = card(client.get("/day").text, clinic.visit_id)
    assert "No check-in yet." in before.text()
    assert before.all(data_testid="key-score") == []

    sign_in(clinic.patient)
    done = client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body(phq9=PHQ9, cssrs=CSSRS, auditc=[3, 2, 1]))
    assert done.status_code == 201, done.text
    triaged = done.json()

    sign_in(clinic.prescriber)
    shown = card(client.get("/day").text, clinic.visit_id)
    glance = shown.one(data_testid="checkin-glance")
    assert glance is not None and glance["data-level"] == triaged["level"]
    assert "Checked in" in glance.text()
    flags = [f["data-code"] for f in shown.all(data_testid="checkin-flag")]
    assert sorted(flags) == sorted(triaged["reasons"])
    assert flags, "this check-in has reasons to show"
    scores = {s["data-instrument"]: " ".join(d.text() for d in s.all() if d.tag == "dd")
              for s in shown.all(data_testid="key-score")}
    phq9, auditc = triaged["scores"]["phq9"], triaged["scores"]["auditc"]
    assert scores["phq9"].startswith(f"{phq9['total']}, ")
    assert scores["phq9_item9"] == "1"
    assert scores["gad7"].startswith(f"{triaged['scores']['gad7']['total']}")
    assert scores["cssrs"] == triaged["scores"]["cssrs"]["risk"]
    assert scores["auditc"] == \
        f"{auditc['total']}, {'positive' if auditc['positive'] else 'negative'}"
    item9 = shown.one(data_instrument="phq9_item9")
    assert item9 is not None and "flagged" in (item9.get("class") or "").split()
    # The other visit of the day has no check-in: nothing of this one leaks onto it.
    other = card(client.get("/day").text, clinic.visit2_id)
    assert other.all(data_testid="key-score") == []


def test_admit_and_the_wait_show_only_while_the_patient_waits(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.prescriber)
    page = client.get("/day").text
    assert card(page, clinic.visit_id).all(data_testid="admit") == []
    assert card(page, clinic.visit_id).all(data_testid="wait-time") == []

    wait(run, services, clinic, clinic.visit_id)
    services.clock.advance(timedelta(minutes=4, seconds=20))
    page = client.get("/day").text
    waiting = card(page, clinic.visit_id)
    assert waiting["data-status"] == "waiting"
    waited = waiting.one(data_testid="wait-time")
    assert waited is not None and waited.text() == "Waiting 4 min"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*", str(waited["data-since"]))
    admit = waiting.all(data_testid="admit")
    assert [a["href"] for a in admit] == [f"/visits/{clinic.visit_id}?admit=1"]
    # Only the waiting patient's card has one.
    assert card(page, clinic.visit2_id).all(data_testid="admit") == []

    async def admitted() -> None:
        async with services.transaction() as session:
            await visits.admit(session, actor(clinic.prescriber), clinic.visit_id,
                               now=services.clock.now())

    run(admitted)
    after = card(client.get("/day").text, clinic.visit_id)
    assert after.all(data_testid="admit") == []
    assert after.all(data_testid="wait-time") == []
    # Under way: no "Running late" either.
    assert after.all(data_testid="late-menu") == []


def test_the_card_says_what_the_patient_was_told(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    shown = card(client.get("/day").text, clinic.visit_id)
    choices = [n["data-late-minutes"] for n in shown.all() if "data-late-minutes" in n.attrs]
    assert choices == ["5", "10", "15"]
    assert late(client, clinic.visit_id, {"minutes": 15}).status_code == 200
    shown = card(client.get("/day").text, clinic.visit_id)
    notice = shown.one(data_testid="late-notice")
    assert notice is not None and "about 15 minutes late" in notice.text()
    assert shown.all(data_testid="late-clear")


def test_the_day_reads_its_cards_in_a_fixed_number_of_queries(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """Waits and check-ins for the whole day in one query each, however many visits."""
    def day_sql() -> list[str]:
        sign_in(clinic.prescriber)
        with statements(services) as seen:
            assert client.get("/day").status_code == 200
        return [s for s, _ in seen if " FROM sessions" not in s]

    def busy(visit_id: int, patient: Person) -> None:
        sign_in(patient)
        assert client.post(f"/api/v1/visits/{visit_id}/checkin",
                           json=checkin_body()).status_code == 201
        wait(run, services, clinic, visit_id, patient)

    busy(clinic.visit_id, clinic.patient)
    one = day_sql()

    async def more() -> list[int]:
        async with services.transaction() as session:
            now = services.clock.now()
            made = [Visit(patient_id=patient_id, prescriber_id=clinic.prescriber.id,
                          kind=VisitKind.follow_up, scheduled_at=now + timedelta(minutes=m),
                          duration_minutes=15, status=VisitStatus.scheduled, created_at=now)
                    for patient_id, m in ((clinic.patient.id, 90), (clinic.patient2.id, 100))]
            session.add_all(made)
            await session.flush()
            return [v.id for v in made]

    extra = run(more)
    busy(extra[0], clinic.patient)
    busy(clinic.visit2_id, clinic.patient2)

    async def counted() -> int:
        async with services.transaction() as session:
            return len((await session.scalars(select(CheckIn.id))).all())

    assert run(counted) == 3
    three = day_sql()
    page = client.get("/day").text
    for visit_id in (clinic.visit_id, extra[0], clinic.visit2_id):
        assert card(page, visit_id).all(data_testid="wait-time")
        assert card(page, visit_id).all(data_testid="key-score")
    assert len(three) == len(one), "\n".join(sorted(set(three) ^ set(one)))
    assert len([s for s in three if " FROM checkins" in s]) == 1
    assert len([s for s in three if " FROM visit_waits" in s]) == 1


def test_reading_the_day_audits_each_check_in_shown(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/checkin",
                       json=checkin_body()).status_code == 201
    sign_in(clinic.prescriber)
    assert client.get("/day").status_code == 200

    async def reads() -> list[tuple[str, str | None, int | None]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.actor_id == clinic.prescriber.id, AuditEntry.action == "read",
                AuditEntry.resource_type == "checkin"))).all()
            return [(r.resource_type, r.resource_id, r.patient_id) for r in rows]

    found = run(reads)
    assert len(found) == 1 and found[0][2] == clinic.patient.id



# --- no-show ---------------------------------------------------------------------------


def on_buprenorphine(run: Runner, services: Services, patient_id: int) -> None:
    async def add() -> None:
        async with services.transaction() as session:
            now = services.clock.now()
            session.add(Medication(patient_id=patient_id, drug="Buprenorphine/naloxone",
                                   dose="8", unit="mg", started_at=now - timedelta(days=40),
                                   changed_at=now - timedelta(days=40)))

    run(add)


def starting_in(run: Runner, services: Services, visit_id: int, delta: timedelta) -> None:
    """Move the visit to start ``delta`` from now: minutes, so it stays on today's list
    at any hour but the last minutes of the day."""
    async def move() -> None:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            visit.scheduled_at = services.clock.now() + delta

    run(move)


def test_no_show_is_offered_once_the_start_has_passed_and_the_card_then_offers_to_rebook(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    starting_in(run, services, clinic.visit_id, timedelta(minutes=1))
    starting_in(run, services, clinic.visit2_id, timedelta(minutes=1))
    sign_in(clinic.prescriber)
    # Before the start: in the card for day-live.js to reveal on time, hidden.
    box = card(client.get("/day").text, clinic.visit_id).one(data_no_show="")
    assert box is not None and "hidden" in box.attrs
    assert box["data-from"].startswith(str(services.clock.now().year))
    services.clock.advance(timedelta(minutes=2))
    shown = card(client.get("/day").text, clinic.visit_id)
    box = shown.one(data_no_show="")
    assert box is not None and "hidden" not in box.attrs
    ask = shown.one(data_testid="no-show")
    confirm = shown.one(data_testid="no-show-confirm")
    assert ask is not None and confirm is not None
    assert (ask["aria-expanded"], ask["aria-controls"]) == ("false", confirm["id"])
    assert "hidden" in confirm.attrs and confirm["role"] == "group"
    assert "did not come" in confirm.text()
    assert shown.one(data_testid="no-show-moud") is None  # not on MOUD
    # Waiting (joined): no no-show.
    wait(run, services, clinic, clinic.visit2_id, clinic.patient2)
    assert card(client.get("/day").text, clinic.visit2_id).one(data_no_show="") is None

    done = client.post(f"/api/v1/visits/{clinic.visit_id}/no-show")
    assert done.status_code == 200, done.text
    after = card(client.get("/day").text, clinic.visit_id)
    assert after["data-status"] == "no_show"
    assert after.one(data_no_show="") is None
    note = after.one(data_testid="no-show-done")
    assert note is not None and "No-show." in note.text()
    rebook = after.one(data_testid="no-show-rebook")
    assert rebook is not None and rebook["href"] == f"/visits/new?patient={clinic.patient.id}"
    assert after.one(data_testid="no-show-outreach") is None


def test_for_a_patient_on_moud_the_card_says_outreach_follows_unless_rebooked(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    on_buprenorphine(run, services, clinic.patient.id)
    starting_in(run, services, clinic.visit_id, timedelta(seconds=-30))
    sign_in(clinic.prescriber)
    moud = card(client.get("/day").text, clinic.visit_id).one(data_testid="no-show-moud")
    assert moud is not None and "within 7 days" in moud.text()
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/no-show").status_code == 200
    after = card(client.get("/day").text, clinic.visit_id)
    outreach = after.one(data_testid="no-show-outreach")
    assert outreach is not None and "if nothing is rebooked" in outreach.text()
    # Booking the next visit stops the outreach, and the card stops saying it.
    booked = client.post("/api/v1/visits", json={
        "patient_id": clinic.patient.id, "kind": "follow_up",
        "scheduled_at": (services.clock.now() + timedelta(days=5)).isoformat()})
    assert booked.status_code == 201, booked.text
    after = card(client.get("/day").text, clinic.visit_id)
    assert after.one(data_testid="no-show-outreach") is None
    assert after.one(data_testid="no-show-rebook") is not None
