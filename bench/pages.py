"""Pages and API under a fixed request rate from a separate process.

The visit room page (GET /visits/{id}, the patient's) at 100 requests/s, and the check-in
(POST /api/v1/visits/{id}/checkin, one routine check-in per visit) at 20 requests/s.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.common import free_port, run_child, save, seed, start_mendwell, stop, table
from bench.escalation import HIGH_RISK

SECONDS = 10.0
ROOM_RATE = 100.0
CHECKIN_RATE = 20.0
BUDGET_ROOM_P99_MS = 50

ROUTINE = {**HIGH_RISK, "responses": {k: v for k, v in HIGH_RISK["responses"].items()
                                      if k != "cssrs"}}
ROUTINE["responses"]["phq9"] = {"answers": [1, 1, 1, 1, 0, 0, 0, 0, 0], "difficulty": 1}
WHERE = {"location": {"address": "12 Elm Street, Springfield", "state": "MA"},
         "callback_phone": "+1 617 555 0100"}


def run() -> dict[str, Any]:
    checkins = int(CHECKIN_RATE * SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, checkins))
        port = free_port()
        server = start_mendwell(db, var, port)
        try:
            visits = clinic["visits"]
            # Each patient confirms where they are, as they must before the room (else it
            # answers a redirect to that step: CLINICAL.md invariant 10; not measured).
            run_child("bench.pages_load", {
                "port": port, "rate": 50, "seconds": len(visits) / 50 + 1, "requests": [
                    {"method": "PUT", "path": f"/api/v1/visits/{v['id']}/checkin/emergency-info",
                     "cookie": v["patient"][0], "csrf": v["patient"][1], "json": WHERE}
                    for v in visits]}, timeout=120)
            # Warm up the templates and caches (not measured).
            run_child("bench.pages_load", {"port": port, "rate": 20, "seconds": 1, "requests": [
                {"method": "GET", "path": f"/visits/{v['id']}", "cookie": v["patient"][0]}
                for v in visits[:20]]}, timeout=60)
            room = run_child("bench.pages_load", {
                "port": port, "rate": ROOM_RATE, "seconds": SECONDS, "requests": [
                    {"method": "GET", "path": f"/visits/{visits[n % len(visits)]['id']}",
                     "cookie": visits[n % len(visits)]["patient"][0]}
                    for n in range(int(ROOM_RATE * SECONDS))]}, timeout=120)
            checkin = run_child("bench.pages_load", {
                "port": port, "rate": CHECKIN_RATE, "seconds": SECONDS, "requests": [
                    {"method": "POST", "path": f"/api/v1/visits/{v['id']}/checkin",
                     "cookie": v["patient"][0], "csrf": v["patient"][1], "json": ROUTINE}
                    for v in visits]}, timeout=120)
        finally:
            stop(server)
    results = {"visit_room_page": room, "checkin_post": checkin}
    table(f"pages: fixed request rate for {SECONDS:g} s from a separate process",
          ["request", "rate/s", "p50 ms", "p90 ms", "p99 ms", "errors", "budget"],
          [["GET /visits/{id}", ROOM_RATE, room["p50_ms"], room["p90_ms"], room["p99_ms"],
            room["errors"], f"p99 < {BUDGET_ROOM_P99_MS} ms"],
           ["POST .../checkin", CHECKIN_RATE, checkin["p50_ms"], checkin["p90_ms"],
            checkin["p99_ms"], checkin["errors"], "-"]])
    for name, r in results.items():
        if r["errors"]:
            print(f"  {name} statuses: {r['statuses']}")
    print(f"  -> {save('pages', results)}")
    return results
