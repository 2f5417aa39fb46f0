"""Which of Mendwell's data are substance use disorder records under 42 CFR Part 2.

The rules are reviewed data (``part2_rules.toml`` beside this module); this module reads
and validates them once, and answers one question for every piece of data that may
leave the program: which Part 2 category, if any, is it in? The disclosure step
(``server.disclosures``) asks it for each resource it is about to hand out and leaves out
what no consent covers.

Which medications are Part 2 is not in the rules file: it is the medication catalogue's
``part2`` flag (``medication_catalogue.toml``, server.medication_catalogue), the one list
of medication names, matched as the catalogue matches (whole words, generic or brand).
The rules file names the category those medications are in (``catalogue_medications``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from server.medication_catalogue import Catalogue, catalogue

RULES_PATH = Path(__file__).with_name("part2_rules.toml")

Category = Literal["sud_measures", "sud_checkin", "moud", "sud_counseling_notes"]
CATEGORIES: tuple[Category, ...] = ("sud_measures", "sud_checkin", "moud",
                                    "sud_counseling_notes")

# HL7 v3 confidentiality and sensitivity codes for a Part 2 resource's meta.security:
# restricted (R), the 42 CFR Part 2 policy (42CFRPart2) and "substance abuse" (ETH), as
# in the HL7 DS4P implementation guide.
SECURITY_LABELS: tuple[dict[str, str], ...] = (
    {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R",
     "display": "restricted"},
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "42CFRPart2",
     "display": "42 CFR Part2"},
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH",
     "display": "substance abuse information sensitivity"},
)

# The obligation that goes with it: no redisclosure without the patient's consent.
NO_REDISCLOSURE: dict[str, str] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NORDSCLCD",
    "display": "no redisclosure without consent directive"}

# 42 CFR 2.32(a)(1), the notice that goes with every disclosure made with the patient's
# consent (the rule allows this statement or the shorter one of 2.32(a)(2)).
NOTICE = (
    "This record which has been disclosed to you is protected by federal confidentiality "
    "rules (42 CFR part 2). These rules prohibit you from using or disclosing this record, "
    "or testimony that describes the information contained in this record, in any civil, "
    "criminal, administrative, or legislative proceedings by any Federal, State, or local "
    "authority, against the patient, unless authorized by the consent of the patient, "
    "except as provided at 42 CFR 2.12(c)(5) or as authorized by a court in accordance "
    "with 42 CFR 2.64 or 2.65. In addition, the federal rules prohibit you from making any "
    "further disclosure of this record unless authorized by the consent of the patient, "
    "or unless otherwise expressly permitted by 42 CFR part 2. A general authorization "
    "for the release of medical or other information is NOT sufficient to meet the "
    "required elements of written consent to further use or redisclose this record "
    "(see 42 CFR 2.31). The federal rules restrict any use of the information to "
    "investigate or prosecute with regard to a crime any patient with a substance use "
    "disorder, except as provided at 42 CFR 2.12(c)(5) and 2.66."
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CategoryRule(_Strict):
    label: str = Field(min_length=1)
    instruments: tuple[str, ...] = ()
    checkin_sections: tuple[str, ...] = ()
    # The medications the catalogue marks ``part2`` are in this category.
    catalogue_medications: bool = False
    note_kinds: tuple[str, ...] = ()
    separate_consent: bool = False


class Part2Rules(_Strict):
    form_version: int = Field(ge=1)
    retention_years: int = Field(ge=3)  # 42 CFR 2.24 / 2.25: at least 3 years
    categories: dict[Category, CategoryRule]
    # Which medications are Part 2: the catalogue's ``part2`` (given by ``load_rules``).
    _catalogue: Catalogue = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _no_medication_names(cls, data: object) -> object:
        categories = data.get("categories") if isinstance(data, dict) else None
        for name, rule in (categories.items() if isinstance(categories, dict) else ()):
            if isinstance(rule, dict) and "medications" in rule:
                raise ValueError(f"categories.{name}.medications: which medications are "
                                 "Part 2 is the medication catalogue's `part2` "
                                 "(server/medication_catalogue.toml)")
        return data

    @model_validator(mode="after")
    def _every_category(self) -> Part2Rules:
        missing = set(CATEGORIES) - set(self.categories)
        if missing:
            raise ValueError(f"categories missing: {', '.join(sorted(missing))}")
        # Exactly one category holds the catalogue's Part 2 medications: with none they
        # would be in no category and leave the program unconsented.
        holding = [n for n, rule in self.categories.items() if rule.catalogue_medications]
        if len(holding) != 1:
            raise ValueError("exactly one category has catalogue_medications = true "
                             f"(found: {', '.join(holding) or 'none'})")
        return self

    def model_post_init(self, context: object) -> None:
        if isinstance(context, dict):
            self._catalogue = context["catalogue"]

    def label(self, category: Category) -> str:
        return self.categories[category].label

    def of_instrument(self, instrument: str) -> Category | None:
        return self._find(lambda rule: instrument in rule.instruments)

    def of_checkin_section(self, section: str) -> Category | None:
        return self._find(lambda rule: section in rule.checkin_sections)

    def of_medication(self, name: str) -> Category | None:
        """The category of a medication as written, when the catalogue marks any
        medication it names ``part2``."""
        if not self._catalogue.is_part2(name):
            return None
        return self._find(lambda rule: rule.catalogue_medications)

    def of_note_kind(self, kind: str) -> Category | None:
        return self._find(lambda rule: kind in rule.note_kinds)

    def needs_own_consent(self, category: Category) -> bool:
        return self.categories[category].separate_consent

    def _find(self, test: Callable[[CategoryRule], bool]) -> Category | None:
        for name, rule in self.categories.items():
            if test(rule):
                return name
        return None


def load_rules(path: Path, known: Catalogue | None = None) -> Part2Rules:
    """The rules at ``path``, their medications from the medication catalogue (``known``,
    or the process's)."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    try:
        return Part2Rules.model_validate(data, context={"catalogue": known or catalogue()})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@cache
def rules() -> Part2Rules:
    # Read once per process (server.app loads it at start, so a bad file stops the start);
    # the model is frozen, so sharing it is safe.
    return load_rules(RULES_PATH)
