"""``mendwell probe`` against a running server, as an operator runs it after a deploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clinic import PASSWORD, Clinic
from tests.signaling_support import LiveServer


def probe(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "probe", *args,
                           "--password-stdin", "--timeout", "10"],
                          input=password + "\n", capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_probe_places_a_call_and_prints_the_times(
    clinic: Clinic, database_url: str, tmp_path: Path
) -> None:
    with LiveServer(database_url, tmp_path) as server:
        done = probe("--base-url", server.base_url, "--email", clinic.prescriber.email,
                     "--visit", str(clinic.visit_id))
        refused = probe("--base-url", server.base_url, "--email", clinic.prescriber.email,
                        password="not the password")
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"signed in as {clinic.prescriber.email}")
    assert lines[1].startswith("device check direct or TURN: echo after ")
    assert lines[2].startswith("visit call between two probe peers: video after ")
    assert refused.returncode == 1
    assert "FAILED: sign-in: sign-in refused (401)" in refused.stderr
