"""Two app instances sharing Redis and PostgreSQL: a patient on one, the prescriber on the
other, and the call connects as if they were on one.
"""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def redis_url() -> str:
    service_or_skip(redis_unavailable())
    return REDIS_URL


@pytest.mark.redis
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_patient_and_prescriber_on_two_instances(
    clinic: Clinic, sign_in: SignIn, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    patient_cookie = cookie_of(sign_in, clinic.patient)
    prescriber_cookie = cookie_of(sign_in, clinic.prescriber)
    # Rooms of this run only: other runs may share the Redis server.
    shared = {"MENDWELL_REDIS_URL": redis_url,
              "MENDWELL_REDIS_NAMESPACE": f"mendwell-test-{uuid.uuid4().hex[:8]}"}
    with LiveServer(database_url, tmp_path, **shared) as one, \
            LiveServer(database_url, tmp_path, **shared) as two:
        path = f"/ws/visits/{clinic.visit_id}"
        timings = asyncio.run(asyncio.wait_for(place_call(
            one.signaling_url + path, two.signaling_url + path, patient_cookie,
            prescriber_cookie), 20))
    print(f"admit to video across two instances: {timings['admit_to_video']:.3f} s")
