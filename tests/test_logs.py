"""Access logs keep paths, never query strings (join-link tokens)."""

from __future__ import annotations

import logging
import logging.config

from server.logs import RedactQueryFilter, uvicorn_log_config


def test_query_strings_are_redacted_from_access_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/visits/7/join?t=SECRET.TOKEN", "1.1", 200), None)
    assert RedactQueryFilter().filter(record)
    message = record.getMessage()
    assert "SECRET" not in message
    assert "/visits/7/join?[redacted]" in message


def test_uvicorn_access_handler_uses_the_filter() -> None:
    config = uvicorn_log_config()
    assert config["handlers"]["access"]["filters"] == ["redact_query"]
    logging.config.dictConfig(config)
    handler = logging.getLogger("uvicorn.access").handlers[0]
    assert any(isinstance(f, RedactQueryFilter) for f in handler.filters)
