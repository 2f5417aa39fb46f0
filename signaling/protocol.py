"""The signaling messages of ``/ws/visits/{visit_id}`` (docs/signaling.md), parsed and checked.

Every frame a client sends is one JSON object with a ``type``. ``parse`` turns a frame into
one of the small message classes below or raises ``ProtocolError`` with the code, message
and field that the ``error`` reply carries. Nothing here knows about rooms or sockets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NotRequired, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

MAX_FRAME_BYTES = 64 * 1024
HELLO_TIMEOUT_SECONDS = 10.0
MAX_PARTICIPANTS = 4
# Seats held for the care team and the patient, by role: whoever else is in the room
# (guests, a second tab, a second coordinator) cannot take them, so a guest link, however
# many sockets use it, never locks the clinician or the patient out. The rest are shared
# (one: the interpreter or family member of the mesh, docs/signaling.md "Seats").
RESERVED_SEATS = {"patient": 1, "prescriber": 1, "coordinator": 1}
SHARED_SEATS = MAX_PARTICIPANTS - sum(RESERVED_SEATS.values())
# No message nests more than three levels (a signal's candidate); numbers are small
# (sdpMLineIndex, a visit id). Beyond these a message is refused, not half-read:
# 2**53 is the largest integer a browser's JSON keeps exactly.
MAX_DEPTH = 32
MAX_NUMBER = 2**53
# A burst of 60, then 30 messages a second: trickle ICE sends a few dozen candidates
# at once; anything beyond that is a runaway or hostile client.
RATE_BURST = 60
RATE_PER_SECOND = 30.0
# Chat messages count against the rate above like any message, and each is also a
# database write: a person types far slower than this, and a page resending what it
# could not send during a drop sends a handful at once.
CHAT_BURST = 20
CHAT_PER_SECOND = 2.0


# Close codes (the 4xxx range is the application's).
CLOSE_NORMAL = 1000
# The instance is restarting: reconnect (with backoff) and resume.
CLOSE_SERVICE_RESTART = 1012
CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_REPLACED = 4409
CLOSE_ENDED = 4410
CLOSE_DISMISSED = 4411
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_SLOW = 4408
CLOSE_BUSY = 4503
# Redis or the database is unavailable: come back later (with backoff) and resume.
CLOSE_TRY_AGAIN_LATER = 1013


class ProtocolError(Exception):
    """A refused message: sent back as ``{"type": "error", code, message, field}``."""

    code = "invalid_message"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, Any]:
        return error(self.code, self.message, self.field)


class InvalidMessage(ProtocolError):
    code = "invalid_message"


class TooLarge(ProtocolError):
    code = "too_large"


class TooDeep(ProtocolError):
    code = "too_deep"


class InvalidText(ProtocolError):
    """A lone surrogate or NUL: refused as the HTTP API refuses it (``invalid_text``)."""

    code = "invalid_text"


class InvalidNumber(ProtocolError):
    """NaN, an infinity, or a number beyond ``MAX_NUMBER``."""

    code = "invalid_number"


class InvalidState(ProtocolError):
    """The message is well-formed but not allowed in the sender's state."""

    code = "invalid_state"


class NotAllowed(ProtocolError):
    code = "forbidden"


class UnknownPeer(ProtocolError):
    code = "unknown_peer"


class RoomFull(ProtocolError):
    code = "room_full"


# --- client → server -----------------------------------------------------------------
# One pydantic model per message type, tagged by ``type`` (a discriminated union, so a
# frame is checked against its own type's schema only). Strict: JSON true is a bool and
# 1 is an int, nothing is coerced; keys a message does not define are ignored.

PEER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
GUEST_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
PeerId = Annotated[str, StringConstraints(pattern=f"^{PEER_ID.pattern}$")]
GuestToken = Annotated[str, StringConstraints(pattern=f"^{GUEST_TOKEN.pattern}$")]
# The same form as a peer id: a browser makes both from crypto.randomUUID().
ClientId = Annotated[str, StringConstraints(pattern=f"^{PEER_ID.pattern}$")]
DescriptionType = Literal["offer", "answer", "rollback"]
DESCRIPTION_TYPES: tuple[str, ...] = get_args(DescriptionType)


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Hello(_Message):
    type: Literal["hello"] = "hello"
    peer_id: PeerId
    polite_capable: bool = True
    guest_token: GuestToken | None = None


class Description(TypedDict):
    type: DescriptionType
    sdp: NotRequired[str]


def _sdp_given(description: Description) -> Description:
    kind, sdp = description["type"], description.get("sdp", "")
    if kind != "rollback" and not sdp:
        raise PydanticCustomError("sdp_missing", "An {kind} needs its sdp.", {"kind": kind})
    return {"type": kind, "sdp": sdp}


