"""The signaling protocol (docs/signaling.md) over real WebSockets, on the real app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.models import AuditEntry, Visit, VisitKind, VisitStatus
from server.services import Services
from tests import app_server
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import (
    closed_on_connect,
    connect,
    cookie_of,
    peer_id,
)


def room(visit_id: int) -> str:
    return f"/ws/visits/{visit_id}"


def audit_count(run: Runner, services: Services, action: str, outcome: str = "success") -> int:
    async def count() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(
                select(func.count()).select_from(AuditEntry)
                .where(AuditEntry.action == action, AuditEntry.outcome == outcome)) or 0)

    return run(count)


def visit_status(run: Runner, services: Services, visit_id: int) -> VisitStatus:
    async def status() -> VisitStatus:
        async with services.transaction() as session:
            visit = await session.get(Visit, visit_id)
            assert visit is not None
            return visit.status

    return run(status)


def states(participants: list[dict[str, Any]]) -> dict[str, str]:
    return {p["role"]: p["state"] for p in participants}


# --- who may join -----------------------------------------------------------------------

JOINS = {
    "patient": ("waiting", None),
    "join_link": ("waiting", None),
    "prescriber": ("admitted", None),
    "coordinator": ("admitted", None),
    "patient2": (None, 4403),
    "other_prescriber": (None, 4403),
    "other_coordinator": (None, 4403),
    "admin": (None, 4403),
    "join_link_other_visit": (None, 4403),
    "anonymous": (None, 4401),
}


@pytest.mark.parametrize("role", list(JOINS))
def test_who_may_join_the_room(client: TestClient, clinic: Clinic, sign_in: SignIn,
                               run: Runner, services: Services, role: str) -> None:
    state, code = JOINS[role]
    scope = None
    person = getattr(clinic, role, None)
    if role == "join_link":
        person, scope = clinic.patient, clinic.visit_id
    elif role == "join_link_other_visit":
        # The patient's join link for another of their visits opens that visit only.
        async def another_visit() -> int:
            async with services.transaction() as session:
                visit = Visit(patient_id=clinic.patient.id, prescriber_id=clinic.prescriber.id,
                              kind=VisitKind.follow_up, status=VisitStatus.scheduled,
                              scheduled_at=services.clock.now() + timedelta(days=7),
                              created_at=services.clock.now())
                session.add(visit)
                await session.flush()
                return visit.id

        person, scope = clinic.patient, run(another_visit)
    cookie = cookie_of(sign_in, person, visit_id=scope)
    if state is not None:
        with connect(client, room(clinic.visit_id), cookie) as ws:
            welcome = ws.hello(peer_id())
            assert welcome["state"] == state
            assert welcome["you"]["role"] == person.role.value  # type: ignore[union-attr]
        return
    denied_before = audit_count(run, services, "access", "denied")
    hello = {"type": "hello", "peer_id": peer_id()}
    assert closed_on_connect(client, room(clinic.visit_id), cookie, hello) == code
    if code == 4403:
        # Refusals are in the audit log, as for HTTP.
        assert audit_count(run, services, "access", "denied") == denied_before + 1


def test_unknown_visit_and_cross_site_origin(client: TestClient, clinic: Clinic,
                                             sign_in: SignIn) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    assert closed_on_connect(client, room(999_999), cookie) == 4404
    assert closed_on_connect(client, "/ws/visits/abc", cookie) == 4404
    assert closed_on_connect(client, room(clinic.visit_id), cookie,
                             origin="https://evil.example") == 4403
    with connect(client, room(clinic.visit_id), cookie, origin="http://testserver") as ws:
        assert ws.hello(peer_id())["state"] == "admitted"


# --- the waiting room, admission and relaying -------------------------------------------


def test_patient_waits_prescriber_admits_and_they_signal(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    with connect(client, room(clinic.visit_id), patient_cookie) as patient, \
            connect(client, room(clinic.visit_id), prescriber_cookie) as prescriber:
        welcome = patient.hello("patient-peer-1")
        assert welcome["state"] == "waiting"
        assert welcome["resumed"] is False
        assert welcome["ice_servers"] == [] and welcome["ice_expires_at"] is None
        assert visit_status(run, services, clinic.visit_id) is VisitStatus.waiting

        assert prescriber.hello("prescriber-peer-1")["state"] == "admitted"
        seen = prescriber.presence(lambda ps: len(ps) == 2)
        assert states(seen) == {"patient": "waiting", "prescriber": "admitted"}
        # Politeness is per pair and the two sides disagree: exactly one is polite.
        mine = {p["peer_id"]: p["polite"] for p in seen}
        assert mine["prescriber-peer-1"] is None
        theirs = patient.presence(lambda ps: len(ps) == 2)
        assert {p["peer_id"]: p["polite"] for p in theirs}["prescriber-peer-1"] is \
            (not mine["patient-peer-1"])

        # A waiting patient cannot signal, and a patient cannot admit.
        patient.send({"type": "signal", "to": "prescriber-peer-1",
                      "description": {"type": "offer", "sdp": "v=0"}})
        assert patient.expect("error")["code"] == "invalid_state"
        patient.send({"type": "admit", "peer_id": "patient-peer-1"})
        assert patient.expect("error")["code"] == "forbidden"

        prescriber.send({"type": "admit", "peer_id": "patient-peer-1"})
        patient.expect("admitted")
        assert states(patient.presence(lambda ps: states(ps).get("patient") == "admitted")) \
            == {"patient": "admitted", "prescriber": "admitted"}
        assert visit_status(run, services, clinic.visit_id) is VisitStatus.in_progress
        assert audit_count(run, services, "admit") == 1

        offer = {"type": "offer", "sdp": "v=0\r\n"}
        prescriber.send({"type": "signal", "to": "patient-peer-1", "description": offer})
        relayed = patient.expect("signal")
        assert relayed == {"type": "signal", "from": "prescriber-peer-1", "description": offer}
        candidate = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host",
                     "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"}
        patient.send({"type": "signal", "to": "prescriber-peer-1", "candidate": candidate})
        assert prescriber.expect("signal")["candidate"] == candidate
        patient.send({"type": "signal", "to": "prescriber-peer-1", "candidate": None})
        assert prescriber.expect("signal")["candidate"] is None

        prescriber.send({"type": "signal", "to": "nobody-here-1", "candidate": None})
        error = prescriber.expect("error")
        assert (error["code"], error["field"]) == ("unknown_peer", "to")
        patient.send({"type": "ping"})
        patient.expect("pong")


def test_rooms_are_isolated(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    one = [cookie_of(sign_in, p) for p in (clinic.patient, clinic.prescriber)]
    two = [cookie_of(sign_in, p) for p in (clinic.patient2, clinic.prescriber)]
    with connect(client, room(clinic.visit2_id), two[0]) as other_patient, \
            connect(client, room(clinic.visit2_id), two[1]) as other_prescriber:
        other_patient.hello("visit2-patient")
        other_prescriber.hello("visit2-prescriber")
        other_prescriber.send({"type": "admit", "peer_id": "visit2-patient"})
        other_patient.expect("admitted")
        other_patient.quiet()
        other_prescriber.quiet()
        with connect(client, room(clinic.visit_id), one[0]) as patient, \
                connect(client, room(clinic.visit_id), one[1]) as prescriber:
            patient.hello("visit1-patient")
            prescriber.hello("visit1-prescriber")
            prescriber.send({"type": "admit", "peer_id": "visit1-patient"})
            patient.expect("admitted")
            prescriber.send({"type": "signal", "to": "visit1-patient",
                             "description": {"type": "offer", "sdp": "v=0"}})
            patient.expect("signal")
            # A peer of another room is not addressable from this one.
            prescriber.send({"type": "signal", "to": "visit2-patient", "candidate": None})
            assert prescriber.expect("error")["code"] == "unknown_peer"
            presences = [m for m in prescriber.seen if m["type"] == "presence"]
            for presence in presences:
                assert {p["peer_id"] for p in presence["participants"]} <= {
                    "visit1-patient", "visit1-prescriber"}
        # Nothing of visit 1 (presence, admission, signals, leaving) reached visit 2.
        assert other_patient.quiet(0.5) == []
        assert other_prescriber.quiet(0.1) == []


# --- bad input ---------------------------------------------------------------------------

BAD_FRAMES = [
    ("{not json", "invalid_message", "frame"),
    ("[1, 2]", "invalid_message", "frame"),
    ('{"type": 5}', "invalid_message", "type"),
    ('{"type": "teleport"}', "invalid_message", "type"),
    ('{"type": "signal", "to": "x"}', "invalid_message", "to"),
    ('{"type": "signal", "to": "valid-peer-id"}', "invalid_message", "description"),
    ('{"type": "signal", "to": "valid-peer-id", "description": {"type": "offer"}}',
     "invalid_message", "description.sdp"),
    ('{"type": "signal", "to": "valid-peer-id", "description": {"type": "pranswer", "sdp": "x"}}',
     "invalid_message", "description.type"),
    ('{"type": "signal", "to": "valid-peer-id", "candidate": {"candidate": 7}}',
     "invalid_message", "candidate.candidate"),
    ('{"type": "admit", "peer_id": "../../etc"}', "invalid_message", "peer_id"),
    ('{"type": "hello", "peer_id": "another-peer-1"}', "invalid_state", "type"),
]


def test_malformed_and_oversized_frames_get_errors_and_the_socket_stays(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    with connect(client, room(clinic.visit_id), cookie) as ws:
        ws.send({"type": "ping"})
        assert ws.expect("error")["code"] == "invalid_state"  # hello comes first
        ws.hello("prescriber-peer-1")
        for text, code, field in BAD_FRAMES:
            ws.send_text(text)
            error = ws.expect("error")
            assert (error["code"], error["field"]) == (code, field), text
        ws.send_bytes(b'{"type": "ping"}')
        assert ws.expect("error")["code"] == "invalid_message"
        big = json.dumps({"type": "signal", "to": "valid-peer-id",
                          "description": {"type": "offer", "sdp": "a" * (64 * 1024)}})
        ws.send_text(big)
        error = ws.expect("error")
        assert error["code"] == "too_large"
        # Multi-byte characters count as bytes: 30,000 of them are about 90 KB.
        ws.send_text(json.dumps({"type": "ping", "pad": "€" * 30_000}, ensure_ascii=False))
        assert ws.expect("error")["code"] == "too_large"
        ws.send({"type": "ping"})
        ws.expect("pong")


def test_a_text_frame_that_is_not_utf8_closes_the_socket_with_1007(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    """RFC 6455, 8.1: the server fails the connection (1007) rather than guessing; the
    room sees the member go, the others stay."""
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as bad:
        doc.hello("prescriber-peer-1")
        bad.hello("patient-peer-1")
        bad.connection.send('{"type": "ping", "a": "\ud800"}'.encode("utf-8", "surrogatepass"),
                            text=True)
        assert bad.closed() == 1007
        doc.presence(lambda ps: [p["peer_id"] for p in ps] == ["prescriber-peer-1"])
        doc.send({"type": "ping"})
        doc.expect("pong")


def test_a_flood_is_rate_limited_and_closed_while_others_carry_on(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as flood, \
            connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as calm:
        flood.hello("flooding-peer")
        calm.hello("calm-prescriber")
        flood.burst([{"type": "ping"}] * 200)
        assert flood.closed() == 4429
        replies = [m["type"] for m in flood.seen]
        errors = [m for m in flood.seen if m["type"] == "error"]
        assert errors[0]["code"] == "rate_limited"
        # The burst allowance (less the hello), and what refilled while it was read.
        assert 59 <= replies.count("pong") <= 70
        # Told once when limiting starts, and once more when closed; not per message.
        assert replies.count("error") == 2
        # The flooder is gone from the room; the other member is served as before.
        calm.presence(lambda ps: [p["peer_id"] for p in ps] == ["calm-prescriber"])
        calm.send({"type": "ping"})
        calm.expect("pong", timeout=1.0)


def test_the_room_holds_four_with_a_seat_kept_for_each_of_the_care(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    prescriber = cookie_of(sign_in, clinic.prescriber)
    coordinator = cookie_of(sign_in, clinic.coordinator)
    with connect(client, room(clinic.visit_id), prescriber) as a, \
            connect(client, room(clinic.visit_id), prescriber) as b, \
            connect(client, room(clinic.visit_id), prescriber) as c, \
            connect(client, room(clinic.visit_id), coordinator) as d, \
            connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as e:
        # The prescriber's seat and the shared one: the patient's and the coordinator's
        # stay free for them, however many tabs the prescriber opens.
        a.hello("prescriber-tab-0")
        b.hello("prescriber-tab-1")
        c.send({"type": "hello", "peer_id": "prescriber-tab-2"})
        assert c.expect("error")["code"] == "room_full"
        assert e.hello("patient-peer-1")["state"] == "waiting"
        assert d.hello("coordinator-peer")["state"] == "admitted"
        a.presence(lambda ps: len(ps) == 4)
        # Full now: a second coordinator tab waits for the shared seat like anyone.
        with connect(client, room(clinic.visit_id), coordinator) as f:
            f.send({"type": "hello", "peer_id": "coordinator-tab-2"})
            assert f.expect("error")["code"] == "room_full"
            b.send({"type": "leave"})
            assert b.closed() == 1000
            assert f.hello("coordinator-tab-2")["state"] == "admitted"


# --- reconnecting ------------------------------------------------------------------------


def test_reconnect_resumes_the_same_place_without_a_second_admission(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc:
        doc.hello("prescriber-peer-1")
        with connect(client, room(clinic.visit_id), patient_cookie) as patient:
            patient.hello("patient-peer-1")
            doc.send({"type": "admit", "peer_id": "patient-peer-1"})
            patient.expect("admitted")
            doc.presence(lambda ps: states(ps).get("patient") == "admitted")
        # The network dropped: the patient is gone from presence...
        doc.presence(lambda ps: [p["peer_id"] for p in ps] == ["prescriber-peer-1"])
        with connect(client, room(clinic.visit_id), patient_cookie) as patient:
            # ...and comes back to the same place, admitted, with nobody admitting twice.
            welcome = patient.hello("patient-peer-1")
            assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
            seen = doc.presence(lambda ps: len(ps) == 2)
            assert states(seen) == {"patient": "admitted", "prescriber": "admitted"}
            # A second socket with the same peer_id takes the place over.
            with connect(client, room(clinic.visit_id), patient_cookie) as again:
                assert again.hello("patient-peer-1")["resumed"] is True
                assert patient.closed() == 4409
                doc.send({"type": "signal", "to": "patient-peer-1", "candidate": None})
                assert again.expect("signal")["from"] == "prescriber-peer-1"
    assert audit_count(run, services, "admit") == 1
    assert visit_status(run, services, clinic.visit_id) is VisitStatus.in_progress


def test_admission_survives_a_server_restart(
    client: TestClient, app: Any, clinic: Clinic, sign_in: SignIn, run: Runner,
    services: Services
) -> None:
    from server.app import create_app

    patient_cookie = cookie_of(sign_in, clinic.patient)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, room(clinic.visit_id), patient_cookie) as patient:
        doc.hello("prescriber-peer-1")
        patient.hello("patient-peer-1")
        doc.send({"type": "admit", "peer_id": "patient-peer-1"})
        patient.expect("admitted")
    # A new process on the same database: no rooms in memory, admission in the database.
    with app_server.test_client(create_app(services.settings)) as fresh, \
            connect(fresh, room(clinic.visit_id), patient_cookie) as patient:
        welcome = patient.hello("patient-peer-1")
        assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
    assert audit_count(run, services, "admit") == 1


def test_someone_else_cannot_take_a_peer_id(client: TestClient, clinic: Clinic,
                                            sign_in: SignIn) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as pt:
        doc.hello("prescriber-peer-1")
        pt.send({"type": "hello", "peer_id": "prescriber-peer-1"})
        error = pt.expect("error")
        assert (error["code"], error["field"]) == ("peer_id_in_use", "peer_id")
        doc.send({"type": "ping"})
        doc.expect("pong")


# --- removing, leaving and ending --------------------------------------------------------


def test_remove_sends_back_to_waiting_and_end_closes_the_room(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    coordinator_cookie = cookie_of(sign_in, clinic.coordinator)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc, \
            connect(client, room(clinic.visit_id), coordinator_cookie) as coord, \
            connect(client, room(clinic.visit_id), patient_cookie) as patient:
        doc.hello("prescriber-peer-1")
        coord.hello("coordinator-peer")
        patient.hello("patient-peer-1")
        coord.send({"type": "admit", "peer_id": "patient-peer-1"})
        patient.expect("admitted")
        doc.send({"type": "remove", "peer_id": "coordinator-peer"})
        assert doc.expect("error")["code"] == "forbidden"
        doc.send({"type": "remove", "peer_id": "patient-peer-1"})
        patient.expect("removed")
        assert states(patient.presence(lambda ps: states(ps)["patient"] == "waiting")) == {
            "patient": "waiting", "prescriber": "admitted", "coordinator": "admitted"}
        assert visit_status(run, services, clinic.visit_id) is VisitStatus.waiting
        coord.send({"type": "end"})
        assert coord.expect("error")["code"] == "forbidden"  # the prescriber ends it
        doc.send({"type": "end"})
        for ws in (doc, coord, patient):
            ws.expect("ended")
            assert ws.closed() == 1000
    assert visit_status(run, services, clinic.visit_id) is VisitStatus.completed
    assert closed_on_connect(client, room(clinic.visit_id), patient_cookie) == 4410


def test_leaving_the_waiting_room_restores_the_visit(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as patient:
        patient.hello("patient-peer-1")
        assert visit_status(run, services, clinic.visit_id) is VisitStatus.waiting
        patient.send({"type": "leave"})
        assert patient.closed() == 1000
    assert visit_status(run, services, clinic.visit_id) is VisitStatus.scheduled


# --- ICE servers ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{
    "stun_urls": ("stun:127.0.0.1:3478",), "turn_urls": ("turn:127.0.0.1:3478?transport=udp",),
    "turn_secret": "coturn-static-secret", "turn_ttl_seconds": 600}])
def test_turn_credentials_in_coturn_rest_form(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as ws:
        welcome = ws.hello("patient-peer-1")
        stun, turn = welcome["ice_servers"]
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        expiry, user = turn["username"].split(":")
        assert user == str(clinic.patient.id)
        now = services.clock.now().timestamp()
        assert 590 <= int(expiry) - now <= 600
        expected = base64.b64encode(hmac.new(b"coturn-static-secret", turn["username"].encode(),
                                             hashlib.sha1).digest()).decode()
        assert turn["credential"] == expected
        assert datetime.fromisoformat(welcome["ice_expires_at"]).timestamp() == int(expiry)
        services.clock.advance(timedelta(minutes=9))
        ws.send({"type": "ice-refresh"})
        fresh = ws.expect("ice-servers")
        assert int(fresh["ice_servers"][1]["username"].split(":")[0]) >= int(expiry) + 9 * 60


@pytest.mark.parametrize("settings_overrides", [{
    "turn_urls": ("turn:127.0.0.1:3478?transport=udp",), "turn_secret": "coturn-static-secret",
    "ice_transport_policy": "relay"}])
def test_a_relay_only_clinic_tells_every_client_to_use_turn_only(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as ws:
        assert ws.hello("patient-peer-1")["ice_transport_policy"] == "relay"
        ws.send({"type": "ice-refresh"})
        assert ws.expect("ice-servers")["ice_transport_policy"] == "relay"


def test_media_may_go_direct_by_default(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as ws:
        assert ws.hello("patient-peer-1")["ice_transport_policy"] == "all"
