"""Escalation latency: a patient's high-risk check-in POST -> the coordinator's /ws/events.

One instance (SQLite, in-process bus); then two instances over Redis and PostgreSQL
(patients post to instance A, the coordinator listens on instance B) when both answer
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
from websockets.asyncio.client import connect

from bench.common import COOKIE, free_port, pct, save, seed, start_mendwell, stop, table

CHECKINS = 200
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
BUDGET_P99_MS = 250

HIGH_RISK: dict[str, Any] = {
    "responses": {
        "phq9": {"answers": [3, 3, 2, 2, 1, 1, 1, 1, 2], "difficulty": 2},
        "gad7": {"answers": [1, 1, 0, 0, 0, 0, 0]},
        "auditc": {"answers": [1, 0, 0]},
        "asrm": {"answers": [0, 0, 1, 0, 0]},
        "cssrs": {"answers": {"q1": True, "q2": True, "q3": True, "q4": True, "q5": True,
                              "q6": False, "q6_recent": None}},
    },
    "sex": "female", "location": {"address": "12 Elm Street, Springfield", "state": "MA"},
    "callback_phone": "+1 555 0100",
    "emergency_contact": {"name": "Taylor Rivera", "phone": "+1 555 0101"},
    "side_effects": [], "missed_doses": {"days_missed": 0, "reasons": []},
    "sleep": {"hours": 5, "quality": "poor"},
    "substance_use": {"cravings": 1, "used_since_last_visit": False},
}


async def measure(post_port: int, listen_port: int, clinic: dict[str, Any]) -> dict[str, Any]:
    cookie = clinic["coordinator"][0]
    events = await connect(f"ws://127.0.0.1:{listen_port}/ws/events",
                           additional_headers={"Cookie": f"{COOKIE}={cookie}"}, compression=None)
    assert json.loads(await events.recv())["type"] == "subscribed"
    arrived: dict[int, float] = {}
    waiters: dict[int, asyncio.Future[float]] = {}

    async def read() -> None:
        async for text in events:
            data = json.loads(text)
            if data.get("type") == "escalation.raised":
                at = time.perf_counter()
                patient = data.get("patient_id")
                arrived.setdefault(patient, at)
                if patient in waiters and not waiters[patient].done():
                    waiters[patient].set_result(at)

    reader = asyncio.create_task(read())
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{post_port}", timeout=10) as client:
        for visit in clinic["visits"][:CHECKINS]:
            pcookie, csrf = visit["patient"]
            patient = visit["patient_id"]
            waiters[patient] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            response = await client.post(
                f"/api/v1/visits/{visit['id']}/checkin", json=HIGH_RISK,
                headers={"X-CSRF-Token": csrf, "Cookie": f"{COOKIE}={pcookie}",
                         "Origin": f"http://127.0.0.1:{post_port}"})
            if response.status_code != 200 and response.status_code != 201:
                errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            try:
                at = await asyncio.wait_for(waiters[patient], 5)
            except TimeoutError:
                errors.append("no escalation.raised within 5 s")
                continue
            latencies.append((at - started) * 1000)
            await asyncio.sleep(0.01)
    reader.cancel()
    await events.close()
    return {"checkins": CHECKINS, "received": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "p50_ms": pct(latencies, 50),
            "p90_ms": pct(latencies, 90), "p99_ms": pct(latencies, 99),
            "max_ms": round(max(latencies), 1) if latencies else None}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def fresh_pg_database() -> str:
    import asyncpg
    name = f"mendwell_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def one_instance() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, CHECKINS, coordinator=True))
        port = free_port()
        server = start_mendwell(db, var, port)
        try:
            return asyncio.run(measure(port, port, clinic))
        finally:
            stop(server)


def two_instances() -> dict[str, Any]:
    if not (reachable(5432) and reachable(6379)):
        return {"skipped": "PostgreSQL or Redis not reachable on 127.0.0.1"}
    name = asyncio.run(fresh_pg_database())
    db = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    servers = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            var = Path(tmp)
            clinic = asyncio.run(seed(db, CHECKINS, coordinator=True))
            ports = [free_port(), free_port()]
            for n, port in enumerate(ports):
                servers.append(start_mendwell(db, var, port, {"MENDWELL_REDIS_URL": REDIS_URL},
                                              log_name=f"server-{n}.log"))
            return asyncio.run(measure(ports[0], ports[1], clinic))
    finally:
        for server in servers:
            stop(server)
        asyncio.run(drop_pg_database(name))


def run() -> dict[str, Any]:
    results = {"one_instance_sqlite": one_instance()}
    try:
        results["two_instances_redis_postgres"] = two_instances()
    except Exception as exc:
        results["two_instances_redis_postgres"] = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
    rows = []
    for setup, r in results.items():
        rows.append([setup, r.get("received"), r.get("p50_ms"), r.get("p99_ms"),
                     r.get("max_ms"), r.get("errors"), BUDGET_P99_MS])
    table(f"escalation: high-risk check-in POST -> coordinator's escalation.raised "
          f"({CHECKINS} check-ins, one at a time)",
          ["setup", "received", "p50 ms", "p99 ms", "max ms", "errors", "budget p99 ms"], rows)
    for setup, r in results.items():
        if "skipped" in r or "failed" in r or r.get("first_errors"):
            print(f"  {setup}: {r.get('skipped') or r.get('failed') or r.get('first_errors')}")
    print(f"  -> {save('escalation', results)}")
    return results
