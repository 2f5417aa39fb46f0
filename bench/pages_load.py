"""Fixed-rate HTTP load, run in its own process (``python -m bench.pages_load``).

Spec on stdin: port, rate, seconds, and ``requests`` (a list of {method, path, cookie,
csrf, json}); request n goes out at n / rate seconds (open loop: latency counts from the
due time, so a slow server cannot slow the generator down and hide its own queueing).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx2

from bench.common import COOKIE, pct


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    port, rate, seconds = spec["port"], spec["rate"], spec["seconds"]
    plan: list[dict[str, Any]] = spec["requests"]
    total = min(len(plan), int(rate * seconds))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    origin = f"http://127.0.0.1:{port}"
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx2.AsyncClient(base_url=origin, timeout=10, limits=limits) as client:
        async def one(item: dict[str, Any], due: float) -> None:
            headers = {"Cookie": f"{COOKIE}={item['cookie']}", "Origin": origin}
            if item.get("csrf"):
                headers["X-CSRF-Token"] = item["csrf"]
            try:
                response = await client.request(item["method"], item["path"],
                                                json=item.get("json"), headers=headers)
                key = str(response.status_code)
            except httpx2.HTTPError as exc:
                key = type(exc).__name__
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[key] = statuses.get(key, 0) + 1

        tasks = []
        start = time.perf_counter()
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(plan[n], due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {"requests": total, "rate": rate, "seconds": round(elapsed, 2),
            "achieved_per_s": round(total / elapsed, 1), "statuses": statuses,
            "errors": total - ok, "p50_ms": pct(latencies, 50), "p90_ms": pct(latencies, 90),
            "p99_ms": pct(latencies, 99), "max_ms": round(max(latencies), 1)}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
