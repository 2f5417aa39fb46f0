"""The validated self-report instruments a check-in may contain.

One module per instrument holds its definition, the validation of its raw JSON answers
and its scoring, so a clinic can read exactly what is computed. The rules, with their
sources, are in ``docs/clinical.md``.
"""

from __future__ import annotations

from typing import Final, get_args

from server.instruments import asrm, auditc, bam, cssrs, fibser, gad7, phq9
from server.instruments.base import Instrument, InstrumentId, Item, Option

__all__ = ["INSTRUMENTS", "Instrument", "InstrumentId", "Item", "Option",
           "instrument_definitions"]

# The order the check-in form presents them and the API lists them. Keyed by ``str``: it
# is looked up by the names stored with results and sent in bodies.
INSTRUMENTS: Final[dict[str, Instrument]] = {
    definition.id: definition
    for definition in (
        phq9.DEFINITION,
        gad7.DEFINITION,
        cssrs.DEFINITION,
        auditc.DEFINITION,
        asrm.DEFINITION,
        fibser.DEFINITION,
        bam.DEFINITION,
    )
}

assert tuple(INSTRUMENTS) == get_args(InstrumentId)


def instrument_definitions() -> list[dict[str, object]]:
    """The body of ``GET /api/v1/instruments`` under its ``instruments`` key."""
    return [instrument.to_json() for instrument in INSTRUMENTS.values()]
