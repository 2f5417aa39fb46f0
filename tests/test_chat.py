"""Chat in the call (server/chat.py, the ``chat`` signaling message, docs/signaling.md
"Chat"): stored once per client_id, relayed to the admitted members only, sent as history
on each admission, read afterwards with the visit's record, audited without its text."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from server import chat, visits
from server.actors import Actor
from server.errors import APIError
from server.models import AuditEntry, VisitChatMessage
from server.services import Services
from signaling import protocol
from signaling.protocol import Chat
from tests.clinic import Clinic, Person
from tests.conftest import Runner, SignIn
from tests.signaling_support import Socket, connect, cookie_of
from tests.test_signaling import room
from tests.test_signaling_guests import invite

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes" \'too\''
RTL = "مرحبا، كيف حالك؟ שלום 👋🏽 👨‍👩‍👧 ok"


def actor(person: Person) -> Actor:
    return Actor(person.id, person.role, person.name, person.email)


def sender(person: Person) -> chat.Sender:
    return chat.Sender.of_user(actor(person))


def admit_patient(run: Runner, services: Services, clinic: Clinic) -> None:
    """The patient waits and the prescriber lets them in (the visit is in progress)."""

    async def admit() -> None:
        now = services.clock.now()
        async with services.transaction() as session:
            await visits.mark_waiting(session, actor(clinic.patient), clinic.visit_id,
                                      now=now, alert_after=timedelta(minutes=10))
        async with services.transaction() as session:
            await visits.admit(session, actor(clinic.prescriber), clinic.visit_id, now=now)

    run(admit)


def send(run: Runner, services: Services, who: chat.Sender, visit_id: int, client_id: str,
         text: str) -> chat.ChatSent:
    async def go() -> chat.ChatSent:
        async with services.transaction() as session:
            return await chat.send_message(session, who, visit_id, client_id, text,
                                           services.clock.now())

    return run(go)


def refusal(run: Runner, services: Services, who: chat.Sender, visit_id: int,
            text: str, client_id: str = "client-000001") -> APIError:
    with pytest.raises(APIError) as refused:
        send(run, services, who, visit_id, client_id, text)
    return refused.value


def rows(run: Runner, services: Services) -> list[VisitChatMessage]:
    async def load() -> list[VisitChatMessage]:
        async with services.transaction() as session:
            return list(await session.scalars(select(VisitChatMessage)
                                              .order_by(VisitChatMessage.id)))

    return run(load)


def audit_rows(run: Runner, services: Services, action: str,
               resource_type: str) -> list[AuditEntry]:
    async def load() -> list[AuditEntry]:
        async with services.transaction() as session:
            return list(await session.scalars(select(AuditEntry).where(
                AuditEntry.action == action, AuditEntry.resource_type == resource_type)))

    return run(load)


def all_audit_details(run: Runner, services: Services) -> str:
    async def load() -> str:
        async with services.transaction() as session:
            return json.dumps([e.detail for e in await session.scalars(select(AuditEntry))],
                              ensure_ascii=False)

    return run(load)


# --- the domain ----------------------------------------------------------------------------


def test_concurrent_sends_of_one_client_id_store_one_message(
    run: Runner, services: Services, clinic: Clinic
) -> None:
    """A resend crossing the first try (two sockets, two instances): one row, one audit
    entry, and every try answers with the same stored message."""
    admit_patient(run, services, clinic)
    who = sender(clinic.patient)

    async def race() -> list[chat.ChatSent]:
        async def one() -> chat.ChatSent:
            async with services.transaction() as session:
                return await chat.send_message(session, who, clinic.visit_id,
                                               "same-client-id-1", "Can you hear me?",
                                               services.clock.now())

        return list(await asyncio.gather(*(one() for _ in range(8))))

    results = run(race)
    assert len({r.message.id for r in results}) == 1
    assert [r.created for r in results].count(True) == 1
    [stored] = rows(run, services)
    assert (stored.text, stored.client_id, stored.sender_user_id) == (
        "Can you hear me?", "same-client-id-1", clinic.patient.id)
    assert len(audit_rows(run, services, "create", "chat_message")) == 1
    # Later, a resend after a reconnect: the stored message, not a second one.
    again = send(run, services, who, clinic.visit_id, "same-client-id-1", "Can you hear me?")
    assert (again.created, again.message.id) == (False, stored.id)
    assert len(rows(run, services)) == 1


def test_text_is_trimmed_and_between_1_and_2000_characters(
    run: Runner, services: Services, clinic: Clinic
) -> None:
    who = sender(clinic.prescriber)
    for empty in ("", "   \n\t ", "\u200b\u200d", "\u00a0"):
        error = refusal(run, services, who, clinic.visit_id, empty)
        assert (error.status, error.code, error.field) == (422, "text_empty", "text")
    error = refusal(run, services, who, clinic.visit_id, "x" * 2001)
    assert (error.status, error.code, error.field) == (422, "text_too_long", "text")
    error = refusal(run, services, who, clinic.visit_id, "bad \x00 byte")
    assert (error.code, error.field) == ("invalid_text", "text")
    error = refusal(run, services, who, clinic.visit_id, "hello", client_id="short")
    assert (error.code, error.field) == ("invalid", "client_id")
    longest = send(run, services, who, clinic.visit_id, "client-longest", " " + "é" * 2000 + "\n")
    assert longest.message.text == "é" * 2000
    trimmed = send(run, services, who, clinic.visit_id, "client-trimmed", "  a  b  ")
    assert trimmed.message.text == "a  b"
    assert [r.client_id for r in rows(run, services)] == ["client-longest", "client-trimmed"]


def test_who_may_send_a_waiting_patient_not_yet(
    run: Runner, services: Services, clinic: Clinic
) -> None:
    error = refusal(run, services, sender(clinic.patient), clinic.visit_id, "Hello?")
    assert (error.status, error.code) == (409, "not_admitted")
    for outsider in (clinic.other_prescriber, clinic.patient2, clinic.admin):
        assert refusal(run, services, sender(outsider), clinic.visit_id, "hi").status == 403
    # A guest not yet let in, and a guest of no such invitation.
    assert refusal(run, services, chat.Sender.of_guest(123456, "Nobody"),
                   clinic.visit_id, "hi").status == 403
    # Staff of the care team are admitted on arrival.
    assert send(run, services, sender(clinic.coordinator), clinic.visit_id,
                "coordinator-01", "Joining for the handoff.").created
    admit_patient(run, services, clinic)
    assert send(run, services, sender(clinic.patient), clinic.visit_id,
                "patient-msg-01", "Hello!").created

    async def end() -> None:
        async with services.transaction() as session:
            await visits.end_visit(session, actor(clinic.prescriber), clinic.visit_id,
                                   now=services.clock.now())

    run(end)
    error = refusal(run, services, sender(clinic.patient), clinic.visit_id, "Still there?")
    assert (error.status, error.code) == (409, "visit_ended")
    assert len(rows(run, services)) == 2


def test_hostile_rtl_and_emoji_text_come_back_exactly_and_never_reach_the_audit_or_logs(
    run: Runner, services: Services, clinic: Clinic, client: TestClient, sign_in: SignIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mendwell")
    admit_patient(run, services, clinic)
    send(run, services, sender(clinic.prescriber), clinic.visit_id, "hostile-0001", HOSTILE)
    send(run, services, sender(clinic.patient), clinic.visit_id, "rtl-emoji-01", RTL)
    for person in (clinic.prescriber, clinic.patient):
        sign_in(person)
        response = client.get(f"/api/v1/visits/{clinic.visit_id}/chat")
        assert response.status_code == 200, response.text
        messages = response.json()["messages"]
        assert [m["text"] for m in messages] == [HOSTILE, RTL]
        assert [m["from"] for m in messages] == [
            {"who": f"user:{clinic.prescriber.id}", "name": clinic.prescriber.name,
             "role": "prescriber"},
            {"who": f"user:{clinic.patient.id}", "name": clinic.patient.name,
             "role": "patient"}]
        assert messages[0]["sent_at"].endswith("+00:00")
    sign_in(clinic.other_prescriber)
    assert client.get(f"/api/v1/visits/{clinic.visit_id}/chat").status_code == 403

    created = audit_rows(run, services, "create", "chat_message")
    assert {(e.actor_id, e.patient_id, e.detail["visit_id"]) for e in created} == {
        (clinic.prescriber.id, clinic.patient.id, clinic.visit_id),
        (clinic.patient.id, clinic.patient.id, clinic.visit_id)}
    reads = audit_rows(run, services, "read", "visit_chat")
    assert {(e.actor_id, e.outcome, e.detail["count"]) for e in reads if e.outcome == "success"} \
        == {(clinic.prescriber.id, "success", 2), (clinic.patient.id, "success", 2)}
    details = all_audit_details(run, services)
    for fragment in ("script", "alert", "مرحبا", "👋"):
        assert fragment not in details
        assert fragment not in caplog.text


# --- over the real listener ----------------------------------------------------------------


def chats(ws: Socket, count: int) -> list[dict[str, Any]]:
    return [ws.expect("chat") for _ in range(count)]


def test_chat_in_the_call_reaches_the_admitted_members_and_comes_back_after_a_reconnect(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    with connect(client, room(clinic.visit_id), patient_cookie) as patient, \
            connect(client, room(clinic.visit_id), prescriber_cookie) as doctor:
        assert patient.hello("patient-peer-1")["state"] == "waiting"
        doctor.hello("prescriber-peer-1")
        doctor.presence(lambda ps: len(ps) == 2)
        # Waiting: refused, with a code the page can say something about.
        patient.send({"type": "chat", "client_id": "patient-early-1", "text": "Am I in?"})
        error = patient.expect("error")
        assert (error["code"], error["client_id"]) == ("not_admitted", "patient-early-1")
        # The prescriber writes before letting the patient in: the patient does not get it
        # now (not admitted), but with the history once let in.
        doctor.send({"type": "chat", "client_id": "doctor-msg-01", "text": "One minute."})
        mine = doctor.expect("chat")
        assert (mine["text"], mine["mine"], mine["from"]["role"]) == (
            "One minute.", True, "prescriber")
        assert all(m["type"] != "chat" for m in patient.quiet(0.3))

        doctor.send({"type": "admit", "peer_id": "patient-peer-1"})
        patient.expect("admitted")
        history = patient.expect("chat-history")["messages"]
        assert [(m["text"], m["mine"]) for m in history] == [("One minute.", False)]

        patient.send({"type": "chat", "client_id": "patient-msg-01", "text": RTL})
        got = [patient.expect("chat"), doctor.expect("chat")]
        assert [(m["text"], m["mine"]) for m in got] == [(RTL, True), (RTL, False)]
        assert got[0]["from"] == {"who": f"user:{clinic.patient.id}",
                                  "name": clinic.patient.name, "role": "patient"}
        # The same client_id again (the page did not see it come back): relayed again,
        # same id, stored once.
        patient.send({"type": "chat", "client_id": "patient-msg-01", "text": RTL})
        assert doctor.expect("chat")["id"] == got[1]["id"]
        patient.send({"type": "chat", "client_id": "patient-msg-02", "text": "  "})
        error = patient.expect("error")
        assert (error["code"], error["field"], error["client_id"]) == (
            "text_empty", "text", "patient-msg-02")
        patient.send({"type": "chat", "client_id": "bad id!", "text": "hi"})
        assert patient.expect("error")["field"] == "client_id"

    assert [r.client_id for r in rows(run, services)] == ["doctor-msg-01", "patient-msg-01"]
    # A reload: the patient resumes, admitted, with the chat so far.
    with connect(client, room(clinic.visit_id), patient_cookie) as patient:
        welcome = patient.hello("patient-peer-1")
        assert (welcome["state"], welcome["resumed"]) == ("admitted", True)
        history = patient.expect("chat-history")["messages"]
        assert [(m["client_id"], m["text"], m["mine"]) for m in history] == [
            ("doctor-msg-01", "One minute.", False), ("patient-msg-01", RTL, True)]


def test_a_guest_sees_only_what_was_said_since_their_admission(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    token = invite(client, sign_in, clinic, run, services)
    admit_patient(run, services, clinic)
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.patient)) as patient, \
            connect(client, room(clinic.visit_id),
                    cookie_of(sign_in, clinic.prescriber)) as doctor:
        patient.hello("patient-peer-1")
        patient.expect("chat-history")
        doctor.hello("prescriber-peer-1")
        patient.send({"type": "chat", "client_id": "before-guest-1", "text": "Private words."})
        doctor.expect("chat")
        with connect(client, room(clinic.visit_id)) as guest:
            guest.hello("guest-peer-0001", guest_token=token)
            patient.send({"type": "chat", "client_id": "before-guest-2",
                          "text": "Still private."})
            doctor.expect("chat")
            assert all(m["type"] != "chat" for m in guest.quiet(0.3))
            doctor.send({"type": "admit", "peer_id": "guest-peer-0001"})
            guest.expect("admitted")
            assert guest.expect("chat-history")["messages"] == []
            doctor.send({"type": "chat", "client_id": "after-guest-1",
                         "text": "Ana will interpret."})
            seen = [guest.expect("chat"), patient.expect(
                "chat", where=lambda m: m["client_id"] == "after-guest-1")]
            assert [m["text"] for m in seen] == ["Ana will interpret."] * 2
            guest.send({"type": "chat", "client_id": "guest-msg-0001", "text": "Hola."})
            from_guest = doctor.expect("chat", where=lambda m: not m["mine"])
            assert from_guest["from"]["role"] == "guest"
            assert from_guest["from"]["name"] == "Ana Interpreter"
        with connect(client, room(clinic.visit_id)) as guest:
            guest.hello("guest-peer-0001", guest_token=token)
            history = guest.expect("chat-history")["messages"]
            assert [m["client_id"] for m in history] == ["after-guest-1", "guest-msg-0001"]
            assert [m["mine"] for m in history] == [False, True]
    guest_rows = [r for r in rows(run, services) if r.sender_guest_id is not None]
    assert [(r.sender_name, r.sender_user_id) for r in guest_rows] == [("Ana Interpreter", None)]
    [created] = [e for e in audit_rows(run, services, "create", "chat_message")
                 if e.detail.get("guest_id")]
    assert created.actor_id is None and created.patient_id == clinic.patient.id


def test_a_chat_flood_is_refused_by_its_own_limit_and_the_socket_stays(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    with connect(client, room(clinic.visit_id), cookie_of(sign_in, clinic.prescriber)) as doc:
        doc.hello("prescriber-peer-1")
        for n in range(30):
            doc.send({"type": "chat", "client_id": f"flood-msg-{n:04d}", "text": f"n{n}"})
        got: list[dict[str, Any]] = []
        while len(got) < 30:
            message = doc.receive()
            if message["type"] in ("chat", "error"):
                got.append(message)
        refused = [m["client_id"] for m in got if m["type"] == "error"]
        assert all(m["code"] == "rate_limited" for m in got if m["type"] == "error")
        # A burst of 20, then 2 a second: the last few of 30 sent at once are refused.
        assert 1 <= len(refused) <= 30 - protocol.CHAT_BURST, refused
        doc.send({"type": "ping"})
        doc.expect("pong")
    assert len(rows(run, services)) == 30 - len(refused)


def test_staff_read_the_chat_on_the_visit_page_once_the_call_is_over(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    admit_patient(run, services, clinic)
    send(run, services, sender(clinic.patient), clinic.visit_id, "patient-msg-01", HOSTILE)

    async def end() -> None:
        async with services.transaction() as session:
            await visits.end_visit(session, actor(clinic.prescriber), clinic.visit_id,
                                   now=services.clock.now())

    run(end)
    sign_in(clinic.prescriber)
    page = client.get(f"/visits/{clinic.visit_id}")
    assert page.status_code == 200
    assert 'data-testid="chat-record"' in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert "<script>alert" not in page.text
    reads = [e for e in audit_rows(run, services, "read", "visit_chat")
             if e.actor_id == clinic.prescriber.id]
    assert len(reads) == 1
    # The patient's page of the ended visit has no transcript: the record is the care team's
    # page (the patient reads it through the API).
    sign_in(clinic.patient)
    assert 'data-testid="chat-record"' not in client.get(f"/visits/{clinic.visit_id}").text


# --- two instances through Redis -----------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_chat_reaches_members_on_another_instance_and_a_resend_there_is_stored_once(
    run: Runner, services: Services, clinic: Clinic
) -> None:
    from tests.signaling_support import redis_unavailable, service_or_skip
    from tests.test_signaling_redis import Instance, admit_across, patient, redis_relay, staff

    service_or_skip(redis_unavailable())
    namespace = f"mendwell-test-chat-{uuid.uuid4().hex[:8]}"
    visit = clinic.visit_id

    async def scenario() -> None:
        a = await Instance.start(services, redis_relay(namespace))
        b = await Instance.start(services, redis_relay(namespace))
        try:
            doctor, on_a = await a.join(visit, staff(clinic.prescriber), "prescriber-peer")
            sick, on_b = await b.join(visit, patient(clinic.patient), "patient-peer-01")
            await admit_across(a, doctor, on_a, on_b, "patient-peer-01")
            await on_b.until(lambda m: m["type"] == "chat-history", within=5)
            pending = b.rooms.handle(sick, Chat(client_id="patient-msg-01", text=RTL))
            assert pending is not None
            await pending
            await on_a.until(lambda m: m["type"] == "chat" and m["text"] == RTL, within=5)
            [relayed] = [m for m in on_a.pushed if m["type"] == "chat"]
            assert (relayed["mine"], relayed["from"]["role"]) == (False, "patient")
            # The patient's page moved to instance A and sends the message again.
            moved, on_a2 = await a.join(visit, patient(clinic.patient), "patient-peer-01")
            await on_a2.until(lambda m: m["type"] == "chat-history", within=5)
            [got] = [m["messages"] for m in on_a2.pushed if m["type"] == "chat-history"]
            assert [(m["id"], m["mine"]) for m in got] == [(relayed["id"], True)]
            again = a.rooms.handle(moved, Chat(client_id="patient-msg-01", text=RTL))
            assert again is not None
            await again
            await on_a.until(lambda m: m["type"] == "chat" and m["id"] == relayed["id"],
                             within=5, after=on_a.pushed.index(relayed) + 1)
        finally:
            await a.stop()
            await b.stop()

    run(lambda: asyncio.wait_for(scenario(), 30))
    assert [r.client_id for r in rows(run, services)] == ["patient-msg-01"]
