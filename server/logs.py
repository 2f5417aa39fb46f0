"""Log hygiene: what uvicorn writes must not carry tokens or clinical content.

Join links carry their token in the query string (``/visits/7/join?t=...``) and some
API queries name patients; access log lines keep the path and drop the query.
"""

from __future__ import annotations

import copy
import logging
from typing import Any


class RedactQueryFilter(logging.Filter):
    """Strips the query string from uvicorn access log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0] + "?[redacted]", *args[3:])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQueryFilter}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    return config
