"""Which medications on a patient's list are psychotropics: what FIBSER asks about.

The list is generic names by class (and the common brand names patients and notes use),
matched as a whole word of the medication's name, as the Part 2 rules match MOUD. A drug
not listed here is not asked about; adding one is a reviewed change of this table. MOUD
(buprenorphine, methadone, naltrexone) is included: its side effects are a reason to
stop as much as any antidepressant's (docs/clinical.md, "What it costs").
"""

from __future__ import annotations

import re
from typing import Final

CLASSES: Final[dict[str, tuple[str, ...]]] = {
    "antidepressant": (
        "fluoxetine", "sertraline", "paroxetine", "citalopram", "escitalopram",
        "fluvoxamine", "venlafaxine", "desvenlafaxine", "duloxetine", "levomilnacipran",
        "bupropion", "mirtazapine", "trazodone", "nefazodone", "vilazodone", "vortioxetine",
        "amitriptyline", "nortriptyline", "imipramine", "desipramine", "clomipramine",
        "doxepin", "phenelzine", "tranylcypromine", "selegiline", "esketamine",
        "zuranolone", "prozac", "zoloft", "paxil", "celexa", "lexapro", "effexor",
        "pristiq", "cymbalta", "wellbutrin", "remeron", "trintellix", "spravato"),
    "antipsychotic": (
        "aripiprazole", "asenapine", "brexpiprazole", "cariprazine", "clozapine",
        "haloperidol", "iloperidone", "lurasidone", "olanzapine", "paliperidone",
        "quetiapine", "risperidone", "ziprasidone", "lumateperone", "chlorpromazine",
        "fluphenazine", "perphenazine", "xanomeline", "abilify", "vraylar", "rexulti",
        "latuda", "zyprexa", "seroquel", "risperdal", "invega", "geodon", "caplyta",
        "clozaril"),
    "mood_stabilizer": (
        "lithium", "valproate", "divalproex", "valproic", "carbamazepine", "oxcarbazepine",
        "lamotrigine", "depakote", "tegretol", "lamictal"),
    "anxiolytic_hypnotic": (
        "alprazolam", "clonazepam", "diazepam", "lorazepam", "chlordiazepoxide",
        "temazepam", "buspirone", "hydroxyzine", "zolpidem", "eszopiclone", "zaleplon",
        "suvorexant", "lemborexant", "daridorexant", "xanax", "klonopin", "valium",
        "ativan", "ambien"),
    "stimulant_adhd": (
        "methylphenidate", "dexmethylphenidate", "amphetamine", "dextroamphetamine",
        "lisdexamfetamine", "atomoxetine", "viloxazine", "guanfacine", "clonidine",
        "modafinil", "armodafinil", "adderall", "ritalin", "concerta", "vyvanse",
        "focalin", "strattera"),
    "addiction": (
        "buprenorphine", "methadone", "naltrexone", "acamprosate", "disulfiram",
        "varenicline", "suboxone", "subutex", "zubsolv", "sublocade", "brixadi",
        "methadose", "dolophine", "vivitrol", "revia"),
    "other": ("prazosin", "propranolol", "gabapentin", "pregabalin", "topiramate"),
}

_NAMES: Final = frozenset(name for names in CLASSES.values() for name in names)


def is_psychotropic(drug: str) -> bool:
    """Whether a medication's name (as on the list: "Sertraline 50 mg", "Adderall XR")
    names a psychotropic."""
    return any(word in _NAMES for word in re.findall(r"[a-z]+", drug.lower()))
