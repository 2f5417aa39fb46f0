"""PostgreSQL stopped and restarted during writes (issue 14, "Outages").

A private PostgreSQL cluster (initdb into a temporary directory, a free port) serves one
app. The test keeps writing (note autosaves, escalation timeline entries, check-in
drafts) while a second thread stops the cluster (`pg_ctl stop -m fast`: every session is
ended, open transactions roll back), waits, and starts it again. While it is down every
request must be answered 503 `unavailable` with `Retry-After`, quickly, never 500: API
calls, a page, a request whose session is not cached (the session middleware reads the
database), a dashboard socket (closed with 1013) and /healthz. Afterwards every
acknowledged write is in the database exactly once and nothing is half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server.app import create_app
from server.db import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_SECONDS
from server.migrate import upgrade
from server.services import Services
from tests import app_server
from tests.clinic import Person, build_clinic
from tests.conftest import Runner, SignIn
from tests.faults.services import PrivatePostgres, private_postgres
from tests.faults.support import credentials, report, settings_for, sign_in_team
from tests.faults.writes import Writes, check_exactly_once, stored
from tests.signaling_support import connect

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

UP_BEFORE_SECONDS = 0.5
OUTAGE_SECONDS = 3.0
# Every answer while the database is down, 503 included, comes within this.
ANSWER_BOUND_SECONDS = 2.0
RECOVERY_BOUND_SECONDS = 15.0


class Outage(threading.Thread):
    """Stops the cluster after ``UP_BEFORE_SECONDS`` and starts it ``OUTAGE_SECONDS``
    later, while the test's own thread keeps writing."""

    def __init__(self, cluster: PrivatePostgres) -> None:
        super().__init__(name="postgres-outage", daemon=True)
        self.cluster = cluster
        self.down_at: float | None = None
        self.up_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            time.sleep(UP_BEFORE_SECONDS)
            self.cluster.stop("fast")
            self.down_at = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            self.cluster.start()
            self.up_at = time.monotonic()
        except BaseException as exc:  # reported by the test's thread
            self.error = exc


@dataclass
class Ready:
    """An app on a private PostgreSQL cluster: the test clinic, its staff signed in, an
    open escalation, and the writer that keeps saving (after one round of writes)."""

    cluster: PrivatePostgres
    database_url: str
    client: TestClient
    visit_id: int
    writes: Writes
    sign_in: SignIn
    patient2: Person


@contextlib.contextmanager
def clinic_on_private_postgres(tmp_path: Path) -> Iterator[Ready]:
    with private_postgres() as cluster:
        asyncio.run(cluster.create_database("mendwell"))
        database_url = cluster.url("mendwell")
        asyncio.run(upgrade(database_url))
        with app_server.test_client(create_app(settings_for(database_url, tmp_path))) as client:
            services: Services = client.app.state.services  # type: ignore[attr-defined]
            run = Runner(client, services)
            clinic = run(build_clinic, services)
            sign_in = SignIn(client, run, services)
            writes = sign_in_team(client, sign_in, clinic).writes(client)
            writes.round()
            yield Ready(cluster, database_url, client, clinic.visit_id, writes, sign_in,
                        clinic.patient2)


