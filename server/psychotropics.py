"""Which medications are psychotropics, from the one medication catalogue
(``medication_catalogue.toml``, server.medication_catalogue): FIBSER is asked at check-in
when the patient takes any of them (``is_psychotropic``), and a start, switch or dose
change of one whose class opens trials opens a medication trial (``opens_trial``,
server/trials.py).

Names are generic and common brand names, matched as whole words of the medication's
name as written on the list ("Sertraline 50 mg", "Adderall XR"). The catalogue is read
and validated once; a broken file fails at start.
"""

from __future__ import annotations

from server.medication_catalogue import Catalogue, catalogue


def psychotropics() -> Catalogue:
    """The catalogue the answers come from (its ``classes`` and ``class_of``)."""
    return catalogue()


def is_psychotropic(drug: str, within: Catalogue | None = None) -> bool:
    """Whether a medication's name names a psychotropic (FIBSER asks about it).
    ``within``: another catalogue than the process's (tests)."""
    return (within or catalogue()).class_of(drug) is not None


def opens_trial(drug: str, within: Catalogue | None = None) -> bool:
    """Whether a start, switch or dose change of this medication opens a trial."""
    found = within or catalogue()
    name = found.class_of(drug)
    return name is not None and found.classes[name].opens_trial
