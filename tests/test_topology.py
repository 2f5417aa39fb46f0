"""The production topology without Docker (issue 8): two app processes sharing
PostgreSQL and Redis, coturn on loopback, and a relay-only call placed across the two
instances through coturn — the path a call takes when a home network blocks direct
media."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.clinic import Clinic
from tests.conftest import SignIn
from tests.signaling_support import (
    REDIS_URL,
    LiveServer,
    cookie_of,
    redis_unavailable,
    service_or_skip,
)
from tests.test_webrtc import place_call
from tests.test_webrtc_turn import Coturn, coturn  # noqa: F401  (fixture)


@pytest.mark.redis
@pytest.mark.coturn
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_call_across_two_instances_through_coturn(
    clinic: Clinic, sign_in: SignIn, database_url: str, tmp_path: Path,
    coturn: Coturn,  # noqa: F811
) -> None:
    service_or_skip(redis_unavailable())
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    shared = {"MENDWELL_REDIS_URL": REDIS_URL,
              "MENDWELL_REDIS_NAMESPACE": f"mendwell-test-{uuid.uuid4().hex[:8]}",
              "MENDWELL_TURN_URLS": coturn.url, "MENDWELL_TURN_SECRET": coturn.secret}
    with LiveServer(database_url, tmp_path, **shared) as one, \
            LiveServer(database_url, tmp_path, **shared) as two:
        for server in (one, two):
            with urllib.request.urlopen(f"{server.base_url}/healthz",  # noqa: S310
                                        timeout=5) as response:
                health = json.load(response)
            assert health["checks"]["redis"] == "ok"
            assert health["database"] == "postgresql"
        path = f"/ws/visits/{clinic.visit_id}"
        timings = asyncio.run(asyncio.wait_for(place_call(
            one.signaling_url + path, two.signaling_url + path, patient_cookie, prescriber_cookie,
            relay=True), 25))
    assert timings["admit_to_video"] < 20
    print(f"admit to video across two instances through TURN: "
          f"{timings['admit_to_video']:.3f} s")
