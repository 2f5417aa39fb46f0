"""The client messages of /ws/visits as one pydantic tagged union (signaling/protocol.py):
the documented types, strict fields, and refusals that name the field at fault."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from signaling import protocol

DOCS = Path(__file__).resolve().parents[1] / "docs" / "signaling.md"


def test_the_union_holds_exactly_the_documented_client_messages() -> None:
    text = DOCS.read_text()
    section = text[text.index("## Client → server"):text.index("## Server → client")]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))
    assert set(protocol.MESSAGE_TYPES) == documented


def refusal(message: dict[str, object]) -> tuple[str, str | None]:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse(json.dumps(message))
    return refused.value.code, refused.value.field


@pytest.mark.parametrize(("message", "field"), [
    # Strict: nothing is coerced into the type a field wants.
    ({"type": "hello", "peer_id": "patient-peer-1", "polite_capable": 1}, "polite_capable"),
    ({"type": "hello", "peer_id": "patient-peer-1", "polite_capable": "true"},
     "polite_capable"),
    ({"type": "dismiss", "peer_id": "guest-peer-01", "revoke": "yes"}, "revoke"),
    ({"type": "signal", "to": "other-peer-1",
      "candidate": {"candidate": "c", "sdpMLineIndex": True}}, "candidate.sdpMLineIndex"),
    ({"type": "signal", "to": "other-peer-1",
      "candidate": {"candidate": "c", "sdpMLineIndex": "0"}}, "candidate.sdpMLineIndex"),
    ({"type": "signal", "to": "other-peer-1",
      "candidate": {"candidate": "c", "sdpMLineIndex": 1024}}, "candidate.sdpMLineIndex"),
    ({"type": "signal", "to": "other-peer-1", "candidate": {"candidate": 5}},
     "candidate.candidate"),
    ({"type": "signal", "to": "other-peer-1", "candidate": {"candidate": "c", "sdpMid": 0}},
     "candidate.sdpMid"),
    ({"type": "signal", "to": "other-peer-1", "candidate": "c"}, "candidate"),
    ({"type": "signal", "to": "other-peer-1", "description": {"type": "offer"}},
     "description.sdp"),
    ({"type": "signal", "to": "other-peer-1", "description": {"type": "offer", "sdp": 1}},
     "description.sdp"),
    ({"type": "signal", "to": "other-peer-1", "description": {"type": "pranswer", "sdp": "v"}},
     "description.type"),
    ({"type": "signal", "to": "other-peer-1", "description": None, "candidate": None},
     "description"),
    ({"type": "signal", "to": "other-peer-1", "media": {"video": 1}}, "media.video"),
    ({"type": "signal", "to": "other-peer-1", "media": {"screen": "s"}}, "media.video"),
    ({"type": "signal", "to": "other-peer-1", "media": {"video": True, "screen": "a b"}},
     "media.screen"),
    ({"type": "signal", "to": "other-peer-1", "media": {"video": True, "screen": "x" * 65}},
     "media.screen"),
    ({"type": "signal", "to": "other-peer-1", "media": {"video": True}, "candidate": None},
     "description"),
    ({"type": "hello", "peer_id": "short"}, "peer_id"),
    ({"type": "hello", "peer_id": "patient-peer-1", "guest_token": "../../x"}, "guest_token"),
    ({"type": "admit"}, "peer_id"),
    ({"type": "remove", "peer_id": 12345678}, "peer_id"),
    ({"type": "teleport"}, "type"),
])
def test_a_bad_field_is_refused_and_named(message: dict[str, object], field: str) -> None:
    assert refusal(message) == ("invalid_message", field)


def test_keys_a_message_does_not_define_are_ignored_and_never_relayed() -> None:
    parsed = protocol.parse(json.dumps({
        "type": "signal", "to": "other-peer-1", "extra": "dropped",
        "candidate": {"candidate": "candidate:1 1 udp 1 192.0.2.1 5 typ host", "sdpMid": "0",
                      "sdpMLineIndex": 0, "usernameFragment": "abcd", "secret": "dropped"}}))
    assert isinstance(parsed, protocol.Signal)
    assert parsed.relayed("sender-peer-1") == {
        "type": "signal", "from": "sender-peer-1",
        "candidate": {"candidate": "candidate:1 1 udp 1 192.0.2.1 5 typ host", "sdpMid": "0",
                      "sdpMLineIndex": 0, "usernameFragment": "abcd"}}
    rollback = protocol.parse(json.dumps({"type": "signal", "to": "other-peer-1",
                                          "description": {"type": "rollback"}}))
    assert isinstance(rollback, protocol.Signal)
    assert rollback.relayed("s-peer-0001")["description"] == {"type": "rollback", "sdp": ""}
    end = protocol.parse(json.dumps({"type": "signal", "to": "other-peer-1", "candidate": None}))
    assert isinstance(end, protocol.Signal) and end.end_of_candidates
    assert end.relayed("s-peer-0001")["candidate"] is None


def test_a_media_state_is_relayed_with_only_its_own_fields() -> None:
    parsed = protocol.parse(json.dumps({
        "type": "signal", "to": "other-peer-1",
        "media": {"video": True, "screen": "{4f1c2a9e-0b7d-4c1e-9f3a-2d5e6b7c8d9e}",
                  "label": "dropped"}}))
    assert isinstance(parsed, protocol.Signal) and not parsed.end_of_candidates
    assert parsed.relayed("sender-peer-1") == {
        "type": "signal", "from": "sender-peer-1",
        "media": {"video": True, "screen": "{4f1c2a9e-0b7d-4c1e-9f3a-2d5e6b7c8d9e}"}}
    sound_only = protocol.parse(json.dumps({"type": "signal", "to": "other-peer-1",
                                            "media": {"video": False}}))
    assert isinstance(sound_only, protocol.Signal)
    assert sound_only.relayed("s-peer-0001")["media"] == {"video": False, "screen": None}
