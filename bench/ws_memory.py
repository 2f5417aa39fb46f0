"""Memory per idle signaling connection.

Starts ``mendwell serve`` on a scratch SQLite database, opens N authenticated signaling
sockets that join rooms (half patients waiting, half the prescriber, admitted) and then
sit idle, and prints how much the server's resident memory grew per connection.

    .venv/bin/python bench/ws_memory.py --connections 1000

Budget (DESIGN.md): under 40 KiB per idle signaling connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SECRET = "bench-secret-key-that-is-long-enough-to-sign-with"  # noqa: S105 (scratch)
BUDGET_KIB = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def seed(database_url: str, visits: int) -> tuple[list[tuple[int, str, str]], str]:
    """``visits`` visits, each with its own patient; one prescriber on every care team.

    Returns (visit id, patient cookie, prescriber cookie) per visit and the prescriber's
    cookie. Accounts have no password (sessions are made directly), which keeps seeding
    fast: argon2 is not what is being measured.
    """
    from server.accounts import create_user
    from server.auth import start_session
    from server.bus import LocalBus
    from server.db import create_engine, session_factory
    from server.migrate import upgrade
    from server.models import CareTeamMember, Role, Visit, VisitKind, VisitStatus
    from server.services import Services
    from server.settings import Settings

    await upgrade(database_url)
    settings = Settings(env="test", database_url=database_url, secret_key=SECRET).completed()
    engine = create_engine(database_url)
    services = Services(settings=settings, engine=engine, sessions=session_factory(engine),
                        bus=LocalBus())
    now = services.clock.now()
    rows = []
    async with services.transaction() as session:
        doctor = await create_user(session, None, email="doctor@bench.test", name="Dr Bench",
                                   role=Role.prescriber, password=None, now=now)
        doctor_cookie = (await start_session(session, services, doctor, ip=None,
                                             user_agent="bench")).cookie
        for n in range(visits):
            patient = await create_user(session, None, email=f"patient{n}@bench.test",
                                        name=f"Patient {n}", role=Role.patient, password=None,
                                        now=now)
            session.add(CareTeamMember(patient_id=patient.id, member_id=doctor.id,
                                       role=Role.prescriber, added_at=now))
            visit = Visit(patient_id=patient.id, prescriber_id=doctor.id,
                          kind=VisitKind.follow_up, status=VisitStatus.scheduled,
                          scheduled_at=now + timedelta(hours=1), created_at=now)
            session.add(visit)
            await session.flush()
            cookie = (await start_session(session, services, patient, ip=None,
                                          user_agent="bench")).cookie
            rows.append((visit.id, cookie, doctor_cookie))
    await services.close()
    return rows, doctor_cookie


def start_server(database_url: str, var_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MENDWELL_ENV": "test", "MENDWELL_DATABASE_URL": database_url,
           "MENDWELL_SECRET_KEY": SECRET, "MENDWELL_VAR_DIR": str(var_dir),
           "MENDWELL_BASE_URL": f"http://127.0.0.1:{port}",
           "MENDWELL_RUN_BACKGROUND_TASKS": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=(var_dir / "server.log").open("wb"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError((var_dir / "server.log").read_text()[-2000:])


async def join(url: str, cookie: str, peer: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"Cookie": f"mendwell_session={cookie}"},
                       compression=None, open_timeout=30, ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "peer_id": peer, "polite_capable": True}))
    while json.loads(await ws.recv())["type"] != "welcome":
        pass
    return ws


async def drain(sockets: list[ClientConnection], seconds: float) -> None:
    """Read (and drop) the presence messages the joins caused, then stay idle."""
    async def read(ws: ClientConnection) -> None:
        try:
            while True:
                await ws.recv()
        except Exception:
            return

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    await asyncio.sleep(seconds)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


async def measure(connections: int, settle: float) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, connections * 2 + 256)), hard))
    visits = max(1, connections // 2)
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{var_dir / 'bench.db'}"
        # Three more visits for the warm-up: one socket each, since a person holds one
        # seat per room (a second socket of theirs takes the first one's place).
        rows, _ = await seed(database_url, visits + 3)
        rows, spare = rows[:visits], rows[visits:]
        port = free_port()
        server = start_server(database_url, var_dir, port)
        sockets: list[ClientConnection] = []
        try:
            base = f"ws://127.0.0.1:{port + 1}/ws/visits"  # serve's signaling port
            # Warm up: the first connections load code and fill caches; not per-connection.
            warm = [await join(f"{base}/{visit_id}", doctor, f"warm-{n:04d}")
                    for n, (visit_id, _patient, doctor) in enumerate(spare)]
            for ws in warm:
                await ws.close()
            await asyncio.sleep(1.0)
            before = rss_kib(server.pid)
            started = time.monotonic()
            batch = 50
            plan = []
            for visit_id, patient_cookie, doctor_cookie in rows:
                plan.append((f"{base}/{visit_id}", patient_cookie, f"patient-{visit_id:06d}"))
                plan.append((f"{base}/{visit_id}", doctor_cookie, f"doctor-{visit_id:06d}"))
            plan = plan[:connections]
            half = len(plan) // 2
            middle = before
            for i in range(0, len(plan), batch):
                sockets += await asyncio.gather(*(join(*item) for item in plan[i:i + batch]))
                if len(sockets) == half:
                    await drain(sockets, settle)
                    middle = rss_kib(server.pid)
            opened = time.monotonic() - started
            await drain(sockets, settle)
            after = rss_kib(server.pid)
        finally:
            for ws in sockets:
                await ws.close()
            server.send_signal(signal.SIGTERM)
            server.wait(15)
    per = (after - before) / len(sockets)
    # The second half alone: what one more connection costs once the fixed costs that
    # grow with the first ones (database page cache, allocator arenas) are paid.
    marginal = (after - middle) / (len(sockets) - half)
    return {"connections": len(sockets), "rss_before_kib": before, "rss_after_kib": after,
            "per_connection_kib": round(per, 1), "marginal_kib": round(marginal, 1),
            "open_seconds": round(opened, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to let the joins' presence traffic finish")
    args = parser.parse_args()
    result = asyncio.run(measure(args.connections, args.settle))
    verdict = "within" if result["per_connection_kib"] < BUDGET_KIB else "OVER"
    print(f"idle signaling connections: {result['connections']} "
          f"(opened in {result['open_seconds']} s)")
    print(f"server RSS: {result['rss_before_kib']} KiB -> {result['rss_after_kib']} KiB")
    print(f"per idle connection: {result['per_connection_kib']} KiB on average, "
          f"{result['marginal_kib']} KiB for each of the second half "
          f"({verdict} the {BUDGET_KIB} KiB budget)")


if __name__ == "__main__":
    main()
