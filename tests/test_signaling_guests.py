"""Guests: the prescriber invites an interpreter or family member, who joins by link."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import OutboxEmail, VisitGuest
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import closed_on_connect, connect, cookie_of
from tests.test_signaling import audit_count, room

GUEST = {"name": "Ana Interpreter", "email": "Ana@Interpreters.test"}


def invite(client: TestClient, sign_in: SignIn, clinic: Clinic, run: Runner,
           services: Services) -> str:
    """Invite the guest as the prescriber; the token from the emailed link."""
    sign_in(clinic.prescriber)
    response = client.post(f"/api/v1/visits/{clinic.visit_id}/guests", json=GUEST)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["email"], body["admitted_at"]) == (
        "Ana Interpreter", "ana@interpreters.test", None)
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
    assert sent.to_addr == "ana@interpreters.test"
    assert clinic.patient.name not in sent.body  # nothing about the patient
    link = next(line for line in sent.body.splitlines() if line.startswith("http"))
    assert urlsplit(link).path == f"/visits/{clinic.visit_id}/guest"
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