class Candidate(TypedDict):
    candidate: str
    sdpMid: NotRequired[str | None]
    sdpMLineIndex: NotRequired[Annotated[int, Field(ge=0, lt=1024)] | None]
    # Passed on when it is text, dropped otherwise, as browsers differ here.
    usernameFragment: NotRequired[object]


# A MediaStream id as browsers write it in the SDP's msid (a UUID, in braces in Firefox).
StreamId = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")]


class MediaState(TypedDict):
    """What the sender sends its peer besides sound: whether its camera video is on
    (``false``: "Sound only"), and the id of the stream that carries its shared screen."""

    video: bool
    screen: NotRequired[StreamId | None]


class Signal(_Message):
    type: Literal["signal"] = "signal"
    to: PeerId
    # Plain dicts once checked (TypedDict): measured about 0.3 µs a signal cheaper than
    # nested models, and relayed without a copy per model.
    description: Annotated[Description, AfterValidator(_sdp_given)] | None = None
    candidate: Candidate | None = None
    media: MediaState | None = None

    @property
    def end_of_candidates(self) -> bool:
        return self.description is None and self.candidate is None and self.media is None

    def relayed(self, sender: str) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "signal", "from": sender}
        if self.description is not None:
            message["description"] = self.description
        elif self.media is not None:
            message["media"] = {"video": self.media["video"],
                                "screen": self.media.get("screen")}
        elif self.candidate is None:
            message["candidate"] = None
        else:
            given = self.candidate
            candidate: dict[str, Any] = {"candidate": given["candidate"],
                                         "sdpMid": given.get("sdpMid"),
                                         "sdpMLineIndex": given.get("sdpMLineIndex")}
            fragment = given.get("usernameFragment")
            if isinstance(fragment, str):
                candidate["usernameFragment"] = fragment
            message["candidate"] = candidate
        return message


class Admit(_Message):
    type: Literal["admit"] = "admit"
    peer_id: PeerId


class Remove(_Message):
    type: Literal["remove"] = "remove"
    peer_id: PeerId


class Dismiss(_Message):
    """Send a guest out of the visit (their seat frees); ``revoke`` ends their invitation."""

    type: Literal["dismiss"] = "dismiss"
    peer_id: PeerId
    revoke: bool = False


class IceRefresh(_Message):
    type: Literal["ice-refresh"] = "ice-refresh"


class Leave(_Message):
    type: Literal["leave"] = "leave"


class End(_Message):
    type: Literal["end"] = "end"


class Ping(_Message):
    type: Literal["ping"] = "ping"


class Chat(_Message):
    """A text message to everyone admitted in the room (stored with the visit:
    ``server.chat``). ``client_id`` is the sender's id for it, the same when it is sent
    again after a reconnect; the text's rules are the domain's (``server.chat.clean_text``)."""

    type: Literal["chat"] = "chat"
    client_id: ClientId
    text: str


Message = Hello | Signal | Admit | Remove | Dismiss | IceRefresh | Leave | End | Ping | Chat
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])
MESSAGE_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(Message))

# What a refusal says, by the field at fault (the reply's ``field``).
_PEER_ID_RULE = "must be 8 to 64 characters of A-Z, a-z, 0-9, _ and -."
_REFUSALS = {
    "peer_id": f"peer_id {_PEER_ID_RULE}",
    "to": f"to {_PEER_ID_RULE}",
    "polite_capable": "polite_capable must be true or false.",
    "guest_token": "guest_token is not a valid invitation token.",
    "revoke": "revoke must be true or false.",
    "client_id": f"client_id {_PEER_ID_RULE}",
    "text": "text must be a string.",
    "description": "description must be an object.",
    "description.type": "description.type must be offer, answer or rollback.",
    "description.sdp": "description.sdp must be a string.",
    "candidate": "candidate must be an object or null.",
    "candidate.candidate": "candidate.candidate must be a string.",
    "candidate.sdpMid": "candidate.sdpMid must be a string or null.",
    "candidate.sdpMLineIndex": "candidate.sdpMLineIndex must be a small whole number or null.",
    "media": "media must be an object.",
    "media.video": "media.video must be true or false.",
    "media.screen": "media.screen must be a stream id (1 to 64 printable characters) or null.",
}


def frame_size(text: str) -> int:
    # len() of a str counts characters; the limit is on UTF-8 bytes. Only frames
    # that might be over it pay for the encoding.
    if len(text) * 4 <= MAX_FRAME_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def check_size(text: str) -> None:
    if frame_size(text) > MAX_FRAME_BYTES:
        raise TooLarge(f"Frames are limited to {MAX_FRAME_BYTES} bytes.", field="frame")


