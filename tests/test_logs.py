"""No log line carries a token, a credential or clinical text (server/logs.py), and the
session's log scanner (tests/log_scanner.py) catches one that would."""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient
from uvicorn.logging import AccessFormatter

from server.db import create_engine
from server.logs import RedactFilter, redact, uvicorn_log_config
from server.services import Services
from tests.clinic import PASSWORD, Clinic
from tests.conftest import Runner, SignIn
from tests.log_scanner import CLINICAL_MARKER, LogScanner, SessionScan, scan

JOIN_TOKEN = URLSafeTimedSerializer("k" * 40, salt="mendwell.join").dumps(
    {"v": 7, "p": 3, "g": 0, "n": "0badc0de"})
GUEST_TOKEN = "q3Zr8UjP0xW2yT5vN7mK9bH1cD4fG6sA8eL0iO2uR4t"


# --- redact ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "kept", "gone"), [
    # asyncpg under SQLAlchemy, as a trace shows them (hide_parameters or not).
    ('asyncpg.exceptions.UniqueViolationError: duplicate key value violates unique '
     'constraint "uq_users_email"\nDETAIL:  Key (email)=(pat@clinic.test) already exists.'
     '\n\nThe above exception was the direct cause of the following exception:',
     ['constraint "uq_users_email"', "DETAIL: [redacted]", "The above exception"],
     ["pat@clinic.test"]),
    (f"CheckViolationError: new row violates check constraint\nDETAIL:  Failing row contains "
     f"(3, Taylor Rivera\nsecond line {CLINICAL_MARKER}, 7).\n[SQL: UPDATE visit_notes]",
     ["violates check constraint", "[SQL: UPDATE visit_notes]"],
     ["Taylor Rivera", CLINICAL_MARKER]),
    ("invalid input for query argument $2: 'Sertraline 50 mg then...' (value out of int32 "
     "range)", ["query argument $2: [redacted] (value out of int32 range)"], ["Sertraline"]),
    ('invalid input syntax for type integer: "12 Elm Street"', ["type integer"],
     ["12 Elm Street"]),
    ('value "99999999999999" is out of range for type integer', ["out of range"],
     ["99999999999999"]),
    ("[SQL: INSERT INTO users (email) VALUES ($1)]\n[parameters: ('pat@clinic.test',)]",
     ["[SQL: INSERT INTO users (email) VALUES ($1)]", "[parameters: [redacted]]"],
     ["pat@clinic.test"]),
    ("[generated in 0.00031s] ('Taylor Rivera', 7)", ["[generated in 0.00031s]"],
     ["Taylor Rivera"]),
    ("sections.plan\n  Input should be a valid string [type=string_type, "
     f"input_value='{CLINICAL_MARKER}', input_type=int]", ["type=string_type", "input_type=int"],
     [CLINICAL_MARKER]),
    ("redis://:hunter2-redis-password@redis:6379/0 refused", ["redis:6379/0 refused"],
     ["hunter2"]),
    (f"GET /visits/7/join?t={JOIN_TOKEN} HTTP/1.1", ["/visits/7/join?[redacted]"],
     [JOIN_TOKEN]),
    (f"token {JOIN_TOKEN}; guest {GUEST_TOKEN}", ["token [token]; guest [token]"],
     [JOIN_TOKEN, GUEST_TOKEN]),
    ("callback +16175550100, contact family@family.test", ["[phone]", "[email]"],
     ["5550100", "family@family.test"]),
])
def test_redact_removes_values_and_keeps_the_rest(raw: str, kept: list[str],
                                                  gone: list[str]) -> None:
    clean = redact(raw)
    for part in kept:
        assert part in clean, clean
    for part in gone:
        assert part not in clean, clean
    assert redact(clean) == clean


@pytest.mark.parametrize("line", [
    "unhandled error on PUT /api/v1/visits/7/note",
    "email 12 not sent (attempt 3): SMTPServerDisconnected",
    "sqlalchemy.exc.IntegrityError: (sqlalchemy.dialects.postgresql.asyncpg."
    "UniqueViolationError) duplicate key value violates unique constraint",
    '  File "/srv/.venv/lib/python3.11/site-packages/sqlalchemy/dialects/postgresql/'
    'asyncpg.py", line 855, in _handle_exception_no_connection',
    "long-wait alerts sent for visits [3, 4] at 2026-12-04T10:00:00+00:00",
])
def test_redact_leaves_ordinary_lines_alone(line: str) -> None:
    assert redact(line) == line


