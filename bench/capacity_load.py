"""Capacity load generator, run in its own process (``python -m bench.capacity_load``).

Steps up the number of concurrent visits (2 signaling sockets each, admitted, plus one
/ws/events dashboard per prescriber), keeps every socket read so the server's 5 s
heartbeats are answered, and at each step times relay round trips on a few probe pairs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import COOKIE, cpu_seconds, raise_fd_limit, rss_kib
from bench.relay_load import Mendwell, exchange


async def drain(ws: ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except Exception:
        return


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit(16384)
    port, pid = spec["port"], spec["server_pid"]
    adapter = Mendwell(port)
    visits: list[dict[str, Any]] = spec["visits"]
    probe_count: int = spec["probe_pairs"]
    probes = [await adapter.pair(v) for v in visits[:probe_count]]
    held: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    dashboards: dict[str, ClientConnection] = {}
    opened = probe_count
    steps = []
    for target in spec["steps"]:
        started = time.monotonic()
        todo = visits[opened:target]
        for i in range(0, len(todo), 25):
            batch = await asyncio.gather(*(adapter.pair(v) for v in todo[i:i + 25]))
            for a, b, _x, _y in batch:
                held += [a, b]
                readers += [asyncio.create_task(drain(a)), asyncio.create_task(drain(b))]
        for v in visits[:target]:
            cookie = v["prescriber"][0]
            if cookie not in dashboards:
                ws = await connect(f"ws://127.0.0.1:{port}/ws/events", compression=None,
                                   additional_headers={"Cookie": f"{COOKIE}={cookie}"})
                dashboards[cookie] = ws
                readers.append(asyncio.create_task(drain(ws)))
        opened = max(opened, target)
        open_s = time.monotonic() - started
        # Stay idle past a heartbeat round (ping every 5 s) before measuring.
        await asyncio.sleep(spec["settle"])
        cpu0 = cpu_seconds(pid)
        probe = await exchange(adapter, probes, spec["rate"], spec["seconds"], None)
        cpu1 = cpu_seconds(pid)
        alive = sum(1 for ws in held + list(dashboards.values()) if ws.close_code is None)
        steps.append({"visits": target, "signaling_sockets": 2 * target,
                      "dashboard_sockets": len(dashboards),
                      "alive_sockets": alive + 2 * len(probes),
                      "open_seconds": round(open_s, 1), "server_rss_kib": rss_kib(pid),
                      "server_cpu_s_during_probe": round(cpu1 - cpu0, 2), "probe": probe})
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    everyone = held + list(dashboards.values()) + [ws for a, b, _x, _y in probes for ws in (a, b)]
    for i in range(0, len(everyone), 100):
        await asyncio.gather(*(ws.close() for ws in everyone[i:i + 100]), return_exceptions=True)
    return {"steps": steps}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
