"""Signaling relay: Mendwell vs PeerJS server, same scenario, interleaved A, B, B, A, A, B, B, A.

Both servers run for the whole benchmark; each run is a fresh load generator process
(bench/relay_load.py) with the same pairs, rate, message sizes and timing against one
of them, so the machine's load at a given moment falls on both alike."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import free_port, run_child, save, seed, start_mendwell, start_peerjs, stop, table

# MENDWELL_BENCH_RELAY_PAIRS / _ROUNDS change the scenario (250 pairs: 10,000 relayed
# messages a second offered); the result file is then named relay-<pairs>-pairs.
PAIRS = int(os.environ.get("MENDWELL_BENCH_RELAY_PAIRS", "50"))
RATE = 20.0  # messages a second per peer, under Mendwell's 30/s per-socket rate limit
SECONDS = 8.0
# Four rounds: each server goes first as often as the other. The p99 of one 8 s round
# rests on about 80 round trips and moves by 20% with what else the machine does.
ROUNDS = int(os.environ.get("MENDWELL_BENCH_RELAY_ROUNDS", "4"))


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
                order = [("mendwell", m_port, mendwell, visits),
                         ("peerjs", p_port, peerjs, [{}] * PAIRS)]
                # A, B then B, A: neither server always goes first into a changing load.
                for name, port, proc, pairs in order if r % 2 == 0 else order[::-1]:
                    result = run_child("bench.relay_load", {
                        "server": name, "port": port, "pairs": pairs, "rate": RATE,
                        "seconds": SECONDS, "server_pid": proc.pid}, timeout=120)
                    result["round"] = r + 1
                    result["load_average"] = round(os.getloadavg()[0], 2)
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
            # One round disturbed by other work on the machine moves the mean a lot.
            "rtt_p99_ms_median_of_rounds": round(statistics.median(
                x["rtt_ms"]["p99"] or 0 for x in mine), 2),
            "server_cpu_s": round(sum(x["server_cpu_s"] or 0 for x in mine) / len(mine), 2),
            "server_cpu_us_per_relayed": round(1e6 * sum(x["server_cpu_s"] or 0 for x in mine)
                                               / sum(x["relayed"] for x in mine)),
            # The load generator is not the bottleneck while this stays well under 1 s/s.
            "client_cpu_s": round(sum(x["client_cpu_s"] for x in mine) / len(mine), 2),
            "lost": sum(x["lost"] for x in mine),
            "errors": sum(len(x["errors"]) for x in mine),
        }
    m, p = summary["mendwell"], summary["peerjs"]
    summary["ratio_mendwell_over_peerjs"] = {k: ratio(m[k], p[k]) for k in (
        "relayed_per_s", "rtt_p50_ms", "rtt_p99_ms", "rtt_p99_ms_median_of_rounds",
        "server_cpu_s")}
    table(f"relay: {PAIRS} pairs, {RATE:g} msg/s per peer, {SECONDS:g} s per run, "
          f"{ROUNDS} interleaved rounds (mean of rounds)",
          ["server", "relayed msg/s", "RTT p50 ms", "RTT p99 ms", "p99 median", "server CPU s",
           "client CPU s", "lost", "errors"],
          [[n, summary[n]["relayed_per_s"], summary[n]["rtt_p50_ms"], summary[n]["rtt_p99_ms"],
            summary[n]["rtt_p99_ms_median_of_rounds"], summary[n]["server_cpu_s"],
            summary[n]["client_cpu_s"], summary[n]["lost"], summary[n]["errors"]]
           for n in ("mendwell", "peerjs")] +
          [["ratio M/P", *[summary["ratio_mendwell_over_peerjs"][k] for k in (
              "relayed_per_s", "rtt_p50_ms", "rtt_p99_ms", "rtt_p99_ms_median_of_rounds",
              "server_cpu_s")], "", "", ""]])
    print("  per round (p99 ms): " + ", ".join(
        f"{x['server']} {x['rtt_ms']['p99']} (load {x['load_average']})" for x in runs))
    data = {"scenario": {"pairs": PAIRS, "rate_per_peer": RATE, "seconds": SECONDS,
                         "rounds": ROUNDS, "offer_bytes": 3600, "candidate_bytes": 250,
                         "pattern": "1 offer/answer per 4 candidates, each echoed by peer B"},
            "summary": summary, "runs": runs}
    print(f"  -> {save('relay' if PAIRS == 50 else f'relay-{PAIRS}-pairs', data)}")
    return data
