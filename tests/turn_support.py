"""coturn for tests: ``turnserver`` with ``use-auth-secret`` (the REST credentials the app
mints), on an address and free ports of the test's choosing, stopped at the end.

Without coturn the tests skip with one line; with MENDWELL_REQUIRE_SERVICES=1 they fail.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.signaling_support import free_port, service_or_skip

START_TIMEOUT = 5.0


ALLOCATED = re.compile(r"user <([^>]*)>: incoming packet ALLOCATE processed, success")


@dataclass(frozen=True)
class Coturn:
    host: str
    port: int
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    def allocated(self) -> list[str]:
        """The TURN usernames of every allocation coturn granted so far, in order."""
        return ALLOCATED.findall(self.log.read_text(errors="replace"))


@contextlib.contextmanager
def run_coturn(directory: Path, host: str = "127.0.0.1") -> Iterator[Coturn]:
    """coturn listening and relaying on ``host`` only; it lets relayed peers be on this
    machine (``--allow-loopback-peers``: both test peers are; never in production)."""
    binary = shutil.which("turnserver")
    service_or_skip(None if binary else "coturn (turnserver) is not installed")
    assert binary is not None
    port = free_port()
    secret = secrets.token_urlsafe(24)
    relay_ports = free_port()
    log_path = directory / f"turnserver-{port}.log"
    log_path.touch()
    output = (directory / f"turnserver-{port}.out").open("wb")
    process = subprocess.Popen(
        # -v: coturn logs each allocation with its username (Coturn.allocated()).
        [binary, "-n", "-v", f"--listening-ip={host}", f"--listening-port={port}",
         f"--relay-ip={host}", "--use-auth-secret", f"--static-auth-secret={secret}",
         "--realm=mendwell.test", "--no-tls", "--no-dtls", "--no-cli",
         "--allow-loopback-peers",
         f"--min-port={relay_ports}", f"--max-port={relay_ports + 50}",
         f"--pidfile={directory / f'turnserver-{port}.pid'}",
         f"--userdb={directory / f'turndb-{port}'}",
         f"--log-file={log_path}", "--simple-log"],
        stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while b"Total General servers" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"coturn did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Coturn(host, port, secret, log_path)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        output.close()


def coturn_log(directory: Path) -> str:
    """The tail of every coturn log in ``directory`` (for a failing test's message)."""
    return "\n".join(path.read_text(errors="replace")[-3000:]
                     for path in sorted(directory.glob("turnserver-*.log")))
