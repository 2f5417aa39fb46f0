"""Visit signaling's listener takes the client address by the HTTP app's rule: the
connection's peer, or, from a proxy in MENDWELL_TRUSTED_PROXIES only, the right-most
``X-Forwarded-For`` address no trusted proxy added. The audit log's ``join`` rows show
which address it believed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from websockets.sync.client import connect as ws_connect

from server.auth import COOKIE_NAME
from server.models import AuditEntry
from server.services import Services
from tests import app_server
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.signaling_support import cookie_of


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    trusted: tuple[str, ...] = getattr(request, "param", ())
    return {"trusted_proxies": trusted}


def joined_from(client: TestClient, run: Runner, services: Services, clinic: Clinic,
                cookie: str, forwarded_for: str) -> str | None:
    """The address the audit log records for a join sent with ``forwarded_for``."""
    port = app_server.signaling_port_for(client)
    with ws_connect(f"ws://127.0.0.1:{port}/ws/visits/{clinic.visit_id}",
                    additional_headers={"cookie": f"{COOKIE_NAME}={cookie}",
                                        "x-forwarded-for": forwarded_for},
                    open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "peer_id": "prescriber-peer-1"}))
        while json.loads(ws.recv(timeout=5))["type"] != "welcome":
            pass

    async def last_join() -> str | None:
        async with services.transaction() as session:
            return await session.scalar(
                select(AuditEntry.ip).where(AuditEntry.action == "join")
                .order_by(AuditEntry.id.desc()).limit(1))

    return run(last_join)


def test_without_trusted_proxies_the_peer_is_the_client(
    client: TestClient, run: Runner, services: Services, clinic: Clinic, sign_in: SignIn
) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    assert joined_from(client, run, services, clinic, cookie, "203.0.113.9") == "127.0.0.1"


@pytest.mark.parametrize("settings_overrides", [("127.0.0.1", "10.0.0.0/8")], indirect=True)
def test_from_a_trusted_proxy_the_forwarded_address_is_believed(
    client: TestClient, run: Runner, services: Services, clinic: Clinic, sign_in: SignIn
) -> None:
    cookie = cookie_of(sign_in, clinic.prescriber)
    # The client claimed 198.51.100.1; the proxy at 10.0.0.5 saw 203.0.113.9 and added it.
    forwarded = "198.51.100.1, 203.0.113.9, 10.0.0.5"
    assert joined_from(client, run, services, clinic, cookie, forwarded) == "203.0.113.9"
