"""Signaling relay: Mendwell vs PeerJS server, same scenario, interleaved A, B, A, B."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.common import free_port, run_child, save, seed, start_mendwell, start_peerjs, stop, table

PAIRS = 50
RATE = 20.0  # messages a second per peer, under Mendwell's 30/s per-socket rate limit
SECONDS = 8.0
ROUNDS = 2


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run() -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        clinic = asyncio.run(seed(db, PAIRS * ROUNDS))
        m_port, p_port = free_port(), free_port()
        mendwell = peerjs = None
        try:
            mendwell = start_mendwell(db, var, m_port)
            peerjs = start_peerjs(p_port, var)
            for r in range(ROUNDS):
                visits = clinic["visits"][r * PAIRS:(r + 1) * PAIRS]
                for name, port, proc, pairs in (
                        ("mendwell", m_port, mendwell, visits),
                        ("peerjs", p_port, peerjs, [{}] * PAIRS)):
                    result = run_child("bench.relay_load", {
                        "server": name, "port": port, "pairs": pairs, "rate": RATE,
                        "seconds": SECONDS, "server_pid": proc.pid}, timeout=120)
                    result["round"] = r + 1
                    runs.append(result)
        finally:
            stop(mendwell)
            stop(peerjs)
    summary: dict[str, dict[str, Any]] = {}
    for name in ("mendwell", "peerjs"):
        mine = [x for x in runs if x["server"] == name]
        summary[name] = {
            "relayed_per_s": round(sum(x["relayed_per_s"] for x in mine) / len(mine), 1),
            "rtt_p50_ms": round(sum(x["rtt_ms"]["p50"] or 0 for x in mine) / len(mine), 2),
            "rtt_p99_ms": round(sum(x["rtt_ms"]["p99"] or 0 for x in mine) / len(mine), 2),
            "server_cpu_s": round(sum(x["server_cpu_s"] or 0 for x in mine) / len(mine), 2),
            "lost": sum(x["lost"] for x in mine),
            "errors": sum(len(x["errors"]) for x in mine),
        }
    m, p = summary["mendwell"], summary["peerjs"]
    summary["ratio_mendwell_over_peerjs"] = {k: ratio(m[k], p[k]) for k in (
        "relayed_per_s", "rtt_p50_ms", "rtt_p99_ms", "server_cpu_s")}
    table(f"relay: {PAIRS} pairs, {RATE:g} msg/s per peer, {SECONDS:g} s per run, "
          f"{ROUNDS} interleaved rounds (mean of rounds)",
          ["server", "relayed msg/s", "RTT p50 ms", "RTT p99 ms", "server CPU s", "lost", "errors"],
          [[n, summary[n]["relayed_per_s"], summary[n]["rtt_p50_ms"], summary[n]["rtt_p99_ms"],
            summary[n]["server_cpu_s"], summary[n]["lost"], summary[n]["errors"]]
           for n in ("mendwell", "peerjs")] +
          [["ratio M/P", *[summary["ratio_mendwell_over_peerjs"][k] for k in (
              "relayed_per_s", "rtt_p50_ms", "rtt_p99_ms", "server_cpu_s")], "", ""]])
    data = {"scenario": {"pairs": PAIRS, "rate_per_peer": RATE, "seconds": SECONDS,
                         "rounds": ROUNDS, "offer_bytes": 3600, "candidate_bytes": 250,
                         "pattern": "1 offer/answer per 4 candidates, each echoed by peer B"},
            "summary": summary, "runs": runs}
    print(f"  -> {save('relay', data)}")
    return data