def _not_json(exc: orjson.JSONDecodeError, text: str) -> ProtocolError:
    """Why orjson refused a frame, in the codes the HTTP API uses for the same refusals."""
    reason = exc.msg
    if "surrogate" in reason:
        return InvalidText("The frame holds a lone surrogate, which is not text.",
                           field="frame")
    if "infinity" in reason or text.startswith(("NaN", "Infinity"), exc.pos):
        return InvalidNumber("Numbers must be finite (no NaN or Infinity).", field="frame")
    if "depth" in reason:
        return TooDeep(f"Messages nest at most {MAX_DEPTH} levels.", field="frame")
    return InvalidMessage("The frame is not valid JSON.", field="frame")


def check_values(data: Any) -> None:
    """Refuse what orjson lets through but no message may carry: nesting over
    ``MAX_DEPTH``, NUL in a string or key, and a number beyond ``MAX_NUMBER`` (orjson
    reads an integer beyond 64 bits as an inexact float). Iterative, about a
    microsecond for a candidate: every relayed message pays for it."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is str:
            if "\x00" in value:
                raise InvalidText("Text may not hold NUL (\\u0000).", field="frame")
        elif kind is dict:
            if depth >= MAX_DEPTH:
                raise TooDeep(f"Messages nest at most {MAX_DEPTH} levels.", field="frame")
            for key, item in value.items():
                if "\x00" in key:
                    raise InvalidText("Text may not hold NUL (\\u0000).", field="frame")
                stack.append((item, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                raise TooDeep(f"Messages nest at most {MAX_DEPTH} levels.", field="frame")
            stack.extend((item, depth + 1) for item in value)
        elif (kind is int or kind is float) and not -MAX_NUMBER <= value <= MAX_NUMBER:
            raise InvalidNumber(f"Numbers are limited to ±{MAX_NUMBER} (2**53).",
                                field="frame")


def decode(text: str) -> dict[str, Any]:
    """The frame as a JSON object with a string ``type``; raises ProtocolError.

    The one decoding step of every WebSocket (visits, events, device check): what the
    HTTP API refuses in a body (``server.http.json_object``) is refused here too, with
    an ``error`` and the socket kept open.
    """
    check_size(text)
    try:
        # orjson: about five times the speed of json on a 4 kB offer, and stricter:
        # NaN, Infinity, 1e999, lone surrogates and nesting over 1024 are not JSON to it.
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc, text) from None
    if not isinstance(data, dict):
        raise InvalidMessage("A message must be a JSON object.", field="frame")
    check_values(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("A message needs a string type.", field="type")
    return data


def parse(text: str) -> Message:
    """One client message from a text frame; raises ProtocolError."""
    data = decode(text)
    try:
        message = _MESSAGE.validate_python(data)
    except ValidationError as exc:
        raise _refusal(exc, data["type"]) from None
    given = message.model_fields_set
    if isinstance(message, Signal) and \
            len(given & {"description", "candidate", "media"}) != 1:
        raise InvalidMessage("A signal carries one of a description, a candidate or a "
                             "media state.", field="description")
    return message


def _refusal(exc: ValidationError, kind: str) -> ProtocolError:
    """pydantic's first complaint as the ``error`` reply: the field at fault and what it
    must be."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "union_tag_invalid":
        return InvalidMessage(f'Unknown message type "{kind[:40]}".', field="type")
    field = ".".join(str(part) for part in first["loc"][1:])
    if first["type"] == "sdp_missing":
        return InvalidMessage(first["msg"], field="description.sdp")
    return InvalidMessage(_REFUSALS.get(field, f"{field}: {first['msg']}."), field=field)


# --- server → client -----------------------------------------------------------------


def error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "field": field}


def dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


class RateLimiter:
    """A token bucket per connection: ``RATE_BURST`` at once, then ``RATE_PER_SECOND``
    (or the ``burst`` and ``per_second`` given: the chat's own bucket)."""

    __slots__ = ("_at", "_burst", "_per_second", "_refused_at", "_tokens", "refused")

    def __init__(self, burst: int = RATE_BURST, per_second: float = RATE_PER_SECOND) -> None:
        self._burst = float(burst)
        self._per_second = per_second
        self._tokens = float(burst)
        self._at = 0.0
        self._refused_at = 0.0
        # Messages refused in this episode of flooding: the socket closes when a client
        # keeps going well after being told. An episode ends after a second without a
        # refusal, not at the first message the refilling bucket lets through: a client
        # flooding on is neither told again nor forgiven by every 30th message.
        self.refused = 0

    def allow(self, now: float) -> bool:
        if self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            if self.refused and now - self._refused_at > 1.0:
                self.refused = 0
            return True
        self.refused += 1
        self._refused_at = now
        return False

    @property
    def exhausted(self) -> bool:
        return self.refused > self._burst
