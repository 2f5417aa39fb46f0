"""Free text that a safety rule relies on, and text that cannot be stored.

CLINICAL.md, "Safety workflow invariants" 6: required free text (a resolution note, a
reason, the safety assessment) must hold at least 10 letters. Spaces, punctuation,
digits and invisible characters (zero-width spaces, joiners, marks) do not count, so
"." or "\u200b" can never stand in for a clinician's words.

Text that no database can hold faithfully (a lone UTF-16 surrogate, NUL) is refused
where it enters (``server.http``), never stored half-way.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Final

from server.errors import ValidationFailed

MIN_LETTERS: Final = 10
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Searched by the regular expression engine rather than a Python loop: the door runs it on
# every string of every request body, and pages run ``readable`` on every printed value.
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def letters(text: str) -> int:
    """How many letters (Unicode category L*) the text holds."""
    return sum(1 for char in text if unicodedata.category(char).startswith("L"))


def require_letters(text: str | None, field: str, *, what: str,
                    minimum: int = MIN_LETTERS) -> str:
    """The text, stripped, or 422 naming ``field`` when it holds fewer letters than
    ``minimum``. ``what`` says in words what is missing ("the resolution note")."""
    stripped = (text or "").strip()
    if letters(stripped) < minimum:
        raise ValidationFailed(
            f"Write {what} in words: at least {minimum} letters (spaces, punctuation and "
            "numbers do not count).", code="text_too_short", field=field,
            extra={"min_letters": minimum})
    return stripped


def unstorable_at(text: str) -> int | None:
    """The index of the first character that cannot be stored (a lone surrogate, which
    has no UTF-8 form, or NUL, which PostgreSQL text refuses), or None."""
    found = _UNSTORABLE.search(text)
    return found.start() if found else None


def readable(text: str) -> str:
    """Text for output: a lone surrogate stored before the door was shut becomes U+FFFD,
    so one bad character never makes a record unreadable."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


def readable_data(value: Any) -> Any:
    """Decoded JSON with every string, keys included, passed through ``readable``, and
    every NaN or infinity (which JSON cannot carry, though SQLite kept what an old
    version let in) as None: for output of a stored document that cannot be encoded as
    it is. Walks with an explicit stack, so no stored nesting can exhaust Python's."""
    stack: list[tuple[Any, dict[Any, Any] | list[Any]]] = []
    # Each container is copied once: shared parts stay shared, and a cycle stays a cycle
    # (for json.dumps to report) instead of being walked for ever.
    copies: dict[int, dict[Any, Any] | list[Any]] = {}

    def copy(item: Any) -> Any:
        if isinstance(item, str):
            return readable(item)
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict | list | tuple):
            if id(item) in copies:
                return copies[id(item)]
            fresh: dict[Any, Any] | list[Any] = {} if isinstance(item, dict) else []
            copies[id(item)] = fresh
            stack.append((item, fresh))
            return fresh
        return item

    result = copy(value)
    while stack:
        source, target = stack.pop()
        if isinstance(target, dict):
            for key, item in source.items():
                target[readable(key) if isinstance(key, str) else key] = copy(item)
        else:
            target.extend(copy(item) for item in source)
    return result