def test_requests_get_503_while_postgresql_is_down_and_no_write_is_lost(
    tmp_path: Path
) -> None:
    with clinic_on_private_postgres(tmp_path) as ready:
        client, writes = ready.client, ready.writes
        # Never used before the outage, so not in the session cache: its first request
        # makes the session middleware read the database.
        fresh_cookie, fresh = credentials(ready.sign_in, ready.patient2)
        outage = Outage(ready.cluster)
        outage.start()
        checked: dict[str, Any] = {}
        first_ack_after_up: float | None = None
        while True:
            for outcome in writes.round():
                if outage.up_at is not None and first_ack_after_up is None and \
                        outcome.status in (200, 201):
                    first_ack_after_up = time.monotonic() - outage.up_at
            if outage.down_at is not None and outage.up_at is None and not checked:
                checked = while_down(client, ready.visit_id, fresh, fresh_cookie)
            if outage.error is not None:
                raise outage.error
            if first_ack_after_up is not None:
                break
            assert outage.up_at is None or \
                time.monotonic() - outage.up_at < RECOVERY_BOUND_SECONDS, \
                "no write acknowledged after PostgreSQL came back"
        outage.join(10)
        for _ in range(2):
            assert {o.status for o in writes.round()} <= {200, 201}
        assert client.get("/healthz").status_code == 200
        found = asyncio.run(stored(ready.database_url, writes))

    assert checked, "the outage was over before anything was asked during it"
    refused = [o for o in writes.outcomes if o.status not in (200, 201)]
    assert refused, "no write fell into the outage"
    statuses = {(o.status, o.code) for o in refused}
    # 409: a note save written just before the stop whose answer was lost, repeated.
    assert statuses <= {(503, "unavailable"), (409, "version_conflict")}, statuses
    assert all(o.retry_after == "5" for o in refused if o.status == 503)
    slowest = max(o.seconds for o in writes.outcomes)
    assert slowest < ANSWER_BOUND_SECONDS, slowest
    check_exactly_once(writes, found)
    report("postgresql outage", {
        "writes": len(writes.outcomes), "answered 503": len(refused),
        "slowest answer s": slowest,
        "503s slowest s": max(o.seconds for o in refused if o.status == 503),
        "first write acknowledged after the restart s": first_ack_after_up or -1.0})


def while_down(client: TestClient, visit_id: int, fresh: dict[str, str],
               fresh_cookie: str) -> dict[str, Any]:
    """What every other kind of request gets while the database is down."""
    page = client.get(f"/visits/{visit_id}", headers={**fresh, "accept": "text/html"})
    assert page.status_code == 503, page.text[:300]
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "5"
    api = client.get("/api/v1/visits", headers=fresh)
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "unavailable"
    assert api.headers["retry-after"] == "5"
    health = client.get("/healthz")
    assert (health.status_code, health.json()["checks"]["database"]) == (503, "down")
    try:
        with connect(client, "/ws/events", fresh_cookie) as events:
            code = events.closed()
    except WebSocketDisconnect as exc:
        code = exc.code
    assert code == 1013
    return {"page": page.status_code, "api": api.status_code, "socket": code}


def test_a_postgresql_that_stops_answering_gets_503_within_the_timeouts(
    tmp_path: Path
) -> None:
    """Frozen rather than stopped (every process of the cluster SIGSTOPped): connections
    are accepted by the kernel and never answered, as when the network path to the
    database dies. Nothing refuses anything, so only the timeouts of server/db.py bound
    the wait: a pooled connection's ping waits the statement timeout, a new connection
    the connect timeout."""
    with clinic_on_private_postgres(tmp_path) as ready:
        client, writes = ready.client, ready.writes
        with ready.cluster.frozen():
            pooled = writes.note()
            fresh = writes.event()
            started = time.monotonic()
            health = client.get("/healthz")
            health_seconds = time.monotonic() - started
        thawed = writes.round()
        found = asyncio.run(stored(ready.database_url, writes))

    assert (pooled.status, pooled.code, pooled.retry_after) == (503, "unavailable", "5")
    assert (fresh.status, fresh.code, fresh.retry_after) == (503, "unavailable", "5")
    assert pooled.seconds < STATEMENT_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS + 1
    assert fresh.seconds < STATEMENT_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS + 1
    assert health.status_code == 503
    assert health_seconds < 4
    assert {o.status for o in thawed} <= {200, 201}
    check_exactly_once(writes, found)
    report("postgresql frozen", {"first request 503 after s": pooled.seconds,
                                 "next request 503 after s": fresh.seconds,
                                 "/healthz 503 after s": health_seconds})
