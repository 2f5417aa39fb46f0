"""Device check: server CPU per echoed 640x480 stream (aiortc echo peer on the server).

The Python client peer (signaling.client.device_check) sends a 640x480 test pattern to
``/ws/device-check`` and reads the 320-wide echo; the server's CPU seconds over the
check, divided by its length, are the cores one device check costs.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, free_port, save, seed, start_mendwell, stop, table

SECONDS = 10.0
CHECKS = 2
BUDGET_CORES = 0.3


async def one(port: int, cookie: str, pid: int) -> dict[str, Any]:
    from signaling.client import device_check

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    result = await device_check(f"ws://127.0.0.1:{port}/ws/device-check", cookie=cookie,
                                seconds=SECONDS, within=SECONDS + 20)
    cpu = cpu_seconds(pid) - cpu0
    elapsed = time.monotonic() - t0
    last = result.stats[-1] if result.stats else {}
    return {"seconds": round(elapsed, 1), "server_cpu_s": round(cpu, 2),
            "cores": round(cpu / elapsed, 3), "connected_after_s": round(result.connected_after, 2),
            "server_fps": last.get("frames_per_second"), "width": last.get("width")}


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, CHECKS))
        port = free_port()
        server = start_mendwell(db, var, port)
        try:
            time.sleep(1.0)
            idle0 = cpu_seconds(server.pid)
            time.sleep(2.0)
            idle = (cpu_seconds(server.pid) - idle0) / 2.0
            checks = [asyncio.run(one(port, v["patient"][0], server.pid))
                      for v in clinic["visits"][:CHECKS]]
        finally:
            stop(server)
    result = {"idle_cores": round(idle, 3), "checks": checks,
              "mean_cores": round(sum(c["cores"] for c in checks) / len(checks) - idle, 3)}
    table(f"device check: server CPU per 640x480 echo ({SECONDS:g} s each, one at a time)",
          ["check", "server cores", "server fps", "width in", "connected s", "budget cores"],
          [[n + 1, c["cores"], c["server_fps"], c["width"], c["connected_after_s"],
            BUDGET_CORES] for n, c in enumerate(checks)] +
          [["mean - idle", result["mean_cores"], "", "", "", BUDGET_CORES]])
    print(f"  -> {save('device', result)}")
    return result
