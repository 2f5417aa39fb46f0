"""Guests: the prescriber invites an interpreter or family member, who joins by link."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import OutboxEmail, VisitGuest
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import Socket, closed_on_connect, connect, cookie_of
from tests.test_signaling import audit_count, room, states

GUEST = {"name": "Ana Interpreter", "email": "Ana@Interpreters.test"}


def invite(client: TestClient, sign_in: SignIn, clinic: Clinic, run: Runner,
           services: Services, guest: dict[str, str] = GUEST, *,
           consent: bool = True) -> str:
    """Invite the guest as the prescriber; the token from the emailed link. ``consent``:
    the patient agrees to the guest's presence at once (42 CFR Part 2), as they must
    before the guest can be let in."""
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/guests", json=guest)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["email"], body["admitted_at"]) == (
        guest["name"], guest["email"].lower(), None)
    # The link works until MENDWELL_JOIN_LINK_HOURS after the visit starts.
    starts = client.get(f"/api/v1/visits/{clinic.visit_id}").json()["scheduled_at"]
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(starts) + \
        timedelta(hours=services.settings.join_link_hours)

    async def email() -> OutboxEmail:
        async with services.transaction() as session:
            found = await session.scalar(select(OutboxEmail).where(
                OutboxEmail.id == body["outbox_id"]))
            assert found is not None
            return found

    sent = run(email)
    assert sent.to_addr == guest["email"].lower()
    assert clinic.patient.name not in sent.body  # nothing about the patient
    link = next(line for line in sent.body.splitlines() if line.startswith("http"))
    assert urlsplit(link).path == f"/visits/{clinic.visit_id}/guest"
    if consent:
        sign_in(clinic.patient)
        agreed = client.post(f"/api/v1/visits/{clinic.visit_id}/guests/{body['id']}/consent")
        assert agreed.status_code == 201, agreed.text
    sign_in(None)
    return parse_qs(urlsplit(link).query)["t"][0]


def test_an_invited_guest_waits_is_admitted_and_resumes(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc:
        doc.hello("prescriber-peer-1")
        with connect(client, room(clinic.visit_id)) as guest:
            welcome = guest.hello("guest-peer-0001", guest_token=token)
            assert welcome["state"] == "waiting"
            assert welcome["you"] == {"user_id": None, "name": "Ana Interpreter",
                                      "role": "guest"}
            waiting = doc.presence(lambda ps: any(p["role"] == "guest" for p in ps))
            assert [p["state"] for p in waiting if p["role"] == "guest"] == ["waiting"]
            doc.send({"type": "admit", "peer_id": "guest-peer-0001"})
            guest.expect("admitted")
        with connect(client, room(clinic.visit_id)) as guest:
            welcome = guest.hello("guest-peer-0001", guest_token=token)
            assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
            doc.send({"type": "remove", "peer_id": "guest-peer-0001"})
            guest.expect("removed")

    async def admitted() -> object:
        async with services.transaction() as session:
            return await session.scalar(select(VisitGuest.admitted_at))

    assert run(admitted) is None
    assert audit_count(run, services, "admit_guest") == 1
    assert audit_count(run, services, "remove_guest") == 1


def test_a_guest_token_opens_its_own_visit_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    for visit_id, guest_token in [(clinic.visit2_id, token), (clinic.visit_id, "x" * 43)]:
        hello = {"type": "hello", "peer_id": "guest-peer-0001", "guest_token": guest_token}
        assert closed_on_connect(client, room(visit_id), hello=hello) == 4401
    assert closed_on_connect(client, room(clinic.visit_id),
                             hello={"type": "hello", "peer_id": "guest-peer-0001"}) == 4401


@pytest.mark.parametrize(("role", "status"), [
    ("prescriber", 201), ("other_prescriber", 403), ("coordinator", 403), ("patient", 403),
    ("admin", 403), (None, 401)])
def test_only_the_care_teams_prescribers_invite_guests(
    client: TestClient, clinic: Clinic, sign_in: SignIn, role: str | None, status: int
) -> None:
    sign_in(getattr(clinic, role) if role else None)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/guests", json=GUEST)
    assert response.status_code == status, response.text


def test_a_guest_invitation_is_validated(client: TestClient, clinic: Clinic,
                                         sign_in: SignIn) -> None:
    sign_in(clinic.prescriber)
    bad = client.post(f"/api/v1/visits/{clinic.visit_id}/guests",
                      json={"name": "Ana", "email": "not an email"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "email")
    extra = client.post(f"/api/v1/visits/{clinic.visit_id}/guests", json={**GUEST, "x": 1})
    assert extra.status_code == 422


# --- seats -----------------------------------------------------------------------------

FAMILY = {"name": "Sam Family", "email": "sam@family.test"}


def guest_row(run: Runner, services: Services, name: str) -> VisitGuest:
    async def load() -> VisitGuest:
        async with services.transaction() as session:
            found = await session.scalar(select(VisitGuest).where(VisitGuest.name == name))
            assert found is not None
            return found

    return run(load)


def test_one_guest_token_holds_one_seat_and_the_care_team_always_gets_in(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    family = invite(client, sign_in, clinic, run, services, FAMILY)
    path = room(clinic.visit_id)
    with contextlib.ExitStack() as stack:
        # Four anonymous sockets with one guest token: each new one takes the place of
        # the one before (a family member moving from the phone to the laptop), so the
        # token never holds more than one seat.
        sockets: list[Socket] = []
        for n in range(4):
            guest = stack.enter_context(connect(client, path))
            assert guest.hello(f"guest-device-{n}", guest_token=token)["state"] == "waiting"
            if sockets:
                assert sockets[-1].closed() == 4409
            sockets.append(guest)
        # The other guest finds the guests' seat taken...
        other = stack.enter_context(connect(client, path))
        other.send({"type": "hello", "peer_id": "family-peer-01", "guest_token": family})
        refused = other.expect("error")
        assert refused["code"] == "room_full" and "guest" in refused["message"]
        # ...and the prescriber, the patient and the coordinator all get in.
        doc = stack.enter_context(connect(client, path, cookie_of(sign_in, clinic.prescriber)))
        assert doc.hello("prescriber-peer-1")["state"] == "admitted"
        patient = stack.enter_context(connect(client, path, cookie_of(sign_in, clinic.patient)))
        assert patient.hello("patient-peer-1")["state"] == "waiting"
        coordinator = stack.enter_context(
            connect(client, path, cookie_of(sign_in, clinic.coordinator)))
        assert coordinator.hello("coordinator-peer")["state"] == "admitted"
        seen = doc.presence(lambda ps: len(ps) == 4)
        assert sorted((p["role"], p["peer_id"]) for p in seen) == [
            ("coordinator", "coordinator-peer"), ("guest", "guest-device-3"),
            ("patient", "patient-peer-1"), ("prescriber", "prescriber-peer-1")]


def test_a_full_room_gives_a_reconnect_its_own_seat(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    path = room(clinic.visit_id)
    patient_cookie = cookie_of(sign_in, clinic.patient)
    with connect(client, path, cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, path, cookie_of(sign_in, clinic.coordinator)) as coordinator, \
            connect(client, path, patient_cookie) as patient, \
            connect(client, path) as guest:
        doc.hello("prescriber-peer-1")
        coordinator.hello("coordinator-peer")
        patient.hello("patient-peer-1")
        guest.hello("guest-peer-0001", guest_token=token)
        doc.send({"type": "admit", "peer_id": "guest-peer-0001"})
        guest.expect("admitted")
        doc.presence(lambda ps: len(ps) == 4)
        # The room is full; sockets that come back with their peer id (the old one not
        # yet noticed as gone) resume their own seats and take no other.
        with connect(client, path, patient_cookie) as again:
            assert again.hello("patient-peer-1")["resumed"] is True
            assert patient.closed() == 4409
            with connect(client, path) as guest_again:
                welcome = guest_again.hello("guest-peer-0001", guest_token=token)
                assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
                assert guest.closed() == 4409
                # The guest on a second device takes the guest's place over,
                # admitted still (the admission is stored).
                with connect(client, path) as laptop:
                    welcome = laptop.hello("guest-laptop-01", guest_token=token)
                    assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
                    assert guest_again.closed() == 4409
                    seen = doc.presence(lambda ps: "guest-laptop-01" in {
                        p["peer_id"] for p in ps})
                    assert sorted(p["peer_id"] for p in seen) == [
                        "coordinator-peer", "guest-laptop-01", "patient-peer-1",
                        "prescriber-peer-1"]
                    doc.send({"type": "signal", "to": "guest-laptop-01", "candidate": None})
                    assert laptop.expect("signal")["from"] == "prescriber-peer-1"


def test_the_care_team_sends_a_guest_out(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    family = invite(client, sign_in, clinic, run, services, FAMILY)
    path = room(clinic.visit_id)
    with connect(client, path, cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, path, cookie_of(sign_in, clinic.coordinator)) as coordinator, \
            connect(client, path, cookie_of(sign_in, clinic.patient)) as patient:
        doc.hello("prescriber-peer-1")
        coordinator.hello("coordinator-peer")
        patient.hello("patient-peer-1")
        with connect(client, path) as guest:
            guest.hello("guest-peer-0001", guest_token=token)
            doc.presence(lambda ps: len(ps) == 4)
            for ws, target in [(patient, "guest-peer-0001"), (guest, "guest-peer-0001"),
                               (doc, "patient-peer-1"), (doc, "coordinator-peer")]:
                ws.send({"type": "dismiss", "peer_id": target})
                assert ws.expect("error")["code"] == "forbidden", target
            doc.send({"type": "dismiss", "peer_id": "guest-peer-0001", "revoke": "yes"})
            assert doc.expect("error")["field"] == "revoke"
            # A waiting guest: out of the room, the seat free, everyone told.
            doc.send({"type": "dismiss", "peer_id": "guest-peer-0001"})
            told = guest.expect("error")
            assert told["code"] == "dismissed"
            assert guest.closed() == 4411
            for ws in (doc, coordinator, patient):
                ws.presence(lambda ps: "guest" not in states(ps) and len(ps) == 3)
        assert audit_count(run, services, "dismiss_guest") == 1
        # The freed seat takes the other guest; the first, back on their link, waits.
        with connect(client, path) as other:
            other.hello("family-peer-01", guest_token=family)
            other.send({"type": "leave"})
            assert other.closed() == 1000
        with connect(client, path) as guest:
            assert guest.hello("guest-peer-0001", guest_token=token)["state"] == "waiting"
            coordinator.send({"type": "admit", "peer_id": "guest-peer-0001"})
            guest.expect("admitted")
            assert guest_row(run, services, GUEST["name"]).admitted_at is not None
            # Admitted, then sent out for good: admission cleared, invitation revoked.
            coordinator.send({"type": "dismiss", "peer_id": "guest-peer-0001",
                              "revoke": True})
            assert "no longer works" in guest.expect("error", where=lambda m: m[
                "code"] == "dismissed")["message"]
            assert guest.closed() == 4411
            doc.presence(lambda ps: len(ps) == 3)
    ana = guest_row(run, services, GUEST["name"])
    assert ana.admitted_at is None and ana.revoked_at is not None
    assert audit_count(run, services, "dismiss_guest") == 2
    hello = {"type": "hello", "peer_id": "guest-peer-0001", "guest_token": token}
    assert closed_on_connect(client, path, hello=hello) == 4401


def test_a_guest_is_not_let_in_before_the_patient_agrees(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """42 CFR Part 2: a guest hears what the patient says, so the patient's consent to
    their presence comes first; the admission is then a disclosure, accounted once."""
    token = invite(client, sign_in, clinic, run, services, consent=False)
    sign_in(clinic.patient)
    room_page = client.get(f"/visits/{clinic.visit_id}?part=guest-consent").text
    assert 'data-testid="agree-guest"' in room_page and "Ana Interpreter" in room_page
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc:
        doc.hello("prescriber-peer-1")
        with connect(client, room(clinic.visit_id)) as guest:
            guest.hello("guest-peer-0001", guest_token=token)
            doc.presence(lambda ps: any(p["role"] == "guest" for p in ps))
            doc.send({"type": "admit", "peer_id": "guest-peer-0001"})
            refused = doc.expect("error")
            assert refused["code"] == "guest_consent_required"
            assert "Ana Interpreter" in refused["message"]
            assert all(m["type"] != "admitted" for m in guest.quiet(0.3))
            # The patient agrees (twice, as a double tap would: one consent).
            sign_in(clinic.patient)
            guest_id = int(re.findall(r'data-guest-id="(\d+)"', room_page)[0])
            url = f"/api/v1/visits/{clinic.visit_id}/guests/{guest_id}/consent"
            first = client.post(url)
            second = client.post(url)
            assert first.status_code == second.status_code == 201
            assert first.json()["id"] == second.json()["id"]
            assert first.json()["kind"] == "guest"
            assert first.json()["recipient_name"] == "Ana Interpreter"
            doc.send({"type": "admit", "peer_id": "guest-peer-0001"})
            guest.expect("admitted")
            doc.send({"type": "remove", "peer_id": "guest-peer-0001"})
            guest.expect("removed")
            doc.send({"type": "admit", "peer_id": "guest-peer-0001"})
            guest.expect("admitted")
    assert 'data-testid="agree-guest"' not in \
        client.get(f"/visits/{clinic.visit_id}?part=guest-consent").text
    disclosures = client.get(f"/api/v1/patients/{clinic.patient.id}/disclosures").json()
    assert [(d["channel"], d["recipient_name"], d["consent_id"])
            for d in disclosures["disclosures"]] == [
        ("visit_guest", "Ana Interpreter", first.json()["id"])]


def test_only_the_visits_patient_agrees_to_a_guest(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    invite(client, sign_in, clinic, run, services, consent=False)
    sign_in(clinic.prescriber)
    guests_page = client.get(f"/visits/{clinic.visit_id}/guests").text
    guest_id = int(re.findall(r'/guests/(\d+)/revoke', guests_page)[0])
    url = f"/api/v1/visits/{clinic.visit_id}/guests/{guest_id}/consent"
    assert client.post(url).status_code == 403  # staff cannot agree for the patient
    sign_in(clinic.patient2)
    assert client.post(url).status_code == 403
    sign_in(clinic.patient, visit_id=clinic.visit_id)  # a join-link session may
    assert client.post(url).status_code == 201
    assert client.post(f"/api/v1/visits/{clinic.visit_id}/guests/999999/consent") \
        .status_code == 404
