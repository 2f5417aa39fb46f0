"""Shared pieces of the benchmarks: machine facts, results files, servers, seeding."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SECRET = "bench-secret-key-that-is-long-enough-to-sign-with"  # noqa: S105 (scratch)
COOKIE = "mendwell_session"


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": [round(x, 2) for x in load]}


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    path = RESULTS / f"{name}-{now:%Y-%m-%d}.json"
    payload = {"benchmark": name, "date": now.isoformat(timespec="seconds"),
               "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_fd_limit(wanted: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, wanted)), hard))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback)
                return
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"no answer from {url}:\n{log.read_text()[-2000:]}")


def signaling_port(port: int) -> int:
    """Where ``mendwell serve --port PORT`` serves visit signaling (its own listener,
    signaling/listener.py; the default is the HTTP port + 1)."""
    return port + 1


def start_mendwell(database_url: str, var_dir: Path, port: int,
                   extra: dict[str, str] | None = None, log_name: str = "server.log",
                   ) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENDWELL_")}
    env.update({"MENDWELL_ENV": "test", "MENDWELL_DATABASE_URL": database_url,
                "MENDWELL_SECRET_KEY": SECRET, "MENDWELL_VAR_DIR": str(var_dir),
                "MENDWELL_BASE_URL": f"http://127.0.0.1:{port}",
                "MENDWELL_RUN_BACKGROUND_TASKS": "false", **(extra or {})})
    log = var_dir / log_name
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)
    wait_http(f"http://127.0.0.1:{port}/healthz", process, log)
    return process


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def ensure_peerjs() -> Path:
    script = BENCH / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install the PeerJS server (package `peer`)")
        subprocess.run([npm, "install", "--prefix", str(BENCH), "--no-save", "--no-package-lock",
                        "--no-audit", "--no-fund", "peer@1"], check=True, cwd=BENCH,
                       stdout=subprocess.DEVNULL)
        for leftover in ("package.json", "package-lock.json"):
            (BENCH / leftover).unlink(missing_ok=True)
    return script


def start_peerjs(port: int, var_dir: Path) -> subprocess.Popen[bytes]:
    script = ensure_peerjs()
    node = shutil.which("node") or "node"
    log = var_dir / "peerjs.log"
    process = subprocess.Popen(
        [node, str(script), "--port", str(port), "--host", "127.0.0.1", "--key", "peerjs",
         "--path", "/", "--concurrent_limit", "100000"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=BENCH)
    wait_http(f"http://127.0.0.1:{port}/peerjs/id", process, log)
    return process


async def seed(database_url: str, visits: int, *, visits_per_prescriber: int = 10,
               coordinator: bool = False, start_in: timedelta = timedelta(hours=1),
               ) -> dict[str, Any]:
    """``visits`` visits, one patient each, a prescriber per ``visits_per_prescriber``.

    Sessions are made directly (no passwords): argon2 is not what is measured. Returns
    per visit {id, patient_id, patient: (cookie, csrf), prescriber: (cookie, csrf)} and
    the prescribers' and coordinator's (cookie, csrf).
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
    out: dict[str, Any] = {"visits": [], "prescribers": [], "coordinator": None}

    async def signed(session: Any, user: Any) -> tuple[str, str]:
        s = await start_session(session, services, user, ip=None, user_agent="bench")
        return s.cookie, s.session.csrf_token

    async with services.transaction() as session:
        coord = None
        if coordinator:
            coord = await create_user(session, None, email="coord@bench.test", name="Coord",
                                      role=Role.coordinator, password=None, now=now)
            out["coordinator"] = await signed(session, coord)
        doctor = doctor_auth = None
        for n in range(visits):
            if n % visits_per_prescriber == 0:
                doctor = await create_user(session, None, email=f"doctor{n}@bench.test",
                                           name=f"Dr {n}", role=Role.prescriber, password=None,
                                           now=now)
                doctor_auth = await signed(session, doctor)
                out["prescribers"].append(doctor_auth)
            assert doctor is not None
            patient = await create_user(session, None, email=f"patient{n}@bench.test",
                                        name=f"Patient {n}", role=Role.patient, password=None,
                                        now=now)
            session.add(CareTeamMember(patient_id=patient.id, member_id=doctor.id,
                                       role=Role.prescriber, added_at=now))
            if coord is not None:
                session.add(CareTeamMember(patient_id=patient.id, member_id=coord.id,
                                           role=Role.coordinator, added_at=now))
            visit = Visit(patient_id=patient.id, prescriber_id=doctor.id,
                          kind=VisitKind.follow_up, status=VisitStatus.scheduled,
                          scheduled_at=now + start_in, created_at=now)
            session.add(visit)
            await session.flush()
            out["visits"].append({"id": visit.id, "patient_id": patient.id,
                                  "patient": await signed(session, patient),
                                  "prescriber": doctor_auth})
    await services.close()
    return out


def serve_child(run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """The other end of ``run_child``: a JSON spec on stdin, the result as JSON on stdout,
    on uvloop when it is installed (as the server runs)."""
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(spec))))


def run_child(module: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``python -m module`` with a JSON spec on stdin; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-m", module], input=json.dumps(spec).encode(),
                          capture_output=True, timeout=timeout, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result
