"""Transport floor: the same bare relay on uvicorn (plain ASGI), the websockets server and
picows, beside the PeerJS server, interleaved as in ``bench relay`` (rounds rotate which
goes first). Same load generator, pairs, rate and message sizes as ``bench relay``.

This is how the signaling transport is chosen (issue 15): a stack whose bare relay is
not clearly ahead of PeerJS cannot carry Mendwell's relay, which does more per message.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, free_port, run_child, save, start_peerjs, stop, table
from bench.relay import PAIRS, RATE, ROUNDS, SECONDS

STACKS = ["uvicorn", "websockets", "picows"]


def start_stack(stack: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "bench.transport_servers", stack,
                                str(port)], cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{stack} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    raise RuntimeError(f"{stack} did not listen within 20 s")


def run() -> dict[str, Any]:
    names = ["peerjs", *STACKS]
    runs: list[dict[str, Any]] = []
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name in names:
                port = free_port()
                servers[name] = (port, start_peerjs(port, Path(tmp)) if name == "peerjs"
                                 else start_stack(name, port))
            for r in range(ROUNDS):
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    port, process = servers[name]
                    result = run_child("bench.relay_load", {
                        "server": "peerjs", "port": port, "pairs": [{}] * PAIRS,
                        "rate": RATE, "seconds": SECONDS, "server_pid": process.pid,
                        "local_ids": name != "peerjs"}, timeout=120)
                    result.update(server=name, round=r + 1)
                    runs.append(result)
        finally:
            for _port, process in servers.values():
                stop(process)
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [x for x in runs if x["server"] == name]
        summary[name] = {
            "rtt_p50_ms": round(statistics.mean(x["rtt_ms"]["p50"] for x in mine), 2),
            "rtt_p99_ms": round(statistics.mean(x["rtt_ms"]["p99"] for x in mine), 2),
            "rtt_p99_ms_median_of_rounds": round(statistics.median(
                x["rtt_ms"]["p99"] for x in mine), 2),
            "server_cpu_us_per_relayed": round(1e6 * sum(x["server_cpu_s"] for x in mine)
                                               / sum(x["relayed"] for x in mine)),
            "lost": sum(x["lost"] for x in mine),
            "errors": sum(len(x["errors"]) for x in mine),
        }
    peerjs = summary["peerjs"]
    for name in STACKS:
        summary[name]["p99_over_peerjs"] = round(
            summary[name]["rtt_p99_ms"] / peerjs["rtt_p99_ms"], 2)
        summary[name]["cpu_over_peerjs"] = round(
            summary[name]["server_cpu_us_per_relayed"] / peerjs["server_cpu_us_per_relayed"], 2)
    table(f"transports: bare relay, {PAIRS} pairs, {RATE:g} msg/s per peer, {ROUNDS} rounds",
          ["server", "p50 ms", "p99 ms (mean)", "p99 median", "CPU µs/msg", "p99/PeerJS",
           "CPU/PeerJS", "lost"],
          [[n, summary[n]["rtt_p50_ms"], summary[n]["rtt_p99_ms"],
            summary[n]["rtt_p99_ms_median_of_rounds"], summary[n]["server_cpu_us_per_relayed"],
            summary[n].get("p99_over_peerjs", ""), summary[n].get("cpu_over_peerjs", ""),
            summary[n]["lost"]] for n in names])
    data = {"scenario": {"pairs": PAIRS, "rate_per_peer": RATE, "seconds": SECONDS,
                         "rounds": ROUNDS}, "summary": summary, "runs": runs}
    print(f"  -> {save('transports', data)}")
    return data