def _record(msg: str, args: Any = None, exc: BaseException | None = None,
            name: str = "mendwell") -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def test_the_filter_redacts_message_arguments_and_the_trace() -> None:
    try:
        try:
            raise ValueError("duplicate key\nDETAIL:  Key (email)=(pat@clinic.test) exists.")
        except ValueError as inner:
            raise RuntimeError("while saving") from inner
    except RuntimeError as exc:
        record = _record("could not save for %s", ("pat@clinic.test",), exc)
    assert RedactFilter().filter(record)
    # What any formatter makes of it afterwards: nothing left to render raw.
    output = logging.Formatter("%(message)s").format(record)
    assert "pat@clinic.test" not in output
    assert "could not save for [email]" in output
    assert "DETAIL: [redacted]" in output and "RuntimeError: while saving" in output
    assert record.exc_info is None


def test_access_records_keep_their_fields_and_lose_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/visits/7/join?t={JOIN_TOKEN}", "1.1", 200), None)
    assert RedactFilter().filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s",
                           use_colors=False).format(record)
    assert line == "127.0.0.1:5000 GET /visits/7/join?[redacted] HTTP/1.1 200 OK"


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Put logging back as it was (dictConfig replaces the root logger's handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level
              for name in ("mendwell", "sqlalchemy", "uvicorn", "uvicorn.error",
                           "uvicorn.access")}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def test_every_handler_of_serve_redacts(logging_restored: None) -> None:
    config = uvicorn_log_config()
    assert config["disable_existing_loggers"] is False
    for handler in config["handlers"].values():
        assert handler["filters"] == ["redact"]
    assert config["root"]["handlers"] == ["default"]
    logging.config.dictConfig(config)
    for name in ("uvicorn.access", "uvicorn", ""):
        for handler in logging.getLogger(name).handlers:
            assert any(isinstance(f, RedactFilter) for f in handler.filters), name
    # Our loggers at INFO; SQLAlchemy above it, where it would log every statement.
    assert logging.getLogger("mendwell.outbox").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING


def test_the_engine_hides_parameters() -> None:
    for url in ("sqlite+aiosqlite:///:memory:",
                "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"):
        assert create_engine(url).sync_engine.hide_parameters, url


# --- a database error through the app -------------------------------------------------


class Capture(logging.Handler):
    def __init__(self, *, redacting: bool) -> None:
        super().__init__()
        if redacting:
            self.addFilter(RedactFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(message)s").format(record))


def test_a_database_error_logs_no_clinical_text(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    """The database refuses a note save it was never meant to refuse (as if a constraint
    were added under the running app): the 500's trace names the error and the
    statement, never the note's text."""
    postgres = services.engine.dialect.name == "postgresql"
    refuse = ["ALTER TABLE visit_notes ADD CONSTRAINT ck_log_test CHECK (version < 1)"] \
        if postgres else ["CREATE TRIGGER log_test BEFORE UPDATE ON visit_notes "
                          "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"]
    allow = ["ALTER TABLE visit_notes DROP CONSTRAINT IF EXISTS ck_log_test"] if postgres \
        else ["DROP TRIGGER IF EXISTS log_test"]

    async def execute(statements: list[str]) -> None:
        async with services.engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))

    logger = logging.getLogger("mendwell")
    raw, redacted = Capture(redacting=False), Capture(redacting=True)
    logger.addHandler(raw)      # first: sees the record as it was made
    logger.addHandler(redacted)
    run(execute, refuse)
    try:
        sign_in(clinic.prescriber)
        # First in the note's JSON: PostgreSQL cuts each value it quotes at 64 bytes.
        history = f"{CLINICAL_MARKER}: asked Taylor Rivera about the sertraline"
        with pytest.raises(IntegrityError):  # the TestClient re-raises what was a 500
            client.put(f"/api/v1/visits/{clinic.visit_id}/note",
                       json={"version": 0, "sections": {"interval_history": history}})
    finally:
        logger.removeHandler(raw)
        logger.removeHandler(redacted)
        run(execute, allow)
    [before], [after] = raw.lines, redacted.lines
    assert "unhandled error on PUT" in after and "IntegrityError" in after
    assert "[SQL: UPDATE visit_notes" in after
    # SQLAlchemy never had the parameters to print (hide_parameters on the engine) ...
    assert "[SQL parameters hidden due to hide_parameters=True]" in before
    if postgres:
        # ... but PostgreSQL's own message quotes the failing row: the filter takes it.
        assert CLINICAL_MARKER in before
        assert "DETAIL: [redacted]" in after
    assert scan(after) == []


