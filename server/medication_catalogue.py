"""The one reviewed catalogue of medication names (``medication_catalogue.toml`` beside
this module): each medication once, with its generic name, other generic names, brand
names, psychotropic class, DEA schedule, ``opioid_use_disorder``, ``moud`` and ``part2``
flags and lab-monitoring groups.

Its consumers read it, so one name never answers differently in two places:

- ``server.psychotropics``: whether FIBSER is asked (any class) and whether a start,
  switch or dose change opens a medication trial (the class's ``opens_trial``);
- ``server.controlled``: the DEA schedule and ``moud`` the signing gate holds a
  prescription to;
- ``server.labs``: which lab rules (``lab_rules.toml``, by group) apply to the drug;
- ``server.substance_use``: what counts as MOUD (``opioid_use_disorder``);
- ``server.part2``: which medications are 42 CFR Part 2 records (``part2``).

Matching (``Catalogue.matches``): the medication as written ("Sertraline 50 mg",
"Adderall XR", "valproic acid 250 mg") is read as its runs of letters, lower case; a
name matches where its words stand together in that order (whole words: "oxcarbazepine"
is not "carbamazepine"). A drug naming two medications gets the facts of both: the
stricter schedule (``find``), the first class in the file's class order
(``class_of``), every lab group (``lab_groups_of``).

The file is parsed and validated once per process (``catalogue()``, called at start-up
by ``server.app``): an unknown class, schedule or lab group, a name listed twice, a
name that cannot match, a ``moud`` entry outside Schedule III-V or not for opioid use
disorder, an ``opioid_use_disorder`` entry not ``part2``, a ``part2`` entry outside the
addiction class, or a class or group no medication is in stops the start, with the
entry named.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

CATALOGUE_PATH: Final = Path(__file__).with_name("medication_catalogue.toml")

Schedule = Literal["II", "III", "IV", "V"]
SCHEDULE_ORDER: Final[tuple[Schedule, ...]] = ("II", "III", "IV", "V")
# A name is lower-case words of letters, one space between: the only text the matcher
# can find (it reads a drug as its runs of letters).
_NAME: Final = re.compile(r"[a-z]+(?: [a-z]+)*")
_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")
# The class of medications for substance use disorders, where every ``part2`` entry is.
ADDICTION_CLASS: Final = "addiction"


def words_of(drug: str) -> tuple[str, ...]:
    """A medication as written, as the matcher reads it: its runs of letters, lower case
    ("Lithium300mg ER" is lithium, mg, er)."""
    return tuple(re.findall(r"[a-z]+", drug.lower()))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DrugClass(_Strict):
    """A psychotropic class: FIBSER asks about every one."""

    label: str = Field(min_length=1)
    # False for medications whose outcome PHQ-9/GAD-7 do not follow (MOUD: the BAM).
    opens_trial: bool = True


class LabGroup(_Strict):
    """Drugs that share lab-monitoring rules (``lab_rules.toml`` names the group)."""

    label: str = Field(min_length=1)


class CatalogueEntry(_Strict):
    name: str
    # Other generic names and salts the drug is written as ("valproic acid").
    other_names: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    # The psychotropic class (a key of ``classes``), or absent: not a psychotropic.
    psychotropic: str | None = None
    schedule: Schedule | None = None
    # Approved for opioid use disorder: MOUD to the substance-use track.
    opioid_use_disorder: bool = False
    # A Schedule III-V medication for opioid use disorder that 90 FR 6504 lets a
    # prescriber start by telemedicine (the signing gate's exception). Not methadone:
    # for OUD it is dispensed only by an opioid treatment program (42 CFR 8.12).
    moud: bool = False
    # Its presence on the record is a SUD record under 42 CFR Part 2 (server.part2).
    part2: bool = False
    # Lab-monitoring groups (keys of ``lab_groups``).
    labs: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.other_names, *self.brands)


class CatalogueRules(_Strict):
    """The dates and limits of the telemedicine rules (server.controlled)."""

    buprenorphine_rule_effective: date
    pdmp_unavailable_max_days_supply: int = Field(ge=1)
    moud_telemedicine_months: int = Field(ge=1)


class Catalogue(_Strict):
    catalogue_version: int = Field(ge=1)
    rules: CatalogueRules
    classes: dict[str, DrugClass] = Field(min_length=1)
    lab_groups: dict[str, LabGroup] = Field(min_length=1)
    medications: tuple[CatalogueEntry, ...] = Field(min_length=1)
    # First word of each name -> (the name's words, the entry's index), for matching.
    _index: dict[str, list[tuple[tuple[str, ...], int]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        for key in (*self.classes, *self.lab_groups):
            if not _KEY.fullmatch(key):
                raise ValueError(f"{key!r}: a key of a-z, 0-9 and _")
        listed: dict[str, str] = {}
        for entry in self.medications:
            for name in entry.names:
                if not _NAME.fullmatch(name):
                    raise ValueError(f"medication {entry.name!r}: {name!r} is not lower-case "
                                     "words of letters (the matcher could never find it)")
                if name in listed:
                    raise ValueError(f"medication {entry.name!r}: {name!r} is listed twice "
                                     f"(also under {listed[name]!r})")
                listed[name] = entry.name
            if entry.psychotropic is not None and entry.psychotropic not in self.classes:
                raise ValueError(f"medication {entry.name!r}: unknown psychotropic class "
                                 f"{entry.psychotropic!r} (classes: {', '.join(self.classes)})")
            for group in entry.labs:
                if group not in self.lab_groups:
                    raise ValueError(f"medication {entry.name!r}: unknown lab group "
                                     f"{group!r} (groups: {', '.join(self.lab_groups)})")
            if len(set(entry.labs)) != len(entry.labs):
                raise ValueError(f"medication {entry.name!r}: a lab group listed twice")
            if entry.moud and entry.schedule not in ("III", "IV", "V"):
                raise ValueError(f"medication {entry.name!r}: a MOUD entry is Schedule III-V")
            # The flags nest: the telemedicine exception is for OUD medications, and an
            # OUD medication on the record is always a Part 2 record (a missing flag
            # would let it leave the program without consent).
            if entry.moud and not entry.opioid_use_disorder:
                raise ValueError(f"medication {entry.name!r}: a MOUD entry is for "
                                 "opioid_use_disorder")
            if entry.opioid_use_disorder and not entry.part2:
                raise ValueError(f"medication {entry.name!r}: an opioid_use_disorder "
                                 "entry is part2")
            if entry.part2 and entry.psychotropic != ADDICTION_CLASS:
                raise ValueError(f"medication {entry.name!r}: a part2 entry is in the "
                                 f"{ADDICTION_CLASS!r} class")
        # A class or group no medication is in is a typing error in an entry (the
        # group's lab rules would never apply).
        for name in self.classes:
            if not any(e.psychotropic == name for e in self.medications):
                raise ValueError(f"psychotropic class {name!r}: no medication is in it")
        for name in self.lab_groups:
            if not any(name in e.labs for e in self.medications):
                raise ValueError(f"lab group {name!r}: no medication is in it")
        return self

    def model_post_init(self, context: object) -> None:
        for number, entry in enumerate(self.medications):
            for name in entry.names:
                words = tuple(name.split())
                self._index.setdefault(words[0], []).append((words, number))

    def matches(self, drug: str) -> list[CatalogueEntry]:
        """Every entry a drug as written names (whole words, generic or brand), in the
        file's order."""
        words = words_of(drug)
        found: set[int] = set()
        for start, word in enumerate(words):
            for name, number in self._index.get(word, ()):
                if words[start:start + len(name)] == name:
                    found.add(number)
        return [self.medications[number] for number in sorted(found)]

    def find(self, drug: str) -> CatalogueEntry | None:
        """The entry a drug as written names; of two, the stricter schedule, so a
        combination is held to its strictest part (server.controlled)."""
        found = self.matches(drug)
        if not found:
            return None
        return min(found, key=lambda e: SCHEDULE_ORDER.index(e.schedule)
                   if e.schedule else len(SCHEDULE_ORDER))

    def class_of(self, drug: str) -> str | None:
        """The drug's psychotropic class (of two, the first in the file's class order),
        or None: not a psychotropic (server.psychotropics)."""
        mine = {e.psychotropic for e in self.matches(drug)}
        return next((name for name in self.classes if name in mine), None)

    def is_part2(self, drug: str) -> bool:
        """Whether any medication the drug names is a 42 CFR Part 2 record (server.part2);
        a combination is if any part is."""
        return any(e.part2 for e in self.matches(drug))

    def is_for_opioid_use_disorder(self, drug: str) -> bool:
        """Whether any medication the drug names is for opioid use disorder: MOUD to the
        substance-use track (server.substance_use)."""
        return any(e.opioid_use_disorder for e in self.matches(drug))

    def lab_groups_of(self, drug: str) -> frozenset[str]:
        """Every lab-monitoring group of every medication the drug names (server.labs)."""
        return frozenset(group for e in self.matches(drug) for group in e.labs)


def _where(error: dict[str, Any], data: object) -> str:
    """A pydantic error's location, with a medication named rather than numbered."""
    loc: Sequence[int | str] = error["loc"]
    if len(loc) >= 2 and loc[0] == "medications" and isinstance(loc[1], int) \
            and isinstance(data, dict):
        entries = data.get("medications")
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) \
            else None
        name = entry.get("name") if isinstance(entry, dict) else None
        field = ".".join(str(part) for part in loc[2:])
        return f"medication {name!r}" + (f" ({field})" if field else "") \
            if name else f"medications[{loc[1]}]" + (f".{field}" if field else "")
    return ".".join(str(part) for part in loc)


def _problem(error: dict[str, Any], data: object) -> str:
    where = _where(error, data)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def load_catalogue(path: Path) -> Catalogue:
    """The catalogue at ``path``, or ValueError naming the file and each bad entry."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    try:
        return Catalogue.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem(dict(e), data) for e in error.errors())
        raise ValueError(f"{path}: {problems}") from None


@cache
def catalogue() -> Catalogue:
    # Read once per process (validated at start-up, server.app); frozen, so shared.
    return load_catalogue(CATALOGUE_PATH)
