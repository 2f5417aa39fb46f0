"""The page a guest's invitation link opens: the visit room, with the token wired in."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from server.models import Visit, VisitGuest, VisitStatus
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_signaling_guests import invite


def guest_page(client: TestClient, visit_id: int, token: str) -> tuple[int, str]:
    response = client.get(f"/visits/{visit_id}/guest", params={"t": token})
    return response.status_code, response.text


def assert_no_room(status: int, html: str) -> None:
    assert status == 400
    assert "This link cannot be used" in html
    assert "visit-room" not in html and "data-guest-token" not in html
    assert "/static/visit-room.js" not in html


def test_an_invited_guest_gets_the_room_with_the_token_wired(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)  # signs out again
    response = client.get(f"/visits/{clinic.visit_id}/guest", params={"t": token})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    room = re.search(r'<section class="visit-room"[^>]*>', html)
    assert room is not None
    assert f'data-guest-token="{token}"' in room.group(0)
    assert f'data-visit-id="{clinic.visit_id}"' in room.group(0)
    assert 'data-role="guest"' in room.group(0) and "data-live" in room.group(0)
    assert '<script type="module" src="/static/visit-room.js">' in html
    assert '<script type="module" src="/static/device-check.js">' in html
    assert 'data-testid="device-check-start"' in html
    assert "You are in the waiting room" in html and 'data-testid="join"' in html
    assert clinic.prescriber.name in html
    # Nothing about the patient, and no note panel, for someone outside the care team.
    assert clinic.patient.name not in html
    assert "note-panel" not in html


@pytest.mark.parametrize("spoil", ["tampered", "garbage", "missing", "other_visit"])
def test_a_bad_token_gets_a_plain_400_and_no_room(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    spoil: str,
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    visit_id = clinic.visit_id
    if spoil == "tampered":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif spoil == "garbage":
        token = "<script>alert(1)</script>"
    elif spoil == "missing":
        token = ""
    else:
        visit_id += 1000
    status, html = guest_page(client, visit_id, token)
    assert_no_room(status, html)
    assert "<script>alert(1)</script>" not in html


@pytest.mark.parametrize("change", ["expired", "revoked", "ended"])
def test_an_expired_or_revoked_invitation_or_an_ended_visit_gets_400(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    change: str,
) -> None:
    token = invite(client, sign_in, clinic, run, services)

    async def spoil() -> None:
        now = services.clock.now()
        async with services.transaction() as session:
            if change == "expired":
                await session.execute(update(VisitGuest).values(
                    expires_at=now - timedelta(seconds=1)))
            elif change == "revoked":
                await session.execute(update(VisitGuest).values(revoked_at=now))
            else:
                await session.execute(update(Visit).where(Visit.id == clinic.visit_id)
                                      .values(status=VisitStatus.completed))

    run(spoil)
    status, html = guest_page(client, clinic.visit_id, token)
    assert_no_room(status, html)
    if change == "ended":
        assert "This visit has ended" in html
