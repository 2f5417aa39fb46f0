"""Every log record of the test session, scanned for what must never be logged.

``LogScanner`` is a logging handler that ``tests/conftest.py`` puts on the root logger
for the whole session, with ``server.logs.RedactFilter`` on it as on every handler of
``mendwell serve``: so what it sees is what a deployment's log would hold. At the end of
the session any finding fails the run, naming the logger and the finding.

What it looks for, chosen so that no legitimate line can match: the tests' passwords
and secret keys, text that only tests' clinical bodies hold (an emergency contact's name,
an address, a drug in a note, ``CLINICAL_MARKER``), the test clinics' email addresses,
the tests' phone numbers in any spelling, and tokens by their exact shape (a signed
itsdangerous token: session cookies and join links; a 43-character random one: guest
links, CSRF tokens).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from server.logs import RedactFilter
from tests.clinic import PASSWORD

# Put in test bodies (notes, answers, escalation text) that exercise logging paths: a
# word no log line could hold unless clinical text leaked into it.
CLINICAL_MARKER: Final = "Quillwort-marker"

SECRETS: Final[tuple[str, ...]] = (
    PASSWORD,                                   # tests/clinic.py, every test person
    "browser-demo-password-1",                  # tests/browser_support.py
    "escalation-demo-password-1",               # tests/test_browser_escalations.py
    "my own new password",                      # tests/test_join_links.py
    "test-secret-key-that-is-long-enough-for-signing",        # tests/conftest.py
    "browser-test-secret-key-that-is-long-enough-0123456789",  # browser_support.py
    CLINICAL_MARKER,
    "Taylor Rivera",                            # emergency contact, tests/checkin_bodies.py
    "12 Elm Street",                            # the patient's location in many tests
    "sertraline",                               # note plans and medication rows
    "Ana Interpreter",                          # a guest's name
)

PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@(?:clinic|demo|family|interpreters|x|b)\.test\b")),
    # The tests' numbers: 617 and 207 555-01xx in any spelling, and one London number.
    ("phone", re.compile(r"(?<!\d)(?:\+?1[ .-]?)?\(?(?:617|207)\)?[ .-]?555[ .-]?01\d\d(?!\d)")),
    ("phone", re.compile(r"(?<!\d)(?:\+?44[ .-]?)?\(?0?20\)?[ .-]?7946[ .-]?0958(?!\d)")),
    # itsdangerous: [.]payload.timestamp.signature (HMAC-SHA1, 27 characters).
    ("signed token", re.compile(
        r"(?<![A-Za-z0-9_.-])\.?[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}"
        r"(?![A-Za-z0-9_-])")),
    # secrets.token_urlsafe(32): 43 characters; random ones hold upper and lower case
    # letters and digits (identifiers and hex digests do not hold all three).
    ("random token", re.compile(
        r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]{0,42}[A-Z])(?=[A-Za-z0-9_-]{0,42}[a-z])"
        r"(?=[A-Za-z0-9_-]{0,42}\d)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")),
)


DEMO_BANNER: Final = re.compile(
    r"^  (?:[a-z0-9]+@demo\.test +\((?:admin|prescriber|coordinator|patient)\)"
    r"|on call: coordinator@demo\.test until \S+ \(the on-call rota, /admin/on-call\))$")


@dataclass(frozen=True)
class Finding:
    logger: str
    what: str
    line: str

    def __str__(self) -> str:
        return f"{self.logger}: {self.what} in {self.line[:200]!r}"


def scan(text: str) -> list[str]:
    """What ``text`` holds that no log may: the names of the findings."""
    found = [f"secret {secret!r}" for secret in SECRETS if secret in text]
    found += [name for name, pattern in PATTERNS if pattern.search(text)]
    return found


class LogScanner(logging.Handler):
    """Collects findings from every record it handles (after redaction)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RedactFilter())
        self.setFormatter(logging.Formatter("%(message)s"))
        self.findings: list[Finding] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = self.format(record)
        for what in scan(text):
            line = next((ln for ln in text.splitlines() if scan(ln)), text)
            self.findings.append(Finding(record.name, what, line))


# Our own loggers are read at INFO in production (server.logs.uvicorn_log_config);
# the session reads them at that level too, so their INFO lines are scanned.
OUR_LOGGERS: Final = ("mendwell",)


class SessionScan:
    """The scanner on the root logger for a session: ``start``, ``ensure`` (put it back if
    a test reconfigured logging), ``finish`` (the findings)."""

    def __init__(self) -> None:
        self.handler = LogScanner()
        self.levels: dict[str, int] = {}

    def start(self) -> None:
        for name in OUR_LOGGERS:
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            logger.setLevel(logging.INFO)
        self.ensure()

    def ensure(self) -> None:
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)
        for name in OUR_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)

    def scan_output(self, source: str, text: str) -> None:
        """Scan what a ``mendwell serve`` started by a test wrote (its log file): the
        same redaction runs there (``server.logs``), so the same findings apply. The
        demo's start-up banner, which lists the demo accounts for a person to sign in
        with (``mendwell serve --demo``), is the one place their addresses belong."""
        for line in text.splitlines():
            if DEMO_BANNER.match(line):
                continue
            for what in scan(line):
                self.handler.findings.append(Finding(source, what, line))

    def finish(self) -> list[Finding]:
        logging.getLogger().removeHandler(self.handler)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        return self.handler.findings


# The session's scanner: tests/conftest.py starts and finishes it; servers that tests
# start as processes (tests/browser_support.py) hand it their output.
LOG_SCAN: Final = SessionScan()
