"""The JSON response every part of the app sends: it can always be encoded.

Text an old version stored before ``server.http`` refused it at the door (a lone
surrogate, which has no UTF-8 form; a NaN, which SQLite's JSON columns kept) made
Starlette's ``JSONResponse`` raise while encoding, so every later read of that check-in,
note or escalation was a 500: one bad character locked the care team out of a record.
"""

from __future__ import annotations

import json
from typing import Any

from starlette import responses

from server.freetext import readable_data


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # UnicodeEncodeError, or NaN refused by allow_nan=False
            # U+FFFD rather than a "\ud800" escape: a browser would send the escape back
            # on its next save (the note panel's autosave) and be refused at the door for
            # ever; U+FFFD goes back in and the record heals.
            return json.dumps(readable_data(content), ensure_ascii=False, allow_nan=False,
                              indent=None, separators=(",", ":")).encode("utf-8")
