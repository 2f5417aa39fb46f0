"""Check-in bodies for tests."""

from __future__ import annotations

from typing import Any


def checkin_body(
    *,
    phq9: list[int] | None = None,
    gad7: list[int] | None = None,
    cssrs: dict[str, Any] | None = None,
    auditc: list[int | None] | None = None,
    asrm: list[int] | None = None,
    sex: str | None = "female",
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "phq9": {"answers": phq9 if phq9 is not None else [1, 1, 1, 1, 0, 0, 0, 0, 0],
                 "difficulty": 1},
        "gad7": {"answers": gad7 if gad7 is not None else [1, 1, 0, 0, 0, 0, 0]},
        "auditc": {"answers": auditc if auditc is not None else [1, 0, 0]},
        "asrm": {"answers": asrm if asrm is not None else [0, 0, 1, 0, 0]},
    }
    if cssrs is not None:
        responses["cssrs"] = {"answers": cssrs}
    return {
        "responses": responses,
        "sex": sex,
        "location": {"address": "12 Elm Street, Springfield", "state": "MA"},
        "callback_phone": "+1 617 555 0100",
        "emergency_contact": {"name": "Taylor Rivera", "phone": "+1 617 555 0101"},
        "side_effects": [{"effect": "sedation", "severity": "mild"}],
        "missed_doses": {"days_missed": 1, "reasons": ["forgot"]},
        "sleep": {"hours": 6.5, "quality": "fair"},
        "substance_use": {"cravings": 2, "used_since_last_visit": False},
    }


HIGH_RISK_CSSRS = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": True, "q6": False,
                   "q6_recent": None}
