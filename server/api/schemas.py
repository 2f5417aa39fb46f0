"""Request bodies that are validated by hand, described for the OpenAPI document.

``POST /api/v1/triage`` and the check-in are checked field by field by ``server.triage``
and the instruments (so that a message can name ``responses.phq9.answers.3``), and a
check-in draft is stored as sent. These models say the same in JSON Schema; they validate
nothing at run time. ``tests/test_openapi_bodies.py`` holds them to what the handlers
accept and refuse.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from server.checkins import CheckInBody, DraftEmergencyInfo
from server.instruments import asrm, auditc, gad7, phq9


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """An instrument that may be left out, but is not null when given."""
    return Field(default=None, json_schema_extra=_no_default)


class _Closed(BaseModel):
    # Unknown keys are refused, as the instruments refuse them (a misspelt "dificulty").
    model_config = ConfigDict(extra="forbid")


def _answers(count: int, high: int) -> Any:
    return Field(min_length=count, max_length=count,
                 description=f"{count} answers, one per item in order, each 0 to {high}.")


Frequency = Annotated[int, Field(ge=0, le=phq9.ITEM_MAX)]


class Phq9Response(_Closed):
    answers: list[Frequency] = _answers(phq9.ITEM_COUNT, phq9.ITEM_MAX)
    difficulty: Annotated[int, Field(ge=0, le=phq9.DIFFICULTY_MAX)] | None = Field(
        default=None, description="How difficult the problems made things (0 to 3); "
                                  "stored, never added to the total.")


class Gad7Response(_Closed):
    answers: list[Annotated[int, Field(ge=0, le=gad7.ITEM_MAX)]] = _answers(
        gad7.ITEM_COUNT, gad7.ITEM_MAX)


class AuditcResponse(_Closed):
    answers: list[Annotated[int, Field(ge=0, le=auditc.ITEM_MAX)]] = _answers(
        auditc.ITEM_COUNT, auditc.ITEM_MAX)


class AsrmResponse(_Closed):
    answers: list[Annotated[int, Field(ge=0, le=asrm.ITEM_MAX)]] = _answers(
        asrm.ITEM_COUNT, asrm.ITEM_MAX)


_ASKED_IF_Q2 = "Asked only when q2 is yes; omitted, null or false otherwise."


class CssrsAnswers(_Closed):
    """The C-SSRS screener, yes/no, with its skip logic (CLINICAL.md)."""

    q1: bool
    q2: bool
    q3: bool | None = Field(default=None, description=_ASKED_IF_Q2)
    q4: bool | None = Field(default=None, description=_ASKED_IF_Q2)
    q5: bool | None = Field(default=None, description=_ASKED_IF_Q2)
    q6: bool
    q6_recent: bool | None = Field(
        default=None, description="Asked only when q6 is yes; omitted or null otherwise.")


class CssrsResponse(_Closed):
    answers: CssrsAnswers


class TriageResponses(_Closed):
    """Any subset of the instruments."""

    phq9: Phq9Response | SkipJsonSchema[None] = _optional()
    gad7: Gad7Response | SkipJsonSchema[None] = _optional()
    cssrs: CssrsResponse | SkipJsonSchema[None] = _optional()
    auditc: AuditcResponse | SkipJsonSchema[None] = _optional()
    asrm: AsrmResponse | SkipJsonSchema[None] = _optional()


class TriageBody(BaseModel):
    """Answers to score and triage; nothing is stored. Keys other than these are
    ignored."""

    model_config = ConfigDict(extra="allow")

    responses: TriageResponses
    sex: Literal["female", "male"] | None = Field(
        default=None, description="For the AUDIT-C cut-off; null when not given.")


class CheckInCompletion(CheckInBody):
    """The whole check-in. The instruments the visit needs (`needs` of
    `GET /api/v1/visits/{visit_id}/checkin`) and the emergency information are required
    (422 naming the first missing), unless the answers are urgent or worse: then the
    check-in is kept and `missing` lists them."""

    responses: TriageResponses  # type: ignore[assignment]  # dict[str, Any] checked by hand


class CheckInDraft(DraftEmergencyInfo):
    """What the patient has entered so far, in the shape of the completion, stored as
    sent. The emergency information given is checked as strictly as at completion; the
    rest is not checked until completion."""

    model_config = ConfigDict(extra="allow")

    responses: Any = Field(
        default=None, description="The answers so far, shaped as the completion's, with "
                                  "null for an item not answered yet; instruments that are "
                                  "complete, or already show risk, are triaged at once.")
