"""The ``mendwell`` command, run as a real process, as a newcomer would run it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
from alembic.script import ScriptDirectory
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Base
from server.demo import ACCOUNTS
from server.migrate import alembic_config
from server.settings import Settings
from tests.conftest import TEST_SECRET
from tests.mail import free_port

DEMO_PASSWORD = "demo password for tests"
CLINIC_TZ = ZoneInfo("America/New_York")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def database_file(workdir: Path) -> Path:
    return workdir / "data" / "mendwell.db"


def cli_environ(workdir: Path, **values: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MENDWELL_")}
    environ.update({
        "MENDWELL_ENV": "development",
        "MENDWELL_VAR_DIR": str(workdir / "var"),
        "MENDWELL_DATABASE_URL": f"sqlite+aiosqlite:///{database_file(workdir)}",
    })
    environ.update(values)
    return environ


def mendwell(workdir: Path, *args: str, stdin: str | None = None,
             **environ: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", *args], input=stdin, cwd=workdir,
        env=cli_environ(workdir, **environ), capture_output=True, text=True, timeout=180,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def query(workdir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database_file(workdir)) as connection:
        return connection.execute(sql, params).fetchall()


def app_client(workdir: Path) -> TestClient:
    """The real app over the database the command wrote."""
    settings = Settings(env="test", secret_key=TEST_SECRET, var_dir=workdir / "app",
                        database_url=f"sqlite+aiosqlite:///{database_file(workdir)}",
                        base_url="http://testserver", run_background_tasks=False).completed()
    return TestClient(create_app(settings), base_url="http://testserver")


def test_db_upgrade_creates_the_schema_on_a_fresh_sqlite_file(workdir: Path) -> None:
    result = mendwell(workdir, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    tables = {name for (name,) in query(workdir, "SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
    assert set(Base.metadata.tables) <= tables
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert query(workdir, "SELECT version_num FROM alembic_version") == [(head,)]
    # Running it again changes nothing.
    again = mendwell(workdir, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert query(workdir, "SELECT version_num FROM alembic_version") == [(head,)]


def test_user_create_then_sign_in_with_that_password(workdir: Path) -> None:
    assert mendwell(workdir, "db", "upgrade").returncode == 0
    created = mendwell(workdir, "user", "create", "--email", "Nora@Clinic.test",
                       "--name", "Nora Nurse", "--role", "prescriber", "--password-stdin",
                       stdin="a long enough password\n")
    assert created.returncode == 0, created.stderr
    assert "created user" in created.stdout
    assert "nora@clinic.test" in created.stdout.lower()
    # The hash is argon2id; the password itself is nowhere in the database.
    [(password_hash, role)] = query(workdir, "SELECT password_hash, role FROM users "
                                             "WHERE email = ?", "nora@clinic.test")
    assert password_hash.startswith("$argon2id$")
    assert role == "prescriber"

    with app_client(workdir) as client:
        response = client.post("/api/v1/session", json={"email": "nora@clinic.test",
                                                        "password": "a long enough password"})
        assert response.status_code == 200, response.text
        assert response.json()["user"]["role"] == "prescriber"
        assert response.json()["user"]["name"] == "Nora Nurse"
        client.cookies.clear()
        wrong = client.post("/api/v1/session", json={"email": "nora@clinic.test",
                                                     "password": "not the password"})
        assert wrong.status_code == 401


def test_user_create_refuses_a_duplicate_email(workdir: Path) -> None:
    assert mendwell(workdir, "db", "upgrade").returncode == 0
    args = ("user", "create", "--email", "sam@clinic.test", "--name", "Sam",
            "--role", "coordinator", "--password-stdin")
    assert mendwell(workdir, *args, stdin="first password here\n").returncode == 0
    duplicate = mendwell(workdir, *args, stdin="second password here\n")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert query(workdir, "SELECT count(*) FROM users WHERE email = ?",
                 "sam@clinic.test") == [(1,)]


def test_user_create_explains_a_bad_password_or_role(workdir: Path) -> None:
    assert mendwell(workdir, "db", "upgrade").returncode == 0
    short = mendwell(workdir, "user", "create", "--email", "a@clinic.test", "--name", "A",
                     "--role", "patient", "--password-stdin", stdin="short\n")
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr
    role = mendwell(workdir, "user", "create", "--email", "a@clinic.test", "--name", "A",
                    "--role", "superuser", "--password-stdin", stdin="long enough pass\n")
    assert role.returncode == 2
    assert "invalid choice: 'superuser'" in role.stderr
    assert query(workdir, "SELECT count(*) FROM users") == [(0,)]


def _today_bounds() -> tuple[datetime, datetime]:
    start = datetime.combine(datetime.now(CLINIC_TZ).date(), day_time.min, tzinfo=CLINIC_TZ)
    return start, start + timedelta(days=1)


def test_demo_creates_the_clinic_once(workdir: Path) -> None:
    first = mendwell(workdir, "demo", MENDWELL_DEMO_PASSWORD=DEMO_PASSWORD)
    assert first.returncode == 0, first.stderr
    for email, _, role in ACCOUNTS:
        assert email in first.stdout
        assert f"({role.value})" in first.stdout
    # A password the operator chose is not repeated into the output (often a log).
    assert DEMO_PASSWORD not in first.stdout
    assert "the one in MENDWELL_DEMO_PASSWORD" in first.stdout
    assert sorted(query(workdir, "SELECT email, name, role FROM users")) == \
        sorted((email, name, role.value) for email, name, role in ACCOUNTS)
    visits = query(workdir, "SELECT id FROM visits")

    second = mendwell(workdir, "demo", MENDWELL_DEMO_PASSWORD=DEMO_PASSWORD)
    assert second.returncode == 0, second.stderr
    assert query(workdir, "SELECT count(*) FROM users") == [(len(ACCOUNTS),)]
    assert query(workdir, "SELECT id FROM visits") == visits
    assert query(workdir, "SELECT count(*) FROM care_team_members") == [(4,)]
    # The demo coordinator is on call (once: a shift covering the start is kept).
    assert "on call: coordinator@demo.test until" in first.stdout
    assert query(workdir, "SELECT u.email, s.cancelled_at FROM on_call_shifts s "
                          "JOIN users u ON u.id = s.user_id") == \
        [("coordinator@demo.test", None)]

    with app_client(workdir) as client:
        for email, _, role in ACCOUNTS:
            client.cookies.clear()
            response = client.post("/api/v1/session", json={"email": email,
                                                            "password": DEMO_PASSWORD})
            assert response.status_code == 200, email
            assert response.json()["user"]["role"] == role.value
        client.cookies.clear()
        csrf = client.post("/api/v1/session", json={"email": "prescriber@demo.test",
                                                     "password": DEMO_PASSWORD}).json()
        start, end = _today_bounds()
        today = client.get("/api/v1/visits", params={"from": start.isoformat(),
                                                     "to": end.isoformat()})
        assert today.status_code == 200
        names = {v["patient"]["name"] for v in today.json()["visits"]}
        assert names == {"Jordan Rivera", "Sam Lee"}, today.json()
        assert all(v["status"] == "scheduled" for v in today.json()["visits"])
        assert csrf["user"]["name"] in client.get("/day").text
        on_call = client.get("/api/v1/on-call").json()["shifts"]
        assert [(s["user"]["name"], s["on_call"]) for s in on_call] == [
            ("Casey Coordinator", True)]


def test_demo_without_a_password_prints_a_random_one(workdir: Path) -> None:
    result = mendwell(workdir, "demo")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "password:" in line)
    password = line.split("password:")[1].split()[0]
    assert len(password) >= 12
    assert "random" in line
    with app_client(workdir) as client:
        response = client.post("/api/v1/session", json={"email": "admin@demo.test",
                                                        "password": password})
        assert response.status_code == 200


# --- serve ----------------------------------------------------------------------------


@pytest.fixture
def served(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--demo", "--port", str(port)],
            cwd=workdir, env=cli_environ(workdir, MENDWELL_DEMO_PASSWORD=DEMO_PASSWORD),
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer: " + log.read_text()
            time.sleep(0.2)
        yield base, process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_serve_demo_answers_and_the_prescriber_signs_in(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    base, process, log = served
    with httpx2.Client(base_url=base, timeout=10) as browser:
        health = browser.get("/healthz").json()
        assert health["status"] == "ok"
        assert health["checks"]["database"] == "ok"
        response = browser.post("/api/v1/session", json={"email": "prescriber@demo.test",
                                                          "password": DEMO_PASSWORD})
        assert response.status_code == 200
        assert response.json()["user"]["role"] == "prescriber"
        assert "HttpOnly" in response.headers["set-cookie"]
        page = browser.get("/day")
        assert page.status_code == 200
    assert "Dr. Priya Shah" in page.text
    assert "Jordan Rivera" in page.text

    # A clean shutdown on SIGTERM (what a process manager sends). uvicorn shuts the
    # app down, then re-raises the signal, so the exit status still says SIGTERM.
    process.terminate()
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    output = log.read_text()
    assert "Application shutdown complete." in output
    assert "the one in MENDWELL_DEMO_PASSWORD" in output
    assert DEMO_PASSWORD not in output  # the chosen password never reaches the log
    assert "Traceback" not in output


def test_user_create_sets_a_patients_time_zone(workdir: Path) -> None:
    assert mendwell(workdir, "db", "upgrade").returncode == 0
    created = mendwell(workdir, "user", "create", "--email", "west@clinic.test", "--name",
                       "West", "--role", "patient", "--timezone", "America/Los_Angeles")
    assert created.returncode == 0, created.stderr
    assert query(workdir, "SELECT p.timezone FROM patient_profiles p JOIN users u "
                          "ON u.id = p.user_id WHERE u.email = ?",
                 "west@clinic.test") == [("America/Los_Angeles",)]
    wrong = mendwell(workdir, "user", "create", "--email", "east@clinic.test", "--name",
                     "East", "--role", "patient", "--timezone", "Eastern")
    assert wrong.returncode == 1
    assert "time zone" in wrong.stderr


# --- on-call ----------------------------------------------------------------------------


def test_on_call_add_list_and_end(workdir: Path) -> None:
    assert mendwell(workdir, "db", "upgrade").returncode == 0
    for email, role in (("casey@clinic.test", "coordinator"), ("alex@clinic.test", "admin")):
        created = mendwell(workdir, "user", "create", "--email", email, "--name",
                           email.split("@")[0].title(), "--role", role, "--password-stdin",
                           stdin="a long enough password\n")
        assert created.returncode == 0, created.stderr
    assert "nobody is on call now" in mendwell(workdir, "on-call", "list").stdout

    until = (datetime.now(CLINIC_TZ) + timedelta(hours=8)).isoformat(timespec="minutes")
    added = mendwell(workdir, "on-call", "add", "--email", "Casey@Clinic.test",
                     "--from", "now", "--until", until)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added shift 1: Casey (coordinator) on call from ")
    listed = mendwell(workdir, "on-call", "list")
    assert "on call now: Casey <casey@clinic.test>" in listed.stdout
    assert re.search(r"^\s+1\s+casey@clinic.test\s+coordinator\s.*\scurrent$",
                     listed.stdout, re.MULTILINE), listed.stdout

    for args, message in [
        (("--email", "casey@clinic.test", "--from", "now", "--until", until),
         "already on call"),
        (("--email", "alex@clinic.test", "--from", "now", "--until", until),
         "Only prescribers and coordinators"),
        (("--email", "nobody@clinic.test", "--from", "now", "--until", until),
         "no account"),
        (("--email", "casey@clinic.test", "--from", "2027-01-05T08:00", "--until", until),
         "UTC offset"),
    ]:
        refused = mendwell(workdir, "on-call", "add", *args)
        assert refused.returncode == 1, refused.stdout
        assert message in refused.stderr
    assert query(workdir, "SELECT count(*) FROM on_call_shifts") == [(1,)]

    ended = mendwell(workdir, "on-call", "end", "--id", "1")
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == "ended shift 1 (casey@clinic.test)"
    assert "nobody is on call now" in mendwell(workdir, "on-call", "list").stdout
    again = mendwell(workdir, "on-call", "end", "--id", "1")
    assert again.returncode == 1
    assert "already over" in again.stderr
    # An operator at the server acts without an account: audited with no actor.
    assert query(workdir, "SELECT action, actor_id FROM audit_log "
                          "WHERE resource_type = 'on_call_shift' ORDER BY id") == [
        ("add_shift", None), ("end_shift", None)]
