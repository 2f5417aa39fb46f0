"""Capacity load generator, run in its own process (``python -m bench.capacity_load``).

Steps up the number of concurrent visits (2 signaling sockets each, admitted, plus one
/ws/events dashboard per prescriber), keeps every socket read so the server's 5 s
heartbeats are answered, and at each step times relay round trips on a few probe pairs.
It is a search: stepping stops at the first step whose relay p99 is over the budget
(twice in a row), or when the time allowed is spent; then, if there is time, one step
halfway back down (closing the visits opened last) narrows where the budget is crossed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import COOKIE, cpu_seconds, raise_fd_limit, rss_kib, serve_child
from bench.relay_load import Mendwell, exchange


async def drain(ws: ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except Exception:
        return


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit(65536)
    began = time.monotonic()
    port, pid = spec["port"], spec["server_pid"]
    adapter = Mendwell(port)
    visits: list[dict[str, Any]] = spec["visits"]
    probe_count: int = spec["probe_pairs"]
    budget_ms: float = spec["budget_p99_ms"]
    max_seconds: float = spec["max_seconds"]
    probes = [await adapter.pair(v) for v in visits[:probe_count]]
    # Per visit beyond the probes: its two sockets and their readers.
    held: list[tuple[ClientConnection, ClientConnection, list[asyncio.Task[None]]]] = []
    dashboards: dict[str, tuple[ClientConnection, asyncio.Task[None]]] = {}
    steps: list[dict[str, Any]] = []

    async def open_up_to(target: int) -> None:
        todo = visits[probe_count + len(held):target]
        for i in range(0, len(todo), 25):
            batch = await asyncio.gather(*(adapter.pair(v) for v in todo[i:i + 25]))
            for a, b, _x, _y in batch:
                held.append((a, b, [asyncio.create_task(drain(a)), asyncio.create_task(drain(b))]))
        for v in visits[:target]:
            cookie = v["prescriber"][0]
            if cookie not in dashboards:
                ws = await connect(f"ws://127.0.0.1:{port}/ws/events", compression=None,
                                   additional_headers={"Cookie": f"{COOKIE}={cookie}"})
                dashboards[cookie] = (ws, asyncio.create_task(drain(ws)))

    async def close_down_to(target: int) -> None:
        while probe_count + len(held) > target:
            a, b, readers = held.pop()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(adapter.close(a), adapter.close(b), return_exceptions=True)

    async def measure(target: int, kind: str) -> dict[str, Any]:
        started = time.monotonic()
        if target >= probe_count + len(held):
            await open_up_to(target)
        else:
            await close_down_to(target)
        open_s = time.monotonic() - started
        # Stay idle past a heartbeat round (ping every 5 s) before measuring.
        await asyncio.sleep(spec["settle"])
        cpu0 = cpu_seconds(pid)
        probe = await exchange(adapter, probes, spec["rate"], spec["seconds"], None)
        cpu1 = cpu_seconds(pid)
        sockets = [ws for a, b, _r in held for ws in (a, b)]
        sockets += [ws for ws, _t in dashboards.values()]
        alive = sum(1 for ws in sockets if ws.close_code is None)
        step = {"visits": target, "kind": kind, "signaling_sockets": 2 * target,
                "dashboard_sockets": len(dashboards), "alive_sockets": alive + 2 * len(probes),
                "open_seconds": round(open_s, 1), "server_rss_kib": rss_kib(pid),
                "server_cpu_s_during_probe": round(cpu1 - cpu0, 2),
                "load_average": round(os.getloadavg()[0], 2),
                "elapsed_s": round(time.monotonic() - began, 1), "probe": probe}
        steps.append(step)
        print(json.dumps({k: step[k] for k in ("visits", "kind", "elapsed_s")}
                         | {"p99": probe["rtt_ms"]["p99"]}), file=sys.stderr, flush=True)
        return step

    def over(step: dict[str, Any]) -> bool:
        p99 = step["probe"]["rtt_ms"]["p99"]
        return p99 is None or p99 > budget_ms or bool(step["probe"]["lost"])

    within = crossed = None
    per_visit = 0.0
    for target in spec["steps"]:
        if target > len(visits):
            break
        # What the next step would take: settling and probing, and opening its visits at
        # the rate the last step opened them.
        fixed = spec["settle"] + spec["seconds"] + 1.0
        expected = fixed + per_visit * (target - probe_count - len(held))
        if steps and time.monotonic() - began + expected > max_seconds:
            break  # the next step would not finish in time
        opened_before = len(held)
        step = await measure(target, "step")
        per_visit = step["open_seconds"] / max(1, len(held) - opened_before)
        # One probe over the budget may be the shared machine; a second one says it is
        # this many visits.
        if over(step) and over(await measure(target, "repeat")):
            crossed = target
            break
        within = target
    if crossed is not None and within is not None and crossed - within >= 200 and \
            time.monotonic() - began + spec["settle"] + spec["seconds"] + 5.0 < max_seconds:
        middle = (within + crossed) // 2
        if over(await measure(middle, "bisect")):
            crossed = middle
        else:
            within = middle

    for _a, _b, readers in held:
        for task in readers:
            task.cancel()
    for _ws, task in dashboards.values():
        task.cancel()
    await asyncio.gather(*(t for _a, _b, r in held for t in r),
                         *(t for _w, t in dashboards.values()), return_exceptions=True)
    everyone = [ws for a, b, _r in held for ws in (a, b)] + \
        [ws for ws, _t in dashboards.values()] + [ws for a, b, _x, _y in probes for ws in (a, b)]
    for i in range(0, len(everyone), 100):
        await asyncio.gather(*(ws.close() for ws in everyone[i:i + 100]), return_exceptions=True)
    return {"steps": steps, "highest_within_budget": within, "lowest_over_budget": crossed,
            "seconds": round(time.monotonic() - began, 1)}


if __name__ == "__main__":
    serve_child(run)
