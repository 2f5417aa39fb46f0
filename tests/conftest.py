"""Fixtures that start the real app on real databases, with real SMTP.

Every test that uses ``client`` runs once on SQLite and once on PostgreSQL (when a
server is reachable; with MENDWELL_REQUIRE_SERVICES=1 a missing one fails the run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.auth import COOKIE_NAME, start_session
from server.models import User
from server.services import Services
from server.settings import Settings
from tests import app_server
from tests.clinic import Clinic, Person, build_clinic
from tests.databases import (
    PostgresDatabase,
    SqliteTemplate,
    postgres_server_url,
    postgres_unavailable,
    require_services,
)
from tests.log_scanner import LOG_SCAN
from tests.mail import SmtpServer

T = TypeVar("T")

TEST_SECRET = "test-secret-key-that-is-long-enough-for-signing"


# --- every log record of the session, scanned (tests/log_scanner.py) ------------------

def pytest_sessionstart(session: pytest.Session) -> None:
    LOG_SCAN.start()


def pytest_runtest_setup(item: pytest.Item) -> None:
    LOG_SCAN.ensure()  # back on the root logger if a test reconfigured logging


# Under pytest-xdist (`make test` runs `-n` workers with `--dist loadgroup`) the browser
# tests run one after another on one worker: each starts Chromium with fake devices and a
# real server, and two of them at once on a 2-core machine only slow each other down.
# The other workers share everything else.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))


# Under pytest-xdist each worker scans its own records; a worker's exit status does not
# fail the run, so a worker hands its findings to the controller, which reports them all.
WORKER_FINDINGS = "mendwell_log_findings"
_worker_findings: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _worker_findings.extend(node.workeroutput.get(WORKER_FINDINGS, []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    findings = [str(finding) for finding in LOG_SCAN.finish()]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        workeroutput[WORKER_FINDINGS] = findings
        return
    findings += _worker_findings
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", f"{len(findings)} log record(s) hold what no log may", red=True)
        for finding in findings[:50]:
            reporter.write_line(finding)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    reason = postgres_unavailable()
    if reason:
        if require_services():
            pytest.fail(f"MENDWELL_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    database = PostgresDatabase(postgres_server_url())
    yield database
    database.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_template: SqliteTemplate) -> str:
    if request.param == "sqlite":
        return sqlite_template.fresh()
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return database.fresh()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "env": "test", "database_url": database_url, "secret_key": TEST_SECRET,
        "base_url": "http://testserver", "var_dir": tmp_path, "run_background_tasks": False,
        "outbox_retry_base_seconds": 0.2, "outbox_poll_seconds": 0.1,
    }
    values.update(settings_overrides)
    return Settings(**values).completed()


@pytest.fixture
def app(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    # The real server some tests open sockets on runs in the client's loop: it stops
    # first (tests/app_server.py).
    with app_server.test_client(app) as test_client:
        yield test_client


@pytest.fixture
def services(app: Starlette) -> Services:
    found: Services = app.state.services
    return found


class Runner:
    """Runs coroutines on the app's event loop (the TestClient's portal)."""

    def __init__(self, client: TestClient, services: Services) -> None:
        self.client = client
        self.services = services

    def __call__(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        portal = self.client.portal
        assert portal is not None, "use the client inside its context"
        return portal.call(fn, *args)


@pytest.fixture
def run(client: TestClient, services: Services) -> Runner:
    return Runner(client, services)


@pytest.fixture
def clinic(run: Runner, services: Services) -> Clinic:
    return run(build_clinic, services)


class SignIn:
    """Puts a real session for a person in the client's cookie jar (no password round
    trip, so tests stay fast; the password path has its own tests)."""

    def __init__(self, client: TestClient, run: Runner, services: Services) -> None:
        self.client = client
        self.run = run
        self.services = services

    def __call__(self, person: Person | None, *, visit_id: int | None = None) -> str:
        self.client.cookies.clear()
        self.client.headers.pop("X-CSRF-Token", None)
        if person is None:
            return ""

        async def start() -> tuple[str, str]:
            async with self.services.transaction() as session:
                user = await session.get(User, person.id)
                assert user is not None
                signed = await start_session(session, self.services, user, ip="testclient",
                                             user_agent="pytest", visit_id=visit_id)
                return signed.cookie, signed.session.csrf_token

        cookie, csrf = self.run(start)
        self.client.cookies.set(COOKIE_NAME, cookie)
        self.client.headers["X-CSRF-Token"] = csrf
        return csrf


@pytest.fixture
def sign_in(client: TestClient, run: Runner, services: Services) -> SignIn:
    return SignIn(client, run, services)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
