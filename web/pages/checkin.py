"""The patient's pre-visit check-in page.

Every question and option is rendered here from the instrument definitions
(``server.instruments``) and the check-in's non-scored parts, with the patient's saved
draft filled in; ``static/checkin.js`` then runs the flow (one question per screen on a
phone, the adaptive C-SSRS, draft saves, the crisis resources, "Where are you right
now?" first when the answers are urgent, completion). The answers go to
``server.checkins`` through the JSON API, in exactly the body that API documents.

The triage rules that decide the crisis resources on the device (CLINICAL.md invariant
9: crisis help never waits for the network) are rendered into the page from
``services.rules``, so the page and the server apply the same reviewed numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import checkins
from server.access import require_role
from server.emergency_info import (
    ADDRESS_MIN_CHARS,
    CONTACT_NAME_MIN_LETTERS,
    STATE_MISSING,
    readable_phone,
)
from server.http import actor_of, path_id, services_of
from server.instruments import INSTRUMENTS, Instrument, Item
from server.models import CheckInStatus, Role
from server.timezones import viewer_zone
from server.triage import Reason, TriageRules
from server.us_states import US_STATES
from server.visits import get_visit_loaded
from web.rendering import moment, render

# Section headings in the patient's words; the validated item wording stays as defined
# in the instrument modules (changing it needs clinical review, see docs/clinical.md).
TITLES: Final = {
    "phq9": "How your mood has been",
    "cssrs": "Some questions about your safety",
    "phq9_difficulty": "One more question about your mood",
    "gad7": "Worry and nerves",
    "auditc": "Alcohol",
    "asrm": "Energy and high moods",
    "fibser": "Side effects of your medicines",
    "bam": "Alcohol, drugs and your recovery",
}

SIDE_EFFECT_LABELS: Final = {
    "sedation": "Feeling sleepy, drowsy or slowed down",
    "agitation": "Feeling restless, agitated or on edge",
    "emotional_blunting": "Feeling emotionally flat or numb",
    "sexual": "Sexual side effects, like less desire or trouble with arousal or orgasm",
    "weight_change": "Weight change",
    "stomach": "Stomach problems, like nausea, diarrhea or constipation",
    "dizziness": "Dizziness",
    "tremor": "Shaking or tremor",
    "other": "Something else",
}
SEVERITY_LABELS: Final = {"mild": "Mild", "moderate": "Moderate", "severe": "Severe"}
MISSED_DOSE_REASON_LABELS: Final = {
    "forgot": "I forgot",
    "side_effects": "Side effects",
    "cost_or_refill": "The cost, or I could not get a refill",
    "felt_better": "I felt better and did not think I needed it",
    "felt_worse": "I felt worse",
    "other": "Something else",
}
SLEEP_QUALITY_LABELS: Final = {"good": "Good", "fair": "Fair", "poor": "Poor"}
SUBSTANCE_LABELS: Final = {
    "alcohol": "Alcohol",
    "cannabis": "Cannabis (marijuana)",
    "opioids": "Opioids, like heroin, fentanyl, or pain pills not taken as prescribed",
    "stimulants": "Stimulants, like cocaine or methamphetamine",
    "sedatives": "Sedatives or sleeping pills not taken as prescribed",
    "other": "Something else",
}
SEX_LABELS: Final = {"female": "Female", "male": "Male", "": "I would rather not say"}
CRISIS_LEVELS: Final = ("urgent", "emergency")
# The reasons the page decides on the device, from the answers alone: the ones that can
# reach a crisis level (CLINICAL.md triage table), and their lower counterparts.
DEVICE_REASONS: Final = (Reason.PHQ9_ITEM9_UNASSESSED, Reason.PHQ9_ITEM9_POSITIVE,
                         Reason.CSSRS_HIGH, Reason.CSSRS_MODERATE, Reason.CSSRS_LOW)


def device_rules(rules: TriageRules) -> dict[str, Any]:
    """What ``checkin.js`` needs to decide on the crisis resources itself (invariant 9),
    taken from the reviewed rules the server triages with, never typed into the JS."""
    return {
        "levels": [level.value for level in rules.levels],
        "crisis_levels": list(CRISIS_LEVELS),
        "item9_threshold": rules.thresholds.phq9_item9,
        "reason_levels": {reason.value: rules.level_of(reason).value
                          for reason in DEVICE_REASONS},
    }


@dataclass(frozen=True)
class Question:
    """One scored item as the form shows it: its input name is its path in the body."""

    name: str
    item: Item


@dataclass(frozen=True)
class Part:
    """A titled section of questionnaire items (one screen on a wide window)."""

    id: str
    title: str
    instrument: Instrument
    questions: tuple[Question, ...]
    intro: str | None = None
    adaptive: bool = False


def answer_value(value: int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _questions(instrument: Instrument, items: tuple[Item, ...]) -> tuple[Question, ...]:
    return tuple(Question(f"responses.{instrument.id}.{item.answer_path}", item)
                 for item in items)


def questionnaire_parts(needs: Sequence[str]) -> list[Part]:
    """The questionnaires in the order asked. The C-SSRS sits right after PHQ-9 item 9
    (CLINICAL.md: it follows immediately when item 9 is above 0), so PHQ-9's optional
    difficulty question comes after it."""
    parts: list[Part] = []
    for name in needs:
        instrument = INSTRUMENTS[name]
        if name == "phq9":
            scored = tuple(i for i in instrument.items if i.id != "difficulty")
            difficulty = tuple(i for i in instrument.items if i.id == "difficulty")
            parts.append(Part("phq9", TITLES["phq9"], instrument,
                              _questions(instrument, scored), intro=instrument.intro))
            cssrs = INSTRUMENTS["cssrs"]
            parts.append(Part("cssrs", TITLES["cssrs"], cssrs,
                              _questions(cssrs, cssrs.items), intro=cssrs.intro,
                              adaptive=True))
            parts.append(Part("phq9_difficulty", TITLES["phq9_difficulty"], instrument,
                              _questions(instrument, difficulty)))
        else:
            parts.append(Part(name, TITLES[name], instrument,
                              _questions(instrument, instrument.items),
                              intro=instrument.intro))
    return parts


@dataclass
class FormValues:
    """What the form shows as answered: the saved draft, or for the emergency
    information and sex, what was given last time (to be confirmed again)."""

    values: dict[str, set[str]] = field(default_factory=dict)
    prefilled_location: bool = False
    prefilled_contact: bool = False

    @property
    def prefilled(self) -> bool:
        return self.prefilled_location or self.prefilled_contact

    def add(self, name: str, value: object) -> None:
        if isinstance(value, bool):
            self.values.setdefault(name, set()).add(answer_value(value))
        elif isinstance(value, int | float) or (isinstance(value, str) and value != ""):
            self.values.setdefault(name, set()).add(str(value))

    def checked(self, name: str, value: str) -> bool:
        return value in self.values.get(name, set())

    def text(self, name: str) -> str:
        found = self.values.get(name)
        return next(iter(found)) if found else ""


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def form_values(draft: Mapping[str, object], prefill: checkins.Prefill,
                confirmed_today: bool = False) -> FormValues:
    """Flatten a draft body into input name -> values. The draft is whatever the
    patient's browser last sent, so every part is type-checked before use."""
    form = FormValues()
    for instrument, response in _mapping(draft.get("responses")).items():
        response = _mapping(response)
        answers = response.get("answers")
        if isinstance(answers, list):
            for index, value in enumerate(answers):
                form.add(f"responses.{instrument}.answers.{index}", value)
        for key, value in _mapping(answers).items():
            form.add(f"responses.{instrument}.answers.{key}", value)
        form.add(f"responses.{instrument}.difficulty", response.get("difficulty"))
    effects = draft.get("side_effects")
    for effect in effects if isinstance(effects, list) else []:
        effect = _mapping(effect)
        name = effect.get("effect")
        if isinstance(name, str) and name in SIDE_EFFECT_LABELS:
            form.add("side_effects.effect", name)
            form.add(f"side_effects.{name}.severity", effect.get("severity"))
            form.add(f"side_effects.{name}.details", effect.get("details"))
    missed = _mapping(draft.get("missed_doses"))
    form.add("missed_doses.days_missed", missed.get("days_missed"))
    reasons = missed.get("reasons")
    for reason in reasons if isinstance(reasons, list) else []:
        form.add("missed_doses.reasons", reason)
    form.add("missed_doses.details", missed.get("details"))
    sleep = _mapping(draft.get("sleep"))
    form.add("sleep.hours", sleep.get("hours"))
    form.add("sleep.quality", sleep.get("quality"))
    use = _mapping(draft.get("substance_use"))
    form.add("substance_use.cravings", use.get("cravings"))
    form.add("substance_use.used_since_last_visit", use.get("used_since_last_visit"))
    substances = use.get("substances")
    for substance in substances if isinstance(substances, list) else []:
        form.add("substance_use.substances", substance)
    form.add("substance_use.details", use.get("details"))

    # Emergency information: the freshest the patient gave (``prefill``, from
    # checkins.emergency_info_for). Drafts no longer carry it; an older draft that does
    # is shown only when nothing was confirmed since. Either way the patient confirms it
    # again on this page.
    address: object
    callback: object
    location = _mapping(draft.get("location"))
    from_draft = ("address" in location or "callback_phone" in draft) and not confirmed_today
    form.prefilled_location = not from_draft and not confirmed_today
    if from_draft:
        address = location.get("address")
        callback = draft.get("callback_phone")
    else:
        address, callback = prefill.location.address, prefill.callback_phone
    form.add("location.address", address)
    # The state is saved with the draft like any answer (it confirms nothing alone), so
    # the patient's choice comes back; else the last state they gave.
    state = location.get("state")
    form.add("location.state", state if isinstance(state, str) and state in US_STATES
             else prefill.location.state)
    form.add("callback_phone", readable_phone(callback) if isinstance(callback, str)
             else callback)
    contact_name: object
    phone: object
    form.prefilled_contact = "emergency_contact" not in draft
    if form.prefilled_contact:
        contact_name = prefill.emergency_contact.name
        phone = prefill.emergency_contact.phone
    else:
        contact = _mapping(draft.get("emergency_contact"))
        contact_name, phone = contact.get("name"), contact.get("phone")
    form.add("emergency_contact.name", contact_name)
    form.add("emergency_contact.phone", readable_phone(phone) if isinstance(phone, str)
             else phone)
    form.add("sex", draft.get("sex", prefill.sex))
    return form


