"""The one medication catalogue (server/medication_catalogue.toml, read by
server/medication_catalogue.py): a bad file is refused naming the entry, names match as
whole words, and the three consumers (psychotropics, controlled substances, lab
monitoring) all answer from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import labs
from server.controlled import prescriptions_of
from server.medication_catalogue import CATALOGUE_PATH, catalogue, load_catalogue
from server.medications import MedicationChangeRow
from server.psychotropics import is_psychotropic, opens_trial

TEXT = CATALOGUE_PATH.read_text()


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "medication_catalogue.toml"
    path.write_text(text)
    return path


def replaced(old: str, new: str) -> str:
    assert TEXT.count(old) == 1, old
    return TEXT.replace(old, new)


# --- a bad file is refused, naming what is wrong -------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    (TEXT + '\n[[medications]]\nname = "newdrug"\npsychotropic = "antidepresant"\n',
     "medication 'newdrug': unknown psychotropic class 'antidepresant'"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nschedule = "VI"\n',
     r"medication 'newdrug' \(schedule\): Input should be 'II', 'III', 'IV' or 'V'"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nlabs = ["lithum"]\n',
     "medication 'newdrug': unknown lab group 'lithum'"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nbrands = ["xanax"]\n',
     "medication 'newdrug': 'xanax' is listed twice \\(also under 'alprazolam'\\)"),
    (TEXT + '\n[[medications]]\nname = "sertraline"\npsychotropic = "other"\n',
     "'sertraline' is listed twice"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nbrands = ["Newbrand"]\n',
     "medication 'newdrug': 'Newbrand' is not lower-case words"),
    (TEXT + '\n[[medications]]\nname = "b12"\n', "'b12' is not lower-case words"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nschedule = "II"\nmoud = true\n',
     "medication 'newdrug': a MOUD entry is Schedule III-V"),
    # Methadone as moud: the telemedicine exception for an OTP-only Schedule II drug.
    (replaced('schedule = "II"\nopioid_use_disorder = true\npart2 = true',
              'schedule = "II"\nopioid_use_disorder = true\nmoud = true\npart2 = true'),
     "medication 'methadone': a MOUD entry is Schedule III-V"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\npsychotropic = "addiction"\n'
     'schedule = "III"\nmoud = true\npart2 = true\n',
     "medication 'newdrug': a MOUD entry is for opioid_use_disorder"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\npsychotropic = "addiction"\n'
     'opioid_use_disorder = true\n',
     "medication 'newdrug': an opioid_use_disorder entry is part2"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\npart2 = true\n',
     "medication 'newdrug': a part2 entry is in the 'addiction' class"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nbrand = ["newbrand"]\n',
     r"medication 'newdrug' \(brand\): Extra inputs are not permitted"),
    (TEXT + '\n[[medications]]\nname = "newdrug"\nlabs = ["sga", "sga"]\n',
     "medication 'newdrug': a lab group listed twice"),
    (replaced('[classes.other]\nlabel = "Other psychotropic"\n',
              '[classes.other]\nlabel = "Other psychotropic"\n\n[classes.hormone]\nlabel = "H"\n'),
     "psychotropic class 'hormone': no medication is in it"),
    (replaced('[lab_groups.lithium]\nlabel = "Lithium"\n',
              '[lab_groups.lithium]\nlabel = "Lithium"\n\n[lab_groups.thyroid]\nlabel = "T"\n'),
     "lab group 'thyroid': no medication is in it"),
    (replaced("pdmp_unavailable_max_days_supply = 7", "pdmp_unavailable_max_days_supply = 0"),
     "rules.pdmp_unavailable_max_days_supply: Input should be greater than or equal to 1"),
])
def test_a_bad_catalogue_is_refused_naming_the_entry(tmp_path: Path, text: str,
                                                     message: str) -> None:
    path = written(tmp_path, text)
    with pytest.raises(ValueError, match=message) as refused:
        load_catalogue(path)
    assert str(path) in str(refused.value)


def test_the_lab_rules_and_the_catalogue_name_the_same_groups(tmp_path: Path) -> None:
    rules_text = labs.RULES_PATH.read_text()
    # A rule for a group the catalogue does not have.
    bad_rules = tmp_path / "lab_rules.toml"
    bad_rules.write_text(rules_text.replace('drug = "clozapine"', 'drug = "clozapin"', 1))
    with pytest.raises(ValueError, match="rule for clozapin: unknown drug group"):
        labs.load_rules(bad_rules)
    # Names in the rules file: the catalogue holds them now.
    bad_rules.write_text(rules_text + '\n[drugs.lithium]\nlabel = "Lithium"\n'
                         'names = ["lithium"]\n')
    with pytest.raises(ValueError, match="medication catalogue"):
        labs.load_rules(bad_rules)
    # A catalogue group that no rule covers: its drugs would be called monitored for
    # nothing.
    text = replaced('[lab_groups.lithium]\nlabel = "Lithium"\n',
                    '[lab_groups.lithium]\nlabel = "Lithium"\n\n[lab_groups.thyroid]\n'
                    'label = "Thyroid"\n')
    text += '\n[[medications]]\nname = "levothyroxine"\nlabs = ["thyroid"]\n'
    with pytest.raises(ValueError, match="lab group thyroid of the medication catalogue "
                                         "has no rule"):
        labs.load_rules(labs.RULES_PATH, load_catalogue(written(tmp_path, text)))


# --- the DEA schedules (21 CFR 1308.12-1308.15) ------------------------------------------
# A controlled medication without its schedule is never stopped by the signing gate.


@pytest.mark.parametrize(("drug", "schedule"), [
    # Schedule II: methadone and every stimulant.
    ("methadone", "II"), ("Methadose", "II"), ("Dolophine", "II"),
    ("amphetamine", "II"), ("Adderall", "II"), ("dextroamphetamine", "II"),
    ("lisdexamfetamine", "II"), ("Vyvanse", "II"), ("methylphenidate", "II"),
    ("Concerta", "II"), ("dexmethylphenidate", "II"), ("Focalin", "II"),
    ("methamphetamine", "II"), ("Desoxyn", "II"),
    # Schedule III.
    ("esketamine", "III"), ("Spravato", "III"), ("ketamine", "III"),
    ("buprenorphine", "III"), ("Sublocade", "III"),
    # Schedule IV: every benzodiazepine and Z-drug, the orexin antagonists, and more.
    ("zuranolone", "IV"), ("Zurzuvae", "IV"), ("lemborexant", "IV"), ("Dayvigo", "IV"),
    ("daridorexant", "IV"), ("Quviviq", "IV"), ("suvorexant", "IV"), ("Belsomra", "IV"),
    ("alprazolam", "IV"), ("clonazepam", "IV"), ("lorazepam", "IV"), ("diazepam", "IV"),
    ("chlordiazepoxide", "IV"), ("temazepam", "IV"), ("oxazepam", "IV"),
    ("clorazepate", "IV"), ("triazolam", "IV"), ("estazolam", "IV"), ("flurazepam", "IV"),
    ("quazepam", "IV"), ("zolpidem", "IV"), ("zaleplon", "IV"), ("eszopiclone", "IV"),
    ("phenobarbital", "IV"), ("modafinil", "IV"), ("armodafinil", "IV"),
    ("solriamfetol", "IV"), ("Sunosi", "IV"), ("carisoprodol", "IV"), ("Soma", "IV"),
    ("tramadol", "IV"), ("butorphanol", "IV"),
    # Schedule V.
    ("lacosamide", "V"), ("Vimpat", "V"), ("pregabalin", "V"), ("Lyrica", "V"),
    # Not federally controlled.
    ("naltrexone", None), ("gabapentin", None), ("atomoxetine", None),
    ("ramelteon", None), ("varenicline", None),
])
def test_each_controlled_medication_carries_its_schedule(drug: str,
                                                         schedule: str | None) -> None:
    entry = catalogue().find(drug)
    assert entry is not None, drug
    assert entry.schedule == schedule


def test_methadone_is_for_oud_but_not_the_telemedicine_moud_exception() -> None:
    methadone = catalogue().find("methadone")
    assert methadone is not None
    assert methadone.opioid_use_disorder and methadone.part2
    assert not methadone.moud
    # Only buprenorphine has 90 FR 6504's exception.
    assert [e.name for e in catalogue().medications if e.moud] == ["buprenorphine"]


def test_methamphetamine_is_a_stimulant_and_the_anticonvulsants_are_unclassed() -> None:
    assert catalogue().class_of("Desoxyn") == "adhd" and opens_trial("Desoxyn")
    for drug in ("phenobarbital", "lacosamide", "carisoprodol", "tramadol", "butorphanol"):
        assert catalogue().class_of(drug) is None and not is_psychotropic(drug)


# --- matching --------------------------------------------------------------------------


@pytest.mark.parametrize(("drug", "psychotropic", "schedule", "groups"), [
    ("Sertraline 50 mg", "antidepressant", None, set()),
    ("Adderall XR", "adhd", "II", set()),
    ("Suboxone 8 mg/2 mg film", "addiction", "III", set()),
    ("valproic acid 250 mg", "mood_stabilizer", None, {"valproate"}),
    ("Depakote ER", "mood_stabilizer", None, {"valproate"}),
    ("Lithium300mg", "mood_stabilizer", None, {"lithium"}),  # letters, not digits
    ("Oxcarbazepine", "mood_stabilizer", None, set()),       # not carbamazepine
    ("Clozapine ODT", "antipsychotic", None, {"clozapine", "sga"}),
    ("Haloperidol decanoate", "antipsychotic", None, set()),  # first generation
    ("clonazepam with methylphenidate", "anxiolytic_hypnotic", "II", set()),
    ("lithium and quetiapine", "antipsychotic", None, {"lithium", "sga"}),
    ("bupropion/naltrexone", "antidepressant", None, set()),  # the class order decides
    ("methamphetamine", "adhd", "II", set()),
    ("metformin", None, None, set()),
    ("sertralin", None, None, set()),                          # whole words only
])
def test_a_drug_as_written_matches_by_whole_words(drug: str, psychotropic: str | None,
                                                 schedule: str | None,
                                                 groups: set[str]) -> None:
    found = catalogue()
    assert found.class_of(drug) == psychotropic
    entry = found.find(drug)
    assert (entry.schedule if entry else None) == schedule
    assert found.lab_groups_of(drug) == groups


def test_a_multi_word_name_matches_only_in_its_order(tmp_path: Path) -> None:
    text = TEXT + '\n[[medications]]\nname = "newdrug"\nother_names = ["alpha beta"]\n' \
        'psychotropic = "other"\n'
    found = load_catalogue(written(tmp_path, text))
    assert found.class_of("Alpha-Beta 10 mg") == "other"
    assert found.class_of("beta alpha") is None
    assert found.class_of("alpha") is None


def test_brands_from_each_old_list_answer_for_all_three() -> None:
    """The three lists this catalogue replaced disagreed; the union won (a brand known
    to one list now answers for all three)."""
    assert is_psychotropic("Lyrica") and catalogue().find("Lyrica").schedule == "V"  # type: ignore[union-attr]
    assert opens_trial("Versacloz") and catalogue().lab_groups_of("Versacloz") == {
        "clozapine", "sga"}
    bunavail = catalogue().find("Bunavail")
    assert bunavail is not None and bunavail.moud and not opens_trial("Bunavail")
    assert is_psychotropic("Bunavail")
    assert {r.check for r in labs.rules().rules_for("Epival")} == {
        "valproate_level", "liver", "blood_count"}


# --- one file, three consumers ---------------------------------------------------------


def test_a_name_added_to_the_catalogue_answers_in_every_consumer_at_once(
        tmp_path: Path) -> None:
    drug = "Trialix 2 mg"
    start = [MedicationChangeRow(action="start", drug=drug, dose="2", days_supply=30)]
    # Not in the shipped catalogue: none of the three knows it.
    assert not is_psychotropic(drug) and not opens_trial(drug)
    assert prescriptions_of(start, catalogue()) == []
    assert labs.rules().rules_for(drug) == []

    text = TEXT + '\n[[medications]]\nname = "trialazine"\nbrands = ["trialix"]\n' \
        'psychotropic = "antipsychotic"\nschedule = "IV"\nlabs = ["clozapine"]\n'
    found = load_catalogue(written(tmp_path, text))
    assert is_psychotropic(drug, found) and opens_trial(drug, found)
    [prescription] = prescriptions_of(start, found)
    assert (prescription.schedule, prescription.moud) == ("IV", False)
    assert [r.check for r in labs.load_rules(labs.RULES_PATH, found).rules_for(drug)] == \
        ["anc"]


def test_a_brand_added_to_an_entry_takes_all_its_facts(tmp_path: Path) -> None:
    text = replaced('"brixadi", "bunavail"]', '"brixadi", "bunavail", "newsorb"]')
    found = load_catalogue(written(tmp_path, text))
    assert is_psychotropic("Newsorb", found) and not opens_trial("Newsorb", found)
    [prescription] = prescriptions_of(
        [MedicationChangeRow(action="start", drug="Newsorb", dose="8", days_supply=7)], found)
    assert (prescription.schedule, prescription.moud) == ("III", True)
    text = replaced('brands = ["lithobid", "eskalith"]',
                    'brands = ["lithobid", "eskalith", "newlith"]')
    found = load_catalogue(written(tmp_path, text))
    assert opens_trial("Newlith ER", found)
    assert {r.check for r in labs.load_rules(labs.RULES_PATH, found).rules_for("Newlith ER")} \
        == {"lithium_level", "thyroid", "renal", "calcium"}
