"""Private services that a fault test may stop and start: redis-server and PostgreSQL.

Without the binaries a test skips with one line; with MENDWELL_REQUIRE_SERVICES=1 it
fails instead (as tests/databases.py does for the shared servers).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.databases import require_services

START_TIMEOUT = 20.0


def unavailable(reason: str) -> None:
    if require_services():
        pytest.fail(f"MENDWELL_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(port: int) -> bool:
    """Something accepts TCP connections on the port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class PrivateRedis:
    """A redis-server of the test's own, without persistence (a restart forgets
    everything, as a Redis that lost its memory would: the harder case)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server not installed (Debian package `redis-server`)")
        assert binary is not None
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("redis-server did not start: " +
                                     (self.directory / "redis.log").read_text()[-1000:])
            time.sleep(0.02)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP, then SIGCONT: connections stay open and nothing answers, as behind a
        dead network path; what was sent meanwhile is served when it continues."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGKILL: gone at once, its clients' connections reset, like a crashed Redis."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(10)


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them off the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own: initdb into a temporary directory, started
    on a free port. ``initdb`` refuses to run as root, so as root the cluster belongs to
    the ``postgres`` user."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            unavailable("PostgreSQL server binaries not found (initdb, pg_ctl)")
        assert bindir is not None
        self.bindir = bindir
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no `postgres` user for initdb")
            self.user = "postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="mendwell-pg-"))
        if self.user is not None:
            shutil.chown(self.directory, self.user)
        self.data = self.directory / "data"
        self.port = free_port()
        self.running = False

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        done = subprocess.run([*prefix, *command], capture_output=True, timeout=60,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"{command[0]} failed: {done.stdout[-800:]!r} "
                                 f"{done.stderr[-800:]!r}")

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        # fsync off: the test is about the app, not about this disk.
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "postgres.log"), "-w", "-t", "30", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: the server ends every session (their transactions roll back) and
        stops, as for a restart or a failover; ``immediate``: as if it crashed."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", "30", "stop")
        self.running = False

    def _processes(self) -> list[int]:
        """The postmaster and its children (every backend), by process id."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    # /proc/<pid>/stat: "pid (name) state ppid ..."; the name may hold
                    # spaces, so count from the closing parenthesis.
                    stat = (entry / "stat").read_text()
                    if int(stat[stat.rindex(")") + 2:].split()[1]) == postmaster:
                        found.append(int(entry.name))
        return found

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the cluster stopped (SIGSTOP) and continued after: a server
        that accepts connections but never answers, as behind a dead network path."""
        processes = self._processes()
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     database="postgres", timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