def _cssrs_started(draft: Mapping[str, object]) -> bool:
    """Whether the draft already shows the C-SSRS: once asked it stays in the check-in,
    even if item 9 is changed back to 0 (an answer given is not taken back silently)."""
    responses = _mapping(draft.get("responses"))
    answers = _mapping(_mapping(responses.get("cssrs")).get("answers"))
    if any(value is not None for value in answers.values()):
        return True
    phq9 = _mapping(responses.get("phq9")).get("answers")
    return isinstance(phq9, list) and len(phq9) == 9 and isinstance(phq9[8], int) \
        and not isinstance(phq9[8], bool) and phq9[8] > 0


async def checkin_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    visit_id = path_id(request, "visit_id")
    services = services_of(request)
    async with services.transaction() as session:
        state = await checkins.get_checkin(session, services, actor, visit_id)
        visit = await get_visit_loaded(session, visit_id)
        tz = await viewer_zone(session, services.settings, actor)
    stored = state.checkin
    draft = stored.data if stored else {}
    level = stored.level if stored else None
    confirmed_at = state.emergency_info.confirmed_at
    soon = timedelta(hours=services.settings.location_confirm_hours)
    return render(
        request, "checkin.html", visit=visit, tz=tz, is_open=state.open,
        completed=bool(stored and stored.status is CheckInStatus.completed),
        parts=questionnaire_parts(state.needs), needs=state.needs,
        form=form_values(draft, state.prefill, confirmed_at is not None),
        cssrs_shown=_cssrs_started(draft),
        crisis_level=level.value if level is not None and level in CRISIS_LEVELS else "",
        prefill_sex=state.prefill.sex or "", device_rules=device_rules(services.rules),
        # The page's script reads the time as the API gives it.
        where_confirmed_at=confirmed_at.astimezone(UTC).isoformat() if confirmed_at else "",
        where_confirmed_time=moment(confirmed_at, tz, services.clock.now()) if confirmed_at
        else "",
        starts_soon=services.clock.now() >= visit.scheduled_at - soon,
        address_min=ADDRESS_MIN_CHARS, contact_name_min=CONTACT_NAME_MIN_LETTERS,
        us_states=US_STATES, state_missing=STATE_MISSING,
        answer_value=answer_value, side_effects=SIDE_EFFECT_LABELS,
        severities=SEVERITY_LABELS, missed_reasons=MISSED_DOSE_REASON_LABELS,
        sleep_qualities=SLEEP_QUALITY_LABELS, substances=SUBSTANCE_LABELS,
        sexes=SEX_LABELS,
    )


ROUTES = [Route("/visits/{visit_id}/checkin", checkin_page, methods=["GET"])]
