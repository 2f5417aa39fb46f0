"""Signaling load generator, run in its own process (``python -m bench.relay_load``).

Reads a JSON spec on stdin, prints one JSON line of results. N pairs of peers: peer A
sends offer-sized (~3.6 kB) and candidate-sized (~250 B) messages to peer B at a fixed
rate, B answers each with an answer / candidate of the same size, and A times the round
trip. One thin adapter per server protocol (Mendwell ``/ws/visits/{id}``, PeerJS).
Also used by ``capacity`` to probe relay latency while many sockets are held.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import COOKIE, cpu_seconds, pct, raise_fd_limit, serve_child, signaling_port

SDP_SIZE = 3600
CANDIDATE_PAD = 150
PATTERN = ("offer", "cand", "cand", "cand", "cand")  # one description per four candidates
SETUP_TIMEOUT = 30.0
Pair = tuple[ClientConnection, ClientConnection, str, str]


def sdp(seq: int) -> str:
    head = f"v=0\r\no=- {seq} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    return head + ("a=x-pad:" + "f" * 60 + "\r\n") * ((SDP_SIZE - len(head)) // 70)


def candidate_text(seq: int) -> str:
    return (f"candidate:{seq} 1 udp 2122260223 192.168.1.23 54321 typ host generation 0 "
            f"ufrag {'a' * (CANDIDATE_PAD - 80)} network-id 1")


def seq_of(text: str) -> int:
    at = text.find("o=- ")
    if at >= 0:
        return int(text[at + 4:text.index(" ", at + 4)])
    at = text.index("candidate:")
    return int(text[at + 10:text.index(" ", at + 10)])


class Mendwell:
    def __init__(self, port: int) -> None:
        self.base = f"ws://127.0.0.1:{signaling_port(port)}/ws/visits"

    async def _join(self, visit_id: int, cookie: str,
                    peer: str) -> tuple[ClientConnection, dict[str, Any]]:
        ws = await connect(f"{self.base}/{visit_id}", additional_headers={
            "Cookie": f"{COOKIE}={cookie}"}, compression=None, open_timeout=SETUP_TIMEOUT,
            ping_interval=None, max_size=2**20)
        await ws.send(json.dumps({"type": "hello", "peer_id": peer, "polite_capable": True}))
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "welcome":
                return ws, message
            if message["type"] == "error":
                raise RuntimeError(f"hello refused: {message}")

    async def pair(self, spec: dict[str, Any]) -> Pair:
        vid = spec["id"]
        doctor, doc_id = f"doc-{vid:06d}", f"doc-{vid:06d}"
        b, _ = await self._join(vid, spec["prescriber"][0], doctor)
        patient = f"pat-{vid:06d}"
        a, welcome = await self._join(vid, spec["patient"][0], patient)
        if welcome.get("state") != "admitted":
            await b.send(json.dumps({"type": "admit", "peer_id": patient}))
            while json.loads(await a.recv())["type"] != "admitted":
                pass
        return a, b, patient, doc_id

    @staticmethod
    def message(kind: str, to: str, seq: int) -> str:
        if kind in ("offer", "answer"):
            return json.dumps({"type": "signal", "to": to,
                               "description": {"type": kind, "sdp": sdp(seq)}})
        return json.dumps({"type": "signal", "to": to, "candidate": {
            "candidate": candidate_text(seq), "sdpMid": "0", "sdpMLineIndex": 0}})

    @staticmethod
    def received(text: str) -> tuple[str, str, int] | None:
        data = json.loads(text)
        if data.get("type") != "signal":
            if data.get("type") == "error":
                raise RuntimeError(f"server error: {data}")
            return None
        if "description" in data:
            return data["from"], data["description"]["type"], seq_of(data["description"]["sdp"])
        return data["from"], "cand", seq_of(data["candidate"]["candidate"])

    async def close(self, ws: ClientConnection) -> None:
        try:
            await ws.send(json.dumps({"type": "leave"}))
        finally:
            await ws.close()


class PeerJS:
    def __init__(self, port: int, *, local_ids: bool = False) -> None:
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        # The bare relays of ``bench transports`` have no HTTP side: ids are made here.
        self.local_ids = local_ids

    async def _open(self, client: httpx.AsyncClient) -> tuple[ClientConnection, str]:
        peer = secrets.token_hex(8) if self.local_ids else \
            (await client.get(f"{self.http}/peerjs/id")).text.strip()
        token = secrets.token_hex(8)
        ws = await connect(f"{self.ws}/peerjs?key=peerjs&id={peer}&token={token}",
                           compression=None, open_timeout=SETUP_TIMEOUT, ping_interval=None,
                           max_size=2**20)
        while json.loads(await ws.recv())["type"] != "OPEN":
            pass
        return ws, peer

    async def pair(self, spec: dict[str, Any]) -> Pair:
        async with httpx.AsyncClient() as client:
            a, a_id = await self._open(client)
            b, b_id = await self._open(client)
        return a, b, a_id, b_id

    @staticmethod
    def message(kind: str, to: str, seq: int) -> str:
        if kind in ("offer", "answer"):
            return json.dumps({"type": kind.upper(), "dst": to, "payload": {
                "sdp": {"type": kind, "sdp": sdp(seq)}, "type": "media",
                "connectionId": "mc_bench"}})
        return json.dumps({"type": "CANDIDATE", "dst": to, "payload": {
            "candidate": {"candidate": candidate_text(seq), "sdpMid": "0", "sdpMLineIndex": 0},
            "type": "media", "connectionId": "mc_bench"}})

    @staticmethod
    def received(text: str) -> tuple[str, str, int] | None:
        data = json.loads(text)
        kind = data.get("type")
        if kind in ("OFFER", "ANSWER"):
            return data["src"], kind.lower(), seq_of(data["payload"]["sdp"]["sdp"])
        if kind == "CANDIDATE":
            return data["src"], "cand", seq_of(data["payload"]["candidate"]["candidate"])
        if kind in ("ERROR", "ID-TAKEN", "INVALID-KEY"):
            raise RuntimeError(f"server error: {data}")
        return None

    async def close(self, ws: ClientConnection) -> None:
        await ws.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    adapter: Any = (Mendwell(spec["port"]) if spec["server"] == "mendwell"
                    else PeerJS(spec["port"], local_ids=spec.get("local_ids", False)))
    pairs_spec: list[dict[str, Any]] = spec["pairs"]
    pairs = []
    for i in range(0, len(pairs_spec), 10):
        pairs += await asyncio.gather(*(adapter.pair(p) for p in pairs_spec[i:i + 10]))
    result = await exchange(adapter, pairs, spec["rate"], spec["seconds"], spec.get("server_pid"))
    await asyncio.gather(*(adapter.close(ws) for a, b, _x, _y in pairs for ws in (a, b)),
                         return_exceptions=True)
    return {"server": spec["server"], **result}


async def exchange(adapter: Any, pairs: list[Any], rate: float, seconds: float,
                   pid: int | None) -> dict[str, Any]:
    """A of each pair sends at ``rate``, B echoes; A times the round trips."""
    rtts: list[float] = []
    sent_at: dict[tuple[int, int], float] = {}
    counts = {"sent": 0, "relayed": 0, "echoed": 0}
    errors: list[str] = []

    async def initiator_reader(index: int, ws: ClientConnection) -> None:
        async for text in ws:
            got = adapter.received(text)
            if got is None:
                continue
            counts["relayed"] += 1
            started = sent_at.pop((index, got[2]), None)
            if started is not None:
                rtts.append((time.perf_counter() - started) * 1000)
                counts["echoed"] += 1

    async def echo(ws: ClientConnection, back_to: str) -> None:
        async for text in ws:
            got = adapter.received(text)
            if got is None:
                continue
            counts["relayed"] += 1
            kind = "answer" if got[1] == "offer" else "cand"
            await ws.send(adapter.message(kind, back_to, got[2]))

    async def sender(index: int, ws: ClientConnection, to: str, start: float) -> None:
        interval = 1.0 / rate
        n = 0
        # Spread the pairs' phases so they do not all send at the same instant. The
        # phase must be part of every due time: sleeping it once and then keeping to
        # ``start + n * interval`` put all pairs back in step from the second message
        # on, and the run measured how a 50-message burst queues in the load generator.
        phase = (index * 0.6180339887 % 1.0) * interval
        while True:
            due = start + phase + n * interval
            now = time.perf_counter()
            if n * interval >= seconds:
                return
            if due > now:
                await asyncio.sleep(due - now)
            sent_at[(index, n)] = time.perf_counter()
            await ws.send(adapter.message(PATTERN[n % len(PATTERN)], to, n))
            counts["sent"] += 1
            n += 1

    async def guarded(coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])

    readers = []
    for index, (a, b, a_id, _b_id) in enumerate(pairs):
        readers.append(asyncio.create_task(guarded(initiator_reader(index, a))))
        readers.append(asyncio.create_task(guarded(echo(b, a_id))))
    cpu_before = cpu_seconds(pid) if pid else None
    own_cpu_before = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(guarded(sender(i, a, b_id, start))
                           for i, (a, _b, _a_id, b_id) in enumerate(pairs)))
    # Let the last round trips come back (bounded).
    deadline = time.perf_counter() + 2.0
    while sent_at and time.perf_counter() < deadline:  # noqa: ASYNC110 (bounded poll)
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(pid) if pid else None
    own_cpu = time.process_time() - own_cpu_before
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "pairs": len(pairs), "rate_per_peer": rate,
        "seconds": round(elapsed, 2), "sent": counts["sent"], "relayed": counts["relayed"],
        "lost": len(sent_at), "relayed_per_s": round(counts["relayed"] / elapsed, 1),
        "rtt_ms": {"p50": pct(rtts, 50), "p90": pct(rtts, 90), "p99": pct(rtts, 99),
                   "max": round(max(rtts), 2) if rtts else None},
        "server_cpu_s": round(cpu_after - cpu_before, 2) if cpu_before is not None
        and cpu_after is not None else None,
        # The load generator's own CPU: near 1.0 s per second it would be the bottleneck.
        "client_cpu_s": round(own_cpu, 2),
        "errors": errors,
    }


if __name__ == "__main__":
    serve_child(run)
