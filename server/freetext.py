"""Free text that a safety rule relies on, and text that cannot be stored.

CLINICAL.md, "Safety workflow invariants" 6: required free text (a resolution note, a
reason, the safety assessment) must hold at least 10 letters. Spaces, punctuation,
digits and invisible characters (zero-width spaces, joiners, marks) do not count, so
"." or "\u200b" can never stand in for a clinician's words.

Text that no database can hold faithfully (a lone UTF-16 surrogate, NUL) is refused
where it enters (``server.http``), never stored half-way.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from server.errors import ValidationFailed

MIN_LETTERS: Final = 10
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


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
    for index, char in enumerate(text):
        code = ord(char)
        if code == 0 or 0xD800 <= code <= 0xDFFF:
            return index
    return None


def readable(text: str) -> str:
    """Text for output: a lone surrogate stored before the door was shut becomes U+FFFD,
    so one bad character never makes a record unreadable."""
    if unstorable_at(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)
