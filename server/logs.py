"""Log hygiene: no log line carries a token, a credential or clinical content.

What can reach a log: our own messages (ids, counts, state names), access log lines, and
the traces of errors. The traces are the danger: a database error's text holds the
statement's parameters (SQLAlchemy's ``[parameters: ...]``, hidden at the source by
``hide_parameters=True`` on the engine, ``server.db``), and the driver's own exception,
chained below it, quotes row values: asyncpg's ``DETAIL:  Key (email)=(...)``, ``Failing
row contains (...)``, ``invalid input for query argument $2: '...'``, PostgreSQL's
``invalid input syntax for type integer: "..."``; pydantic quotes ``input_value=...``.
Join links carry their token in the query string (``/visits/7/join?t=...``).

``RedactFilter`` rewrites every record a handler it sits on emits (message, arguments,
exception trace, stack) with ``redact``: the structures above lose their values, and
emails, phone numbers, signed tokens, URL credentials and query strings are replaced
wherever they appear. ``uvicorn_log_config`` puts it on every handler of ``mendwell
serve``, the root logger's included. Free text (a note, an answer) has no shape to
recognise: it is kept out by removing the places values are quoted, which is why the
rules are structural first and pattern-based second.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any, Final

REDACTED: Final = "[redacted]"

# (pattern, replacement), applied in order. Each is anchored on a shape that only values
# take, so a legitimate line loses at most a word or two.
_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # SQLAlchemy statement parameters in an error ("[parameters: ('a@b', 7)]"), and in SQL
    # echo lines ("[generated in 0.0003s] ('a@b', 7)", "[cached since 2.1s ago] ...").
    (re.compile(r"^\[parameters: .*$", re.M), f"[parameters: {REDACTED}]"),
    (re.compile(r"^(\[(?:generated in|cached since|raw sql|no key|dialect|caching)[^\]\n]*\])"
                r" .+$", re.M), rf"\1 {REDACTED}"),
    # PostgreSQL's DETAIL and CONTEXT lines quote row and key values
    # ("Key (email)=(x@y) already exists.", "Failing row contains (...)").
    # A value may hold line breaks: the line runs to the next blank line (the end of
    # that exception in a trace) or the statement SQLAlchemy appends.
    (re.compile(r"^([ \t]*(?:DETAIL|CONTEXT)):.*?(?=\n[ \t]*\n|\n\[SQL: |\Z)", re.M | re.S),
     rf"\1: {REDACTED}"),
    # asyncpg: "invalid input for query argument $2: 'text...' (value out of range)";
    # the reason in brackets stays, the value goes.
    (re.compile(r"(invalid input for query argument \$\d+:) .*?( \([^()\n]*\))?$", re.M),
     rf"\1 {REDACTED}\2"),
    # PostgreSQL quoting an input value: 'syntax for type integer: "abc"',
    # 'value "99999999999" is out of range', 'for enum visit_status: "x"'.
    # Names of constraints, relations and columns follow other words and stay.
    (re.compile(r'(: |\bvalue )"(?:[^"\\]|\\.)*"'), rf'\1"{REDACTED}"'),
    # pydantic: "[type=string_type, input_value='the text', input_type=str]".
    (re.compile(r"input_value=.*?(?=, input_type=|\]$|$)", re.M), f"input_value={REDACTED}"),
    # Credentials in URLs (redis://:password@host, postgresql://user:password@host).
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), rf"\1{REDACTED}@"),
    # Query strings (join and guest tokens, filters naming patients): path kept.
    (re.compile(r"((?:https?://[^/\s?#\"']*)?/[^\s?#\"']*)\?[^\s\"'#]+"), rf"\1?{REDACTED}"),
    # Email addresses.
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
     "[email]"),
    # Phone numbers in E.164, as they are stored.
    (re.compile(r"(?<![\w+])\+\d{8,15}(?!\d)"), "[phone]"),
    # Signed tokens (itsdangerous: [.]payload.timestamp.signature, the dot first when
    # compressed; session cookies, join links), and random ones (secrets.token_urlsafe:
    # guest links, CSRF): a long run of URL-safe characters holding letters and digits.
    (re.compile(r"(?<![A-Za-z0-9_.-])\.?[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}"
                r"(?![A-Za-z0-9_-])"), "[token]"),
    (re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])"
                r"[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])"), "[token]"),
)


def redact(text: str) -> str:
    """``text`` with every value the rules above recognise replaced."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


_TRACE_FORMATTER = logging.Formatter()


class RedactFilter(logging.Filter):
    """Redacts a record in place before its handler formats it (``redact``).

    The message is formatted once and stored with no arguments; the exception trace is
    formatted and redacted into ``exc_text`` and ``exc_info`` dropped, so that no
    formatter down the line can render the raw exception again. uvicorn's access records
    keep their arguments (its formatter reads them one by one); their path loses its
    query string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) >= 3:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = f"{record.msg!r} {args!r}"
            record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = _TRACE_FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging, with ``RedactFilter`` on every handler, and the root logger
    writing through the same handler as uvicorn: our own loggers (``mendwell.*``) at
    INFO, everything else (SQLAlchemy, aiortc, asyncpg...) at WARNING. SQLAlchemy must
    stay above INFO, where it would log every statement."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactFilter}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config["loggers"]["mendwell"] = {"level": "INFO"}
    config["loggers"]["sqlalchemy"] = {"level": "WARNING"}
    return config
