"""``/ws/events``: live dashboard events, who receives them, and the long-wait alert."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.auth import COOKIE_NAME, load_session
from server.services import Services
from signaling.hub import Hub
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import closed_on_connect, connect, cookie_of
from tests.test_signaling import audit_count, room


def test_events_reach_the_care_team_only(client: TestClient, clinic: Clinic,
                                         sign_in: SignIn) -> None:
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator)) as coordinator, \
            connect(client, "/ws/events", cookie_of(sign_in, clinic.prescriber)) as prescriber, \
            connect(client, "/ws/events",
                    cookie_of(sign_in, clinic.other_coordinator)) as outsider:
        for ws in (coordinator, prescriber, outsider):
            ws.expect("subscribed")
        with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as pt:
            pt.hello("patient-peer-1")
            for ws in (coordinator, prescriber):
                event = ws.expect("visit.waiting")
                assert (event["visit_id"], event["patient_id"]) == (clinic.visit_id,
                                                                     clinic.patient.id)
        # other_coordinator looks after patient2 only.
        assert outsider.quiet(0.3) == []
        coordinator.send({"type": "ping"})
        coordinator.expect("pong")


def test_events_need_a_session_from_our_own_site(client: TestClient, clinic: Clinic,
                                                 sign_in: SignIn) -> None:
    assert closed_on_connect(client, "/ws/events") == 4401
    assert closed_on_connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator),
                             origin="https://evil.example") == 4403


def test_signing_out_or_idling_closes_the_dashboard_but_not_the_call(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
    app: object
) -> None:
    csrf = sign_in(clinic.coordinator)
    cookie = client.cookies.get(COOKIE_NAME) or ""
    idle_cookie = cookie_of(sign_in, clinic.prescriber)
    with connect(client, "/ws/events", cookie) as events, \
            connect(client, "/ws/events", idle_cookie) as idle_events, \
            connect(client, room(clinic.visit_id), idle_cookie) as call:
        events.expect("subscribed")
        idle_events.expect("subscribed")
        call.hello("prescriber-peer-1")
        hub: Hub = app.state.signaling  # type: ignore[attr-defined]
        response = client.delete("/api/v1/session", headers={
            "X-CSRF-Token": csrf, "cookie": f"{COOKIE_NAME}={cookie}"})
        assert response.status_code == 204
        run(hub.check_sessions)
        assert events.expect("error")["code"] == "session_ended"
        assert events.closed() == 4401
        # Sixteen idle minutes: the staff dashboard goes dark; a call in progress does not.
        services.clock.advance(timedelta(minutes=16))
        run(hub.check_sessions)
        assert idle_events.closed() == 4401
        call.send({"type": "ping"})
        call.expect("pong")


@pytest.mark.parametrize("settings_overrides", [
    {"run_background_tasks": True, "waiting_alert_poll_seconds": 0.05}])
def test_a_long_wait_alerts_the_coordinators_once(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    with connect(client, "/ws/events", cookie_of(sign_in, clinic.coordinator)) as coordinator, \
            connect(client, "/ws/events",
                    cookie_of(sign_in, clinic.other_coordinator)) as outsider, \
            connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as pt:
        coordinator.expect("subscribed")
        outsider.expect("subscribed")
        pt.hello("patient-peer-1")  # the visit starts in an hour: early is fine
        coordinator.expect("visit.waiting")
        services.clock.advance(timedelta(minutes=69))
        assert [m["type"] for m in coordinator.quiet(0.3)] == []
        services.clock.advance(timedelta(minutes=2))  # 11 minutes past the start
        alert = coordinator.expect("visit.waiting_too_long", timeout=3)
        assert alert["visit_id"] == clinic.visit_id
        assert alert["minutes"] == 71
        services.clock.advance(timedelta(minutes=30))
        assert coordinator.quiet(0.3) == []
        assert outsider.quiet(0.1) == []
    assert audit_count(run, services, "alert_waiting") == 1


class _Recorded:
    """A socket as the hub sees it (push and close), recording what it was sent."""

    def __init__(self) -> None:
        self.pushed: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    def push(self, message: dict[str, Any]) -> None:
        self.pushed.append(message)

    def close(self, code: int) -> None:
        self.closed_with = code


def test_a_socket_opened_while_sessions_are_checked_is_not_closed(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    early_cookie = cookie_of(sign_in, clinic.coordinator)
    late_cookie = cookie_of(sign_in, clinic.prescriber)

    async def race() -> tuple[_Recorded, _Recorded, bool]:
        early, late = await load_session(services, early_cookie), \
            await load_session(services, late_cookie)
        assert early is not None and late is not None
        hub = Hub(services)
        watched_early, watched_late = _Recorded(), _Recorded()
        hub.watch(watched_early, early, idle=False)
        check = asyncio.create_task(hub.check_sessions())
        await asyncio.sleep(0)  # the check is now waiting for its query
        # A socket of another live session opens meanwhile (a capacity run opens
        # hundreds a second; this one used to be closed as "session ended").
        hub.watch(watched_late, late, idle=False)
        await check
        still_watched = watched_late in hub._watched
        return watched_early, watched_late, still_watched

    early, late, still_watched = run(race)
    assert early.closed_with is None and late.closed_with is None
    assert late.pushed == []
    assert still_watched
