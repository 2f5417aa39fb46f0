"""The Brief Addiction Monitor (BAM): 17 items about the past 30 days, item 7 in seven
parts (7A-7G), so 23 answers (Cacciola et al. 2013, J Subst Abuse Treat 44(3):256-263;
the VA's categorical form and its scoring manual, DePhilippis et al., VA CESATE).

What is computed, exactly (see docs/clinical.md):
- every answer is 0-4. Day counts are asked in the manual's bands: 0 days (0), 1-3 (1),
  4-8 (2), 9-15 (3), 16-30 (4). Item 14 (enough income) is No 0, Yes 4;
- Use = items 4 + 5 + 6 (0-12); Risk = items 1 + 2 + 3 + 8 + 11 + 15 (0-24);
  Protective = items 9 + 10 + 12 + 13 + 14 + 16 (0-24). Items 7A-7G (which drugs) and
  17 (satisfaction with progress) are in no score;
- the manual's cut-offs: any Use (>= 1), Risk >= 12 and Protective <= 12 are
  clinically significant; shown as flags, they trigger nothing by themselves;
- skip logic: items 7A-7G are asked only when item 6 (days of drug use) is above 0;
  unasked they come as ``null`` (scored 0, and in no score anyway).

BAM answers and scores are SUD records under 42 CFR Part 2 (``server/part2_rules.toml``,
``sud_measures``). No LOINC code exists for it; exports use the local code ``bam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import (
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from server.instruments.base import (
    ClosedAnswers,
    Instrument,
    Item,
    OnePerItem,
    Option,
    Scale,
    refusal,
    refused,
    scale,
)

ITEM_MAX: Final = 4
DAYS: Final = scale("0 days", "1-3 days", "4-8 days", "9-15 days", "16-30 days")
HEALTH: Final = scale("Excellent", "Very good", "Good", "Fair", "Poor")
HOW_MUCH: Final = scale("Not at all", "Slightly", "Moderately", "Considerably", "Extremely")
NO_YES: Final = (Option(0, "No"), Option(4, "Yes"))

_30 = "In the past 30 days, "
# (item id, topic, wording, options). Ids are the published item numbers.
_ITEMS: Final[tuple[tuple[str, str, str, tuple[Option, ...]], ...]] = (
    ("1", "physical_health", _30 + "would you say your physical health has been:", HEALTH),
    ("2", "sleep", _30 + "how many nights did you have trouble falling asleep or staying "
     "asleep?", DAYS),
    ("3", "mood", _30 + "how many days have you felt depressed, anxious, angry or very "
     "upset throughout most of the day?", DAYS),
    ("4", "alcohol_any", _30 + "how many days did you drink ANY alcohol?", DAYS),
    ("5", "alcohol_heavy", _30 + "how many days did you have at least 5 drinks (if you are "
     "a man) or at least 4 drinks (if you are a woman)? One drink is one shot of hard "
     "liquor (1.5 oz), a 12-ounce can or bottle of beer, or a 5-ounce glass of wine.", DAYS),
    ("6", "drugs_any", _30 + "how many days did you use any illegal or street drugs, or "
     "misuse any prescription medicines?", DAYS),
    ("7a", "marijuana", _30 + "how many days did you use marijuana (cannabis, pot, weed)?",
     DAYS),
    ("7b", "sedatives", _30 + "how many days did you use sedatives or tranquilizers (like "
     "benzos, Valium, Xanax, Ativan, Ambien, barbiturates, Phenobarbital, downers)?", DAYS),
    ("7c", "cocaine", _30 + "how many days did you use cocaine or crack?", DAYS),
    ("7d", "stimulants", _30 + "how many days did you use other stimulants (like amphetamine, "
     "methamphetamine, Dexedrine, Ritalin, Adderall, speed, crystal meth, ice)?", DAYS),
    ("7e", "opioids", _30 + "how many days did you use opiates (like heroin, morphine, "
     "Dilaudid, Demerol, OxyContin, oxy, codeine (Tylenol 2, 3, 4), Percocet, Vicodin, "
     "fentanyl)?", DAYS),
    ("7f", "inhalants", _30 + "how many days did you use inhalants (glues, adhesives, nail "
     "polish remover, paint thinner)?", DAYS),
    ("7g", "other_drugs", _30 + "how many days did you use other drugs (steroids, non-"
     "prescription sleep or diet pills, Benadryl, Ephedra, other over-the-counter or "
     "unknown medications)?", DAYS),
    ("8", "cravings", _30 + "how much were you bothered by cravings or urges to drink "
     "alcohol or use drugs?", HOW_MUCH),
    ("9", "confidence", "How confident are you in your ability to be completely abstinent "
     "(clean) from alcohol and drugs in the next 30 days?", HOW_MUCH),
    ("10", "self_help", _30 + "how many days did you attend self-help meetings like AA or "
     "NA to support your recovery?", DAYS),
    ("11", "risky_situations", _30 + "how many days were you in any situations or with any "
     "people that might put you at an increased risk for using alcohol or drugs (around "
     "risky “people, places or things”)?", DAYS),
    ("12", "spirituality", "Does your religion or spirituality help support your recovery?",
     HOW_MUCH),
    ("13", "work_school", _30 + "how many days did you spend much of the time at work, "
     "school, or doing volunteer work?", DAYS),
    ("14", "income", "Do you have enough income (from legal sources) to pay for necessities "
     "such as housing, transportation, food and clothing for yourself and your "
     "dependents?", NO_YES),
    ("15", "family_problems", _30 + "how much have you been bothered by arguments or "
     "problems getting along with any family members or friends?", HOW_MUCH),
    ("16", "sober_support", _30 + "how many days did you contact or spend time with any "
     "family members or friends who are supportive of your recovery?", DAYS),
    ("17", "progress", "How satisfied are you with your progress toward achieving your "
     "recovery goals?", HOW_MUCH),
)

ANSWER_COUNT: Final = len(_ITEMS)
INDEX: Final[dict[str, int]] = {item_id: index for index, (item_id, *_) in enumerate(_ITEMS)}
DRUG_DAYS: Final = INDEX["6"]
DRUG_PARTS: Final = tuple(INDEX[f"7{part}"] for part in "abcdefg")
INCOME: Final = INDEX["14"]

# The manual's composite scores, by published item number.
USE_ITEMS: Final = ("4", "5", "6")
RISK_ITEMS: Final = ("1", "2", "3", "8", "11", "15")
PROTECTIVE_ITEMS: Final = ("9", "10", "12", "13", "14", "16")
USE_SIGNIFICANT_AT: Final = 1
RISK_SIGNIFICANT_AT: Final = 12
PROTECTIVE_SIGNIFICANT_AT_OR_BELOW: Final = 12

DEFINITION: Final = Instrument(
    id="bam",
    name="Brief Addiction Monitor",
    recall="past 30 days",
    intro=(
        "These questions are about your health, alcohol and drug use, and what supports "
        "your recovery, over the past 30 days. What you tell us here is protected by "
        "federal privacy rules for substance use treatment (42 CFR Part 2)."
    ),
    answer_type="integer",
    items=tuple(
        Item(id=item_id, answer_path=f"answers.{index}", topic=topic, text=text,
             options=options,
             asked_unless=(str(DRUG_DAYS), 0) if index in DRUG_PARTS else None)
        for index, (item_id, topic, text, options) in enumerate(_ITEMS)
    ),
)


@dataclass(frozen=True)
class BamScore:
    answers: tuple[int, ...]
    use: int
    risk: int
    protective: int

    @property
    def use_significant(self) -> bool:
        return self.use >= USE_SIGNIFICANT_AT

    @property
    def risk_significant(self) -> bool:
        return self.risk >= RISK_SIGNIFICANT_AT

    @property
    def protective_significant(self) -> bool:
        return self.protective <= PROTECTIVE_SIGNIFICANT_AT_OR_BELOW

    def to_json(self) -> dict[str, JsonValue]:
        return {"use": self.use, "risk": self.risk, "protective": self.protective,
                "use_significant": self.use_significant,
                "risk_significant": self.risk_significant,
                "protective_significant": self.protective_significant}


def from_answers(answers: tuple[int, ...]) -> BamScore:
    """Score answers that have already been validated."""
    def total(items: tuple[str, ...]) -> int:
        return sum(answers[INDEX[item]] for item in items)

    return BamScore(answers=answers, use=total(USE_ITEMS), risk=total(RISK_ITEMS),
                    protective=total(PROTECTIVE_ITEMS))


def _income_no_or_yes(value: object, handler: ValidatorFunctionWrapHandler) -> Any:
    answers = handler(value)
    if isinstance(answers, list) and len(answers) == ANSWER_COUNT \
            and answers[INCOME] not in (None, 0, ITEM_MAX):
        raise ValidationError.from_exception_data("answers", [{
            "type": refused(f"must be 0 (No) or {ITEM_MAX} (Yes)"), "loc": (INCOME,),
            "input": answers[INCOME]}])
    return answers


Answer = Annotated[int, Scale(ITEM_MAX)]


class BamResponse(ClosedAnswers):
    answers: Annotated[list[Answer], OnePerItem(ANSWER_COUNT),
                       WrapValidator(_income_no_or_yes)] = Field(
        description=(f"{ANSWER_COUNT} answers in the published order (items 1-6, 7A-7G, "
                     f"8-17), each 0 to {ITEM_MAX}; item 14 (answers.{INCOME}) is 0 (No) "
                     f"or {ITEM_MAX} (Yes). When item 6 (answers.{DRUG_DAYS}) is 0, items "
                     "7A-7G are not asked and may be null (scored 0)."),
        json_schema_extra={"items": {"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": ITEM_MAX}, {"type": "null"}]}})

    @model_validator(mode="before")
    @classmethod
    def _not_asked_scores_zero(cls, value: object) -> object:
        # After 0 days of drug use, which drugs (7A-7G) were not asked: null, scored 0.
        if isinstance(value, dict) and isinstance(answers := value.get("answers"), list) \
                and len(answers) == ANSWER_COUNT and type(answers[DRUG_DAYS]) is int \
                and answers[DRUG_DAYS] == 0:
            return {**value, "answers": [
                0 if index in DRUG_PARTS and answer is None else answer
                for index, answer in enumerate(answers)]}
        return value


class BamSoFar(ClosedAnswers):
    """A draft's answers: null for an item not answered yet."""

    answers: Annotated[list[Answer | None], OnePerItem(ANSWER_COUNT),
                       WrapValidator(_income_no_or_yes)]

    def least(self) -> BamResponse:
        return BamResponse(answers=[answer or 0 for answer in self.answers])


def scored(response: BamResponse) -> BamScore:
    return from_answers(tuple(response.answers))


def score(raw: object, *, field: str = "responses.bam") -> BamScore:
    try:
        return scored(BamResponse.model_validate(raw))
    except ValidationError as exc:
        raise refusal(exc, field) from None
