"""The reviewed triage rules, loaded from ``triage_rules.toml`` beside this module.

The data lives in TOML, not code, so a clinical reviewer can read and sign off every
threshold and reason-to-level mapping in one place; ``server.triage.TriageRules``
validates it, so a broken file fails at start-up instead of mis-triaging a patient.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from server.triage import TriageRules

DEFAULT_RULES_PATH = Path(__file__).with_name("triage_rules.toml")


def load_rules(path: Path) -> TriageRules:
    with path.open("rb") as file:
        data = tomllib.load(file)
    try:
        return TriageRules.from_mapping(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@cache
def load_default_rules() -> TriageRules:
    # Cached: the file is read once per process; TriageRules is frozen and its reason map
    # read-only, so sharing one instance between requests is safe.
    return load_rules(DEFAULT_RULES_PATH)
