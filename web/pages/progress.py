"""The patient's own progress, in plain words with the same charts their team sees."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import trends
from server.access import require_role
from server.http import actor_of, services_of
from server.models import Role
from server.timezones import viewer_zone
from web.charts import TOTAL_MAX
from web.pages.patient import Measure, charted_measures
from web.rendering import render

WORDS: Final = {"phq9": "depression", "gad7": "anxiety"}
TITLES: Final = {"phq9": "Your depression scores", "gad7": "Your anxiety scores"}


def in_words(measure: Measure) -> str:
    """One sentence a patient can read without knowing the questionnaire."""
    word = WORDS[measure.id]
    first, last = measure.first.total, measure.latest.total
    if len(measure.points) == 1:
        return (f"Your first {word} score was {first}. Lower is better. After your next "
                "check-in you will see how it changes.")
    if first == last:
        return f"Your {word} score stayed at {first}. Lower is better."
    return f"Your {word} score went from {first} to {last}. Lower is better."


async def progress_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    services = services_of(request)
    async with services.transaction() as session:
        series = await trends.patient_measures(session, actor, actor.user_id)
        tz = await viewer_zone(session, services.settings, actor)
    measures = charted_measures(series, chart_prefix="progress", tz=tz, titles=TITLES)
    return render(request, "progress.html", measures=measures, in_words=in_words,
                  words=WORDS, total_max=TOTAL_MAX)


ROUTES = [Route("/progress", progress_page, methods=["GET"])]
