"""Soak: 200 concurrent simulated visits for 5 minutes, then every acknowledged write
counted in the database (issue 14, "Load"). ``python -m bench soak [--minutes 5]
[--visits 200] [--database postgresql|sqlite]``; not part of ``python -m bench``.

Each visit has a patient and a prescriber on ``/ws/visits/{id}``: the prescriber admits
the patient, then the patient sends signals (offers and candidates, numbered) that the
prescriber answers, and every one must come back. Meanwhile the patient saves check-in
drafts (each one different, as a page does while answering) and completes the check-in
at a time spread over the run; one visit in ten completes it with an emergency answer,
which raises an escalation that the coordinator, listening on ``/ws/events``, acknowledges.
The prescriber autosaves the note every few seconds with the version it was based on.

The load runs in its own process (``python -m bench.soak`` with a JSON spec on stdin),
against ``mendwell serve`` on a free port, one instance. Afterwards the server is stopped
and the database is counted against the load's ledger of acknowledged writes: a note's
version is its number of acknowledged saves and it holds the last one's text, one check-in
version per acknowledged draft and one for the completion, one audit record each, one
escalation per emergency with one acknowledgement. Any error (a non-2xx answer, an
``error`` message, a socket closed under a visit, a signal not answered, an escalation
not seen) is counted and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    COOKIE,
    cpu_seconds,
    free_port,
    pct,
    raise_fd_limit,
    rss_kib,
    run_child,
    save,
    seed,
    serve_child,
    signaling_port,
    start_mendwell,
    stop,
    table,
)

VISITS = 200
MINUTES = 5.0
EMERGENCY_EVERY = 10          # one visit in ten completes with an emergency answer
SIGNAL_SECONDS = 1.0          # a patient's signal every second (answered by the prescriber)
DRAFT_SECONDS = 12.0          # a check-in draft every 12 s until the completion
AUTOSAVE_SECONDS = 5.0        # a note autosave every 5 s
RAMP_SECONDS = 20.0           # visits join over the first 20 s
ANSWER_TIMEOUT = 10.0         # a signal not answered within this is lost
SDP_PAD = 3000

PHONE, CONTACT_PHONE = "+1 617 555 0100", "+1 617 555 0101"
HIGH_RISK_CSSRS = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": True, "q6": False,
                   "q6_recent": None}


def checkin(seq: int, *, emergency: bool, draft: bool = False) -> dict[str, Any]:
    """A check-in body; ``seq`` changes the sleep hours, so each draft differs from the
    one before (a draft identical to the last is not a new version, by design). A draft
    carries no emergency information, as the check-in page sends it (web/static/checkin.js:
    that comes with the completion)."""
    responses: dict[str, Any] = {
        "phq9": {"answers": [1, 1, 1, 1, 0, 0, 0, 0, 0], "difficulty": 1},
        "gad7": {"answers": [1, 1, 0, 0, 0, 0, 0]},
        "auditc": {"answers": [1, 0, 0]},
        "asrm": {"answers": [0, 0, 1, 0, 0]},
    }
    if emergency:
        responses["cssrs"] = {"answers": HIGH_RISK_CSSRS}
    body: dict[str, Any] = {
        "responses": responses, "sex": "female",
        "side_effects": [{"effect": "sedation", "severity": "mild"}],
        "missed_doses": {"days_missed": 1, "reasons": ["forgot"]},
        "sleep": {"hours": 4.0 + (seq % 8) * 0.5, "quality": "fair"},
        "substance_use": {"cravings": 2, "used_since_last_visit": False},
    }
    if not draft:
        body |= {"location": {"address": "12 Elm Street, Springfield", "state": "MA"},
                 "callback_phone": PHONE,
                 "emergency_contact": {"name": "Taylor Rivera", "phone": CONTACT_PHONE}}
    return body


# --- the load (child process) ------------------------------------------------------------


@dataclass
class Ledger:
    """What the server acknowledged for one visit, to count in the database after."""

    visit_id: int
    patient_id: int
    emergency: bool
    drafts: int = 0
    completed: bool = False
    escalations: list[int] = field(default_factory=list)
    note_saves: int = 0
    note_text: str | None = None


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.port: int = spec["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.errors: list[str] = []
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        self.acknowledged: set[int] = set()
        self.raised_at: dict[int, float] = {}      # patient id -> completion sent
        self.seen: dict[int, float] = {}           # patient id -> escalation.raised seen
        self.rss: list[int] = []
        self.ending = False
        self.acked = asyncio.Event()  # set at each acknowledgement

    def error(self, text: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 50:
            self.errors.append(text[:300])

    async def call(self, http: Any, kind: str, method: str, url: str, auth: list[str],
                   body: Any = None) -> Any:
        cookie, csrf = auth
        started = time.perf_counter()
        try:
            response = await http.request(
                method, url, json=body, headers={
                    "Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": csrf, "Origin": self.base})
        except Exception as exc:
            self.error(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        self.latency[kind].append((time.perf_counter() - started) * 1000)
        if not 200 <= response.status_code < 300:
            self.error(f"{kind}: {response.status_code} {response.text[:200]}")
            return None
        self.counts[kind] += 1
        return response.json()

    async def socket(self, path: str, cookie: str) -> Any:
        from websockets.asyncio.client import connect

        port = signaling_port(self.port) if path.startswith("/ws/visits/") else self.port
        return await connect(f"ws://127.0.0.1:{port}{path}", compression=None,
                             additional_headers={"Cookie": f"{COOKIE}={cookie}"},
                             open_timeout=30, ping_interval=None, max_size=2**20)

    # One visit ---------------------------------------------------------------------------

    async def visit(self, http: Any, v: dict[str, Any], ledger: Ledger, start: float,
                    end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        vid = v["id"]
        patient_peer, doctor_peer = f"pat-{vid:06d}", f"doc-{vid:06d}"
        try:
            doctor = await self.socket(f"/ws/visits/{vid}", v["prescriber"][0])
            patient = await self.socket(f"/ws/visits/{vid}", v["patient"][0])
        except Exception as exc:
            self.error(f"visit {vid}: connect: {type(exc).__name__}: {exc}")
            return
        admitted = asyncio.Event()
        welcomed = {"doctor": asyncio.Event(), "patient": asyncio.Event()}
        pending: dict[int, float] = {}
        answered = asyncio.Event()  # set whenever nothing is pending
        leaving = False

        async def read(ws: Any, who: str) -> None:
            try:
                async for text in ws:
                    m = json.loads(text)
                    kind = m.get("type")
                    if kind == "welcome":
                        welcomed[who].set()
                    elif kind == "error":
                        self.error(f"visit {vid} {who}: error {m.get('code')}: "
                                   f"{m.get('message')}")
                    elif kind == "admitted":
                        admitted.set()
                    elif kind == "signal" and who == "doctor":
                        seq = int(m["candidate"]["candidate"].split()[0].split(":")[1]) \
                            if "candidate" in m else int(m["description"]["sdp"].split()[2])
                        await ws.send(signal(patient_peer, seq, answer=True))
                        self.counts["signals_relayed"] += 1
                    elif kind == "signal":
                        seq = int(m["candidate"]["candidate"].split()[0].split(":")[1]) \
                            if "candidate" in m else int(m["description"]["sdp"].split()[2])
                        sent = pending.pop(seq, None)
                        self.counts["signals_relayed"] += 1
                        if not pending:
                            answered.set()
                        if sent is None:
                            self.error(f"visit {vid}: signal {seq} answered twice or unasked")
                        else:
                            self.latency["signal_rtt"].append((time.perf_counter() - sent) * 1000)
            except Exception as exc:
                if not leaving:
                    self.error(f"visit {vid} {who}: {type(exc).__name__}: {exc}")
                return
            if not leaving:
                self.error(f"visit {vid} {who}: socket closed ({ws.close_code})")

        readers = [asyncio.create_task(read(doctor, "doctor")),
                   asyncio.create_task(read(patient, "patient"))]
        try:
            await doctor.send(json.dumps({"type": "hello", "peer_id": doctor_peer}))
            await asyncio.wait_for(welcomed["doctor"].wait(), 30)
            await patient.send(json.dumps({"type": "hello", "peer_id": patient_peer}))
            await asyncio.wait_for(welcomed["patient"].wait(), 30)
            await doctor.send(json.dumps({"type": "admit", "peer_id": patient_peer}))
            await asyncio.wait_for(admitted.wait(), 30)
            self.counts["visits_admitted"] += 1
        except Exception as exc:
            self.error(f"visit {vid}: join: {type(exc).__name__}: {exc}")
            end = time.monotonic()

        rng = random.Random(vid)
        span = end - time.monotonic()
        complete_at = time.monotonic() + span * rng.uniform(0.1, 0.9)

        async def signals() -> None:
            seq = 0
            while time.monotonic() < end:
                await asyncio.sleep(SIGNAL_SECONDS * rng.uniform(0.5, 1.5))
                seq += 1
                pending[seq] = time.perf_counter()
                answered.clear()
                try:
                    await patient.send(signal(doctor_peer, seq, answer=False))
                except Exception as exc:
                    self.error(f"visit {vid}: send: {type(exc).__name__}: {exc}")
                    return
                self.counts["signals_sent"] += 1

        async def checkins() -> None:
            url = f"/api/v1/visits/{vid}/checkin"
            seq = 0
            while time.monotonic() < min(complete_at, end):
                await asyncio.sleep(min(DRAFT_SECONDS * rng.uniform(0.5, 1.5),
                                        max(0.0, complete_at - time.monotonic())))
                if time.monotonic() >= complete_at:
                    break
                seq += 1
                if await self.call(http, "checkin_draft", "PUT", f"{url}/draft", v["patient"],
                                   checkin(seq, emergency=False, draft=True)) is not None:
                    ledger.drafts += 1
            if time.monotonic() >= end:
                return
            if ledger.emergency:
                self.raised_at[ledger.patient_id] = time.perf_counter()
            done = await self.call(http, "checkin_complete", "POST", url, v["patient"],
                                   checkin(seq + 1, emergency=ledger.emergency))
            if done is not None:
                ledger.completed = True
                ledger.escalations = list(done.get("escalations", []))

        async def autosaves() -> None:
            url = f"/api/v1/visits/{vid}/note"
            version, seq = 0, 0
            while True:
                await asyncio.sleep(AUTOSAVE_SECONDS * rng.uniform(0.5, 1.5))
                if time.monotonic() >= end:
                    return
                seq += 1
                text = f"Plan for visit {vid}, autosave {seq}: continue sertraline 50 mg."
                saved = await self.call(http, "note_autosave", "PUT", url, v["prescriber"], {
                    "version": version, "sections": {"plan": text,
                                                     "interval_history": "Sleeping better."}})
                if saved is not None:
                    version = saved["version"]
                    ledger.note_saves += 1
                    ledger.note_text = text

        await asyncio.gather(signals(), checkins(), autosaves())
        # Every signal sent is answered: wait for the last ones.
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), ANSWER_TIMEOUT)
        for seq in pending:
            self.error(f"visit {vid}: signal {seq} never answered")
        self.counts["signals_lost"] += len(pending)

        leaving = True
        for ws in (patient, doctor):
            try:
                await ws.send(json.dumps({"type": "leave"}))
            except Exception as exc:
                self.error(f"visit {vid}: leave: {type(exc).__name__}")
        await asyncio.sleep(0.5)
        self.counts["visits_done"] += 1
        # After the last visit is done its sockets close (from this side).
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(patient.close(), doctor.close(), return_exceptions=True)

    # The coordinator -----------------------------------------------------------------------

    async def coordinator(self, http: Any, auth: list[str], ready: asyncio.Event) -> None:
        events = await self.socket("/ws/events", auth[0])
        acks: list[asyncio.Task[None]] = []

        async def acknowledge(escalation_id: int) -> None:
            if await self.call(http, "escalation_ack", "POST",
                               f"/api/v1/escalations/{escalation_id}/acknowledge",
                               auth) is not None:
                self.acknowledged.add(escalation_id)
                self.acked.set()

        try:
            async for text in events:
                m = json.loads(text)
                if m.get("type") == "subscribed":
                    ready.set()
                elif m.get("type") == "escalation.raised":
                    patient = m["patient_id"]
                    self.seen.setdefault(patient, time.perf_counter())
                    if patient in self.raised_at:
                        self.latency["checkin_to_coordinator"].append(
                            (self.seen[patient] - self.raised_at[patient]) * 1000)
                    acks.append(asyncio.create_task(acknowledge(m["escalation_id"])))
                elif m.get("type") == "error":
                    self.error(f"coordinator: error {m}")
        except Exception as exc:
            if not self.ending:
                self.error(f"coordinator: {type(exc).__name__}: {exc}")
        finally:
            await asyncio.gather(*acks, return_exceptions=True)
            await events.close()

    async def watch_server(self) -> None:
        while not self.ending:
            self.rss.append(rss_kib(self.spec["server_pid"]))
            await asyncio.sleep(5)

    async def run(self) -> dict[str, Any]:
        import httpx2

        raise_fd_limit(8192)
        visits: list[dict[str, Any]] = self.spec["visits"]
        seconds: float = self.spec["seconds"]
        ledgers = [Ledger(v["id"], v["patient_id"], n % EMERGENCY_EVERY == 0)
                   for n, v in enumerate(visits)]
        limits = httpx2.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx2.AsyncClient(base_url=self.base, timeout=30, limits=limits) as http:
            ready = asyncio.Event()
            coordinator = asyncio.create_task(self.coordinator(http, self.spec["coordinator"],
                                                              ready))
            watcher = asyncio.create_task(self.watch_server())
            await asyncio.wait_for(ready.wait(), 30)
            began = time.monotonic()
            end = began + seconds
            ramp = min(RAMP_SECONDS, seconds / 4)
            await asyncio.gather(*(
                self.visit(http, v, ledger, began + ramp * n / len(visits), end)
                for n, (v, ledger) in enumerate(zip(visits, ledgers, strict=True))))
            ran = time.monotonic() - began
            # The last escalations' events and acknowledgements.
            wanted = {e for ledger in ledgers for e in ledger.escalations}
            deadline = time.monotonic() + 15
            while not wanted <= self.acknowledged and time.monotonic() < deadline:
                self.acked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.acked.wait(), deadline - time.monotonic())
            self.ending = True
            coordinator.cancel()
            await asyncio.gather(coordinator, watcher, return_exceptions=True)
        for ledger in ledgers:
            for escalation_id in ledger.escalations:
                if escalation_id not in self.acknowledged:
                    self.error(f"escalation {escalation_id} (visit {ledger.visit_id}) was "
                               "never seen by the coordinator or not acknowledged")
        return {"seconds": round(ran, 1), "counts": dict(self.counts),
                "load_cpu_seconds": round(time.process_time(), 1),
                "errors": self.errors, "latency_ms": {
                    k: {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
                        "max": round(max(v), 1) if v else None}
                    for k, v in sorted(self.latency.items())},
                "server_rss_kib_max": max(self.rss, default=None),
                "acknowledged_escalations": sorted(self.acknowledged),
                "ledgers": [ledger.__dict__ for ledger in ledgers]}


def signal(to: str, seq: int, *, answer: bool) -> str:
    """An offer (answer) every fifth signal, candidates otherwise; both carry ``seq``."""
    if seq % 5 == 1:
        sdp = (f"v=0\r\no=- {seq} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
               + "a=x-pad:" + "f" * SDP_PAD + "\r\n")
        kind = "answer" if answer else "offer"
        return json.dumps({"type": "signal", "to": to,
                           "description": {"type": kind, "sdp": sdp}})
    return json.dumps({"type": "signal", "to": to, "candidate": {
        "candidate": f"candidate:{seq} 1 udp 2122260223 192.0.2.1 54321 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0}})


async def load(spec: dict[str, Any]) -> dict[str, Any]:
    return await Load(spec).run()


# --- counting (parent) ---------------------------------------------------------------------


async def count(database_url: str, result: dict[str, Any], coordinator_id: int
                ) -> dict[str, Any]:
    """The database against the ledger: every acknowledged write present exactly once."""
    from sqlalchemy import func, select

    from server.db import create_engine, session_factory
    from server.models import (
        AuditEntry,
        CheckIn,
        CheckInVersion,
        Escalation,
        EscalationEvent,
        VisitNote,
    )

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    mismatches: list[str] = []
    totals: Counter[str] = Counter()
    async with sessions() as session:
        def audits(action: str, kind: str) -> Any:
            return (select(AuditEntry.resource_id, func.count())
                    .where(AuditEntry.action == action, AuditEntry.resource_type == kind,
                           AuditEntry.outcome == "success")
                    .group_by(AuditEntry.resource_id))

        note_audits = dict((await session.execute(audits("save", "note"))).all())
        draft_audits = dict((await session.execute(audits("save_draft", "checkin"))).all())
        complete_audits = dict((await session.execute(audits("complete", "checkin"))).all())
        ack_audits = dict((await session.execute(audits("acknowledge", "escalation"))).all())
        notes = {n.visit_id: n for n in (await session.scalars(select(VisitNote))).all()}
        checkins = {c.visit_id: c for c in (await session.scalars(select(CheckIn))).all()}
        versions = Counter((v.checkin_id, v.kind) for v in
                           (await session.scalars(select(CheckInVersion))).all())
        escalations: dict[int, list[Escalation]] = defaultdict(list)
        for e in (await session.scalars(select(Escalation))).all():
            escalations[e.patient_id].append(e)
        ack_events = Counter(e.escalation_id for e in (await session.scalars(
            select(EscalationEvent).where(EscalationEvent.kind == "acknowledged"))).all())
    await engine.dispose()

    def expect(what: str, got: Any, wanted: Any) -> None:
        if got != wanted:
            mismatches.append(f"{what}: {got!r} in the database, {wanted!r} acknowledged")

    for ledger in result["ledgers"]:
        vid = ledger["visit_id"]
        note = notes.get(vid)
        saves = ledger["note_saves"]
        totals["note_saves"] += saves
        expect(f"visit {vid} note version", note.version if note else 0, saves)
        if note is not None:
            expect(f"visit {vid} note text", note.sections.get("plan"), ledger["note_text"])
            expect(f"visit {vid} note save audits", note_audits.get(str(note.id), 0), saves)
        c = checkins.get(vid)
        drafts = ledger["drafts"]
        totals["checkin_drafts"] += drafts
        totals["checkins_completed"] += ledger["completed"]
        if c is None:
            expect(f"visit {vid} check-in", None, "one" if drafts or ledger["completed"] else None)
        else:
            expect(f"visit {vid} draft versions", versions[(c.id, "draft")], drafts)
            expect(f"visit {vid} draft audits", draft_audits.get(str(c.id), 0), drafts)
            completed = 1 if ledger["completed"] else 0
            expect(f"visit {vid} completed versions", versions[(c.id, "completion")], completed)
            expect(f"visit {vid} completion audits", complete_audits.get(str(c.id), 0),
                   completed)
            expect(f"visit {vid} check-in status", c.status.value,
                   "completed" if completed else "draft")
        rows = escalations.get(ledger["patient_id"], [])
        wanted = 1 if ledger["emergency"] and ledger["completed"] else 0
        totals["escalations"] += wanted
        expect(f"visit {vid} escalations", len(rows), wanted)
        expect(f"visit {vid} escalation ids", sorted(e.id for e in rows),
               sorted(ledger["escalations"]))
        for e in rows:
            acked = e.id in result["acknowledged_escalations"]
            totals["escalations_acknowledged"] += acked
            expect(f"escalation {e.id} status", e.status.value,
                   "acknowledged" if acked else "open")
            expect(f"escalation {e.id} acknowledged by", e.acknowledged_by_id,
                   coordinator_id if acked else None)
            expect(f"escalation {e.id} acknowledgement events", ack_events[e.id], int(acked))
            expect(f"escalation {e.id} acknowledgement audits", ack_audits.get(str(e.id), 0),
                   int(acked))
    return {"totals": dict(totals), "mismatches": len(mismatches),
            "first_mismatches": mismatches[:20]}


# --- the benchmark (parent) ----------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--minutes", type=float, default=MINUTES)
    parser.add_argument("--visits", type=int, default=VISITS)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args(argv)
    result = run(minutes=args.minutes, visits=args.visits, database=args.database)
    return 0 if result["errors"] == 0 and result["database"]["mismatches"] == 0 else 1


def run(*, minutes: float = MINUTES, visits: int = VISITS,
        database: str = "postgresql") -> dict[str, Any]:
    from bench.escalation import drop_pg_database, fresh_pg_database

    seconds = minutes * 60
    name = None
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        if database == "postgresql":
            name = asyncio.run(fresh_pg_database())
            db = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        else:
            db = f"sqlite+aiosqlite:///{var / 'bench.db'}"
        server = None
        try:
            clinic = asyncio.run(seed(db, visits, coordinator=True, visits_per_prescriber=1))
            coordinator_id = asyncio.run(_user_id(db, "coord@bench.test"))
            raise_fd_limit(8192)
            port = free_port()
            # Background tasks on, as in production: escalation deadlines are armed and
            # cancelled by the acknowledgements, the outbox runs.
            server = start_mendwell(db, var, port, {"MENDWELL_RUN_BACKGROUND_TASKS": "true"})
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            result = run_child("bench.soak", {
                "port": port, "server_pid": server.pid, "visits": clinic["visits"],
                "coordinator": clinic["coordinator"], "seconds": seconds},
                timeout=seconds + 600)
            cpu = cpu_seconds(server.pid) - cpu0
            wall = time.monotonic() - wall0
            stop(server)
            server = None
            log = (var / "server.log").read_text(errors="replace")
            counted = asyncio.run(count(db, result, coordinator_id))
        finally:
            stop(server)
            if name is not None:
                asyncio.run(drop_pg_database(name))
    counts = result["counts"]
    writes = sum(counts.get(k, 0) for k in ("checkin_draft", "checkin_complete",
                                            "note_autosave", "escalation_ack"))
    summary = {
        "scenario": {"visits": visits, "minutes": minutes, "database": database,
                     "instances": 1, "signal_every_s": SIGNAL_SECONDS,
                     "draft_every_s": DRAFT_SECONDS, "autosave_every_s": AUTOSAVE_SECONDS,
                     "emergency_share": 1 / EMERGENCY_EVERY, "ramp_s": RAMP_SECONDS},
        "seconds": result["seconds"], "counts": counts,
        "errors": counts.get("errors", 0), "first_errors": result["errors"][:20],
        "acknowledged_writes": writes,
        "writes_per_second": round(writes / max(result["seconds"], 1), 1),
        "signals_relayed_per_second": round(counts.get("signals_relayed", 0)
                                            / max(result["seconds"], 1), 1),
        "latency_ms": result["latency_ms"],
        "load_generator_cpu_cores_average": round(result["load_cpu_seconds"] / wall, 2),
        "server": {"cpu_cores_average": round(cpu / wall, 2),
                   "rss_mib_max": round((result["server_rss_kib_max"] or 0) / 1024, 1),
                   "log_errors": sum(1 for line in log.splitlines()
                                     if " ERROR " in line or "Traceback" in line)},
        "database": counted,
    }
    lat = result["latency_ms"]
    table(f"soak: {visits} visits for {minutes:g} min on {database} (one instance)",
          ["what", "count", "p50 ms", "p99 ms", "max ms"],
          [[k, v["n"], v["p50"], v["p99"], v["max"]] for k, v in lat.items()])
    print(f"\n  acknowledged writes {writes} ({summary['writes_per_second']}/s), "
          f"signals relayed {counts.get('signals_relayed', 0)} "
          f"({summary['signals_relayed_per_second']}/s), lost {counts.get('signals_lost', 0)}, "
          f"errors {summary['errors']}")
    print(f"  load generator: {summary['load_generator_cpu_cores_average']} cores on average")
    print(f"  server: {summary['server']['cpu_cores_average']} cores on average, "
          f"{summary['server']['rss_mib_max']} MiB RSS at most, "
          f"{summary['server']['log_errors']} errors in its log")
    print(f"  database: {counted['totals']}; mismatches {counted['mismatches']}")
    for line in summary["first_errors"] + counted["first_mismatches"]:
        print(f"    {line}")
    # The run keeps the plain name; other settings are named by them.
    name = "soak" if (minutes, visits, database) == (MINUTES, VISITS, "postgresql") else \
        f"soak-{database}-{visits}-visits-{minutes:g}-min"
    print(f"  -> {save(name, summary)}")
    return summary


async def _user_id(database_url: str, email: str) -> int:
    from sqlalchemy import select

    from server.db import create_engine, session_factory
    from server.models import User

    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    await engine.dispose()
    assert found is not None
    return int(found)


if __name__ == "__main__":
    serve_child(load)
    sys.exit(0)
