"""Capacity: how many concurrent visits one instance holds, with heartbeats, before the
relay p99 goes over its 50 ms budget (a search: steps up until a step is over the budget
or the time allowed is spent, then one step halfway back); memory per idle connection
for Mendwell (bench/ws_memory.py) and for PeerJS measured the same way."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    free_port,
    raise_fd_limit,
    rss_kib,
    run_child,
    save,
    seed,
    start_mendwell,
    start_peerjs,
    stop,
    table,
)

# Visits held at each step (2 signaling sockets each + 1 dashboard per 10 visits).
STEPS = [100, 500, 1000, 1500, 2000, 3000, 4000, 5000]
PROBE_PAIRS = 20
RATE = 20.0
PROBE_SECONDS = 4.0
SETTLE = 6.0
BUDGET_P99_MS = 50
# Time allowed for the search (keeps `make bench` under 10 minutes); a step that would
# not finish in it is not started, and the highest step measured is reported.
# MENDWELL_BENCH_CAPACITY_SECONDS raises it for a search to the last step (5,000 visits).
SEARCH_SECONDS = float(os.environ.get("MENDWELL_BENCH_CAPACITY_SECONDS", "110"))
MEMORY_CONNECTIONS = 1000
BUDGET_KIB = 40


async def peerjs_memory(connections: int, settle: float = 3.0) -> dict[str, Any]:
    """ws_memory.py's method for PeerJS: N idle sockets, growth of the server's RSS."""
    raise_fd_limit(connections * 2 + 256)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_peerjs(port, Path(tmp))
        sockets: list[ClientConnection] = []

        async def open_one(client: httpx.AsyncClient, n: int) -> ClientConnection:
            peer = (await client.get(f"http://127.0.0.1:{port}/peerjs/id")).text.strip()
            ws = await connect(f"ws://127.0.0.1:{port}/peerjs?key=peerjs&id={peer}&token=t{n}",
                               compression=None, open_timeout=30, ping_interval=None)
            while json.loads(await ws.recv())["type"] != "OPEN":
                pass
            return ws

        try:
            async with httpx.AsyncClient() as client:
                for ws in [await open_one(client, n) for n in range(3)]:
                    await ws.close()
                await asyncio.sleep(1.0)
                before = middle = rss_kib(server.pid)
                started = time.monotonic()
                for i in range(0, connections, 50):
                    sockets += await asyncio.gather(*(open_one(client, i + k) for k in range(50)))
                    if len(sockets) == connections // 2:
                        await asyncio.sleep(settle)
                        middle = rss_kib(server.pid)
                opened = time.monotonic() - started
                await asyncio.sleep(settle)
                after = rss_kib(server.pid)
        finally:
            for ws in sockets:
                await ws.close()
            stop(server)
    half = connections // 2
    return {"connections": len(sockets), "rss_before_kib": before, "rss_after_kib": after,
            "per_connection_kib": round((after - before) / len(sockets), 1),
            "marginal_kib": round((after - middle) / (len(sockets) - half), 1),
            "open_seconds": round(opened, 1)}


def held_visits() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, max(STEPS)))
        port = free_port()
        # 2 sockets a visit: the server inherits this process's descriptor limit.
        raise_fd_limit(65536)
        server = start_mendwell(db, var, port)
        try:
            return run_child("bench.capacity_load", {
                "port": port, "server_pid": server.pid, "visits": clinic["visits"],
                "steps": STEPS, "probe_pairs": PROBE_PAIRS, "rate": RATE,
                "seconds": PROBE_SECONDS, "settle": SETTLE, "budget_p99_ms": BUDGET_P99_MS,
                "max_seconds": SEARCH_SECONDS}, timeout=SEARCH_SECONDS + 200)
        finally:
            stop(server)


def run() -> dict[str, Any]:
    from bench.ws_memory import measure

    held = held_visits()
    memory = {"mendwell": asyncio.run(measure(MEMORY_CONNECTIONS, 3.0)),
              "peerjs": asyncio.run(peerjs_memory(MEMORY_CONNECTIONS))}
    table(f"capacity: visits held (2 signaling sockets each + 1 dashboard per 10 visits), "
          f"relay RTT on {PROBE_PAIRS} probe pairs at {RATE:g} msg/s per peer",
          ["visits", "step", "sockets alive", "open s", "RSS MiB", "RTT p50 ms", "RTT p99 ms",
           "budget p99 ms", "load avg"],
          [[s["visits"], s["kind"], s["alive_sockets"], s["open_seconds"],
            round(s["server_rss_kib"] / 1024, 1), s["probe"]["rtt_ms"]["p50"],
            s["probe"]["rtt_ms"]["p99"], BUDGET_P99_MS, s["load_average"]]
           for s in held["steps"]])
    if held["lowest_over_budget"] is None:
        print(f"  relay p99 stayed within {BUDGET_P99_MS} ms up to the highest step measured, "
              f"{held['highest_within_budget']} visits ({held['seconds']} s of search)")
    else:
        print(f"  relay p99 within {BUDGET_P99_MS} ms at {held['highest_within_budget']} visits, "
              f"over it at {held['lowest_over_budget']}")
    table(f"memory per idle connection ({MEMORY_CONNECTIONS} sockets)",
          ["server", "KiB per conn", "marginal KiB", "budget KiB"],
          [[n, m["per_connection_kib"], m["marginal_kib"], BUDGET_KIB if n == "mendwell" else "-"]
           for n, m in memory.items()])
    data = {"scenario": {"steps": STEPS, "probe_pairs": PROBE_PAIRS, "rate_per_peer": RATE,
                         "probe_seconds": PROBE_SECONDS, "settle_seconds": SETTLE,
                         "budget_p99_ms": BUDGET_P99_MS, "search_seconds": SEARCH_SECONDS},
            "held": held["steps"], "highest_within_budget": held["highest_within_budget"],
            "lowest_over_budget": held["lowest_over_budget"],
            "search_seconds": held["seconds"], "memory_per_idle_connection": memory}
    print(f"  -> {save('capacity', data)}")
    return data
