"""ICE servers for a participant: STUN as configured, TURN with coturn REST credentials.

coturn's ``use-auth-secret`` mode checks a username ``<expiry unix time>:<user>`` and the
password ``base64(HMAC-SHA1(static-auth-secret, username))``, so the app mints
credentials without talking to coturn. They are short-lived (``MENDWELL_TURN_TTL_SECONDS``):
a credential copied out of a page relays nothing for long.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.settings import Settings


@dataclass(frozen=True)
class IceConfig:
    servers: list[dict[str, Any]]
    expires_at: datetime | None
    # RTCConfiguration.iceTransportPolicy: "relay" keeps media on TURN only, so no peer
    # learns another's IP address (MENDWELL_ICE_TRANSPORT_POLICY).
    transport_policy: str = "all"

    def to_json(self) -> dict[str, Any]:
        return {"ice_servers": self.servers,
                "ice_expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "ice_transport_policy": self.transport_policy}


def turn_credentials(secret: str, user: str, expires_at: datetime) -> tuple[str, str]:
    """(username, credential) in coturn's REST form."""
    username = f"{int(expires_at.timestamp())}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Settings, user: str, now: datetime) -> IceConfig:
    """The RTCIceServer list for one participant (``user``: a user id, or ``guest-<id>``)."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    expires_at = None
    if settings.turn_urls and settings.turn_secret:
        expires = int((now + timedelta(seconds=settings.turn_ttl_seconds)).timestamp())
        expires_at = datetime.fromtimestamp(expires, UTC)
        username, credential = turn_credentials(settings.turn_secret.get_secret_value(),
                                                user, expires_at)
        servers.append({"urls": list(settings.turn_urls), "username": username,
                        "credential": credential})
    return IceConfig(servers, expires_at, settings.ice_transport_policy)
