"""Profile (GIL holders only) the visit room page under load with py-spy (not part of
``python -m bench``; run ``python -m bench.profile_room`` after ``pip install py-spy``).

``python -m bench.profile_room relay`` profiles the signaling relay (50 pairs) instead.
Writes bench/results/profile-<room|relay>-<date>.txt: the top functions by own and total time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS, ROOT, SECRET, cpu_seconds, free_port, run_child, seed, wait_http
from bench.pages import WHERE

MODE = sys.argv[1] if len(sys.argv) > 1 else "room"
RATE = float(os.environ.get("PROFILE_RATE", "40"))
SECONDS = 10.0


class _Done(Exception):  # a way out of the measuring block
    def __init__(self, result: dict[str, object]) -> None:
        self.result = result


def main() -> None:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, 50))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MENDWELL_")}
        env.update({"MENDWELL_ENV": "test", "MENDWELL_DATABASE_URL": db,
                    "MENDWELL_SECRET_KEY": SECRET, "MENDWELL_VAR_DIR": str(var),
                    "MENDWELL_RUN_BACKGROUND_TASKS": "false"})
        raw = var / "profile.txt"
        log = var / "server.log"
        process = subprocess.Popen(
            [spy, "record", "--gil", "--format", "raw", "--output", str(raw), "--rate", "200", "--",
             sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", process, log)
            children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                      text=True, check=False).stdout.split()
            server_pid = int(children[0])
            visits = clinic["visits"]
            if MODE != "relay":
                # Where each patient is, first, or the room redirects to that step
                # (CLINICAL.md invariant 10). Before the CPU count: not what is measured.
                run_child("bench.pages_load", {
                    "port": port, "rate": 50, "seconds": len(visits) / 50 + 1, "requests": [
                        {"method": "PUT",
                         "path": f"/api/v1/visits/{v['id']}/checkin/emergency-info",
                         "cookie": v["patient"][0], "csrf": v["patient"][1], "json": WHERE}
                        for v in visits]}, timeout=120)
            cpu0 = cpu_seconds(server_pid)
            if MODE == "relay":
                result = run_child("bench.relay_load", {
                    "server": "mendwell", "port": port, "pairs": visits, "rate": 20.0,
                    "seconds": SECONDS, "server_pid": server_pid}, timeout=120)
                result["server_cpu_ms_per_request"] = None
                raise _Done(result)
            result = run_child("bench.pages_load", {
                "port": port, "rate": RATE, "seconds": SECONDS, "requests": [
                    {"method": "GET", "path": f"/visits/{visits[n % len(visits)]['id']}",
                     "cookie": visits[n % len(visits)]["patient"][0]}
                    for n in range(int(RATE * SECONDS))]}, timeout=120)
            result["server_cpu_ms_per_request"] = round(
                1000 * (cpu_seconds(server_pid) - cpu0) / result["requests"], 1)
        except _Done as done:
            result = done.result
        finally:
            process.send_signal(2)
            process.wait(30)
        print(f"load while profiled: {result}")
        own: dict[str, float] = {}
        total: dict[str, float] = {}
        packages: dict[str, float] = {}
        samples = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            if any("importlib" in f for f in frames) and \
                    not any("run_asgi" in f for f in frames):
                continue  # start-up (imports), not serving requests
            # Everything else serves requests: the event loop, SQLAlchemy's ORM work
            # (run in greenlets, whose stacks start at the session call) and the
            # aiosqlite threads.
            samples += n
            own[frames[-1]] = own.get(frames[-1], 0) + n
            package = _package(frames[-1])
            packages[package] = packages.get(package, 0) + n
            for frame in set(frames):
                total[frame] = total.get(frame, 0) + n
        lines = [f"py-spy --gil, {samples} samples while serving requests, " +
                 (f"GET /visits/{{id}} at {RATE:g}/s" if MODE == "room" else
                  "relay, 50 pairs at 20 msg/s per peer") + f" for {SECONDS:g} s",
                 f"load: {result}", "", "own time by package:"]
        lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in
                  sorted(packages.items(), key=lambda kv: -kv[1])[:12]]
        lines += ["", "own time:"]
        lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in
                  sorted(own.items(), key=lambda kv: -kv[1])[:25]]
        lines += ["", "total time (inclusive):"]
        lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in
                  sorted(total.items(), key=lambda kv: -kv[1])[:30]]
        lines += ["", "Mendwell's own code (inclusive):"]
        lines += [f"{100 * n / samples:5.1f}%  {f}" for f, n in
                  sorted(total.items(), key=lambda kv: -kv[1])
                  if any(f"({d}/" in f for d in ("server", "web", "signaling", "escalation"))][:30]
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"profile-{MODE}-{datetime.now(UTC):%Y-%m-%d}.txt"
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines[:60]))
        print(f"  -> {out}")


def _package(frame: str) -> str:
    """"sqlalchemy" for "Session.execute (sqlalchemy/orm/session.py:2351)"; our own
    code as "mendwell", templates as "templates"."""
    path = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    if path.endswith(".html"):
        return "templates"
    top = path.split("/")[0].removesuffix(".py")
    if top in ("server", "web", "signaling", "escalation"):
        return "mendwell"
    return top or "?"


if __name__ == "__main__":
    main()
