"""Which medications are psychotropics, from the reviewed data file beside this module
(``psychotropics.toml``): FIBSER is asked at check-in when the patient takes any of them
(``is_psychotropic``), and a start, switch or dose change of one whose class opens trials
opens a medication trial (``opens_trial``, server/trials.py).

Names are generic and common brand names, matched as a whole word of the medication's
name as written on the list ("Sertraline 50 mg", "Adderall XR"), as the Part 2 rules
match MOUD. The file is read and validated once; a broken file fails at start.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PSYCHOTROPICS_PATH = Path(__file__).with_name("psychotropics.toml")


class DrugClass(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    names: tuple[str, ...] = Field(min_length=1)
    # False for medications whose outcome PHQ-9/GAD-7 do not follow (MOUD: the BAM).
    opens_trial: bool = True


class Psychotropics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    classes: dict[str, DrugClass] = Field(min_length=1)

    def class_of(self, drug: str) -> str | None:
        words = set(re.findall(r"[a-z]+", drug.lower()))
        return next((name for name, found in self.classes.items()
                     if words & set(found.names)), None)


@cache
def psychotropics() -> Psychotropics:
    with PSYCHOTROPICS_PATH.open("rb") as file:
        return Psychotropics.model_validate(tomllib.load(file))


def is_psychotropic(drug: str) -> bool:
    """Whether a medication's name names a psychotropic (FIBSER asks about it)."""
    return psychotropics().class_of(drug) is not None


def opens_trial(drug: str) -> bool:
    """Whether a start, switch or dose change of this medication opens a trial."""
    found = psychotropics().class_of(drug)
    return found is not None and psychotropics().classes[found].opens_trial