# --- the session's scanner ------------------------------------------------------------


@pytest.mark.parametrize("planted", [
    f"login failed for {PASSWORD}",
    f"saving the note failed: {CLINICAL_MARKER}",
    "contact Taylor Rivera at home",
    "patient2@clinic.test signed in",
    "callback (617) 555-0134",
    "callback +1 617-555-0100",
    f"joined with {JOIN_TOKEN}",
    f"guest link {GUEST_TOKEN}",
], ids=["password", "clinical marker", "contact name", "email", "phone (US spelling)",
        "phone (E.164 spelling)", "join token", "guest token"])  # the join token holds a
# timestamp: an id made from it would differ between pytest-xdist workers
def test_the_scanner_finds_what_was_planted(planted: str) -> None:
    assert scan(planted) != []


@pytest.mark.parametrize("line", [
    "unhandled error on PUT /api/v1/visits/7/note",
    "put back 2 participant(s) of room 7 after a Redis outage",
    "GET /visits/7/join?[redacted] HTTP/1.1",
    "token_hash 3f2a9c0d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19",
    "test_an_expired_or_revoked_invitation_or_an_ended_visit_gets_400",
    "at 2026-12-04T10:00:00+00:00 (unix 1761755501234), port 61755",
    "[SQL: SELECT visits.id FROM visits WHERE visits.id = $1::INTEGER]",
])
def test_the_scanner_lets_ordinary_lines_pass(line: str) -> None:
    assert scan(line) == []


def test_a_planted_record_fails_the_scan_after_redaction() -> None:
    scanner = LogScanner()
    # Straight to the handler: the session's own scanner must not see the plant.
    scanner.handle(_record("a note was %s", (f"Taylor Rivera, {CLINICAL_MARKER}",)))
    scanner.handle(_record("signed in as %s", ("pat@clinic.test",)))  # redacted: passes
    assert {(f.logger, f.what) for f in scanner.findings} == {
        ("mendwell", "secret 'Taylor Rivera'"), ("mendwell", f"secret {CLINICAL_MARKER!r}")}
    assert scanner.records == 2


def test_the_session_scanner_is_on_the_root_logger_and_comes_back() -> None:
    conftest = sys.modules["tests.conftest"]
    session_scan: SessionScan = conftest.LOG_SCAN
    root = logging.getLogger()
    assert session_scan.handler in root.handlers
    root.removeHandler(session_scan.handler)
    session_scan.ensure()
    assert session_scan.handler in root.handlers
    assert logging.getLogger("mendwell").getEffectiveLevel() == logging.INFO


def test_a_server_process_output_is_scanned_line_by_line() -> None:
    # A scanner of its own: the session's must not see the plant.
    scan_only = SessionScan()
    scan_only.scan_output("mendwell serve (server-1.log)",
                          "Demo clinic ready. Sign in with any of:\n"
                          "  admin@demo.test          (admin)\n"
                          "INFO:     127.0.0.1:5 - \"GET /healthz HTTP/1.1\" 200\n"
                          "INFO:     signed in as admin@demo.test\n"
                          f"WARNING  a note said {CLINICAL_MARKER}\n")
    # The demo banner lists the demo accounts on purpose; anywhere else an address is
    # a finding.
    assert [(f.logger, f.what) for f in scan_only.handler.findings] == [
        ("mendwell serve (server-1.log)", "email"),
        ("mendwell serve (server-1.log)", f"secret {CLINICAL_MARKER!r}")]
