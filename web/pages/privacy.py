"""Part 2 consents and the accounting of disclosures, as pages.

The patient's own (``/privacy``): sign a consent, revoke one in two taps, read the
accounting of disclosures. The care team's (``/patients/{id}/privacy``): the same
consents, a consent signed on paper recorded, a revocation recorded, a medical-emergency
disclosure recorded, the accounting printed. Every action is the domain function the API
calls (``server.consents``, ``server.disclosures``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from escalation import referrals
from escalation.referrals import ReferralBody
from server import consents, counseling_notes, disclosures, guests
from server.access import (
    access_escalation,
    access_patient_consents,
    require_full_session,
    require_role,
)
from server.consents import CLASS_LABELS, PURPOSE_LABELS, ConsentBody
from server.counseling_notes import NewCounselingNote
from server.disclosures import EmergencyBody
from server.errors import APIError
from server.http import actor_of, client_ip, path_id, services_of, validation_error
from server.models import Role, User
from server.part2 import CATEGORIES, rules
from server.timezones import clinic_zone, viewer_zone
from web import escalation_view as view
from web.forms import checked_form
from web.rendering import render

Body = TypeVar("Body", bound=BaseModel)

KIND_LABELS = {
    "tpo": "My care, its payment and running the program (treatment, payment and "
           "health care operations)",
    "specific": "One person or organisation I name",
    "counseling_notes": "My substance use counseling notes, to one person or "
                        "organisation I name",
}


def _choices() -> dict[str, Any]:
    part2 = rules()
    return {"kind_labels": KIND_LABELS, "class_labels": CLASS_LABELS,
            "purpose_labels": PURPOSE_LABELS,
            "category_labels": {c: part2.label(c) for c in CATEGORIES},
            "form_version": part2.form_version}


def _consent_form(form: FormData) -> dict[str, Any]:
    """The posted consent form as the API's body (blank fields left out)."""
    data: dict[str, Any] = {
        "kind": form.get("kind") or "", "categories": form.getlist("categories"),
        "recipient_classes": form.getlist("recipient_classes"),
        "purposes": form.getlist("purposes")}
    for name in ("recipient_name", "purpose_text", "expires_on", "expiry_event",
                 "signed_name", "signed_on"):
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            data[name] = value.strip()
    return data


def _validated(model: type[Body], data: dict[str, Any]) -> Body:
    """A posted form as its pydantic model, or the API's 422 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _posted(form: FormData, names: tuple[str, ...]) -> dict[str, str]:
    return {name: str(form.get(name) or "").strip() for name in names}


EMERGENCY_FIELDS = ("recipient_name", "affiliation", "nature")


# --- the patient's pages -------------------------------------------------------------


async def my_privacy(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    require_full_session(actor)
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        found = await consents.list_for(session, actor, actor.user_id, now=now,
                                        zone=clinic_zone(services.settings))
        tz = await viewer_zone(session, services.settings, actor)
    done = request.query_params.get("done")
    return render(request, "privacy.html", consents=found, done=done, tz=tz,
                  program=services.settings.program_name, **_choices())


async def new_consent_page(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    require_full_session(actor)
    services = services_of(request)
    return render(request, "consent_new.html", values={"kind": "tpo"},
                  program=services.settings.program_name, paper=False,
                  action="/privacy/consents", **_choices())


async def sign_consent(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    services = services_of(request)
    values = _consent_form(form)
    try:
        body = _validated(ConsentBody, values)
        async with services.transaction() as session:
            await consents.sign(session, actor, actor.user_id, body,
                                now=services.clock.now(),
                                zone=clinic_zone(services.settings))
    except APIError as exc:
        if exc.status not in (409, 422):
            raise
        return render(request, "consent_new.html", status=exc.status, error=exc.message,
                      error_field=exc.field, values=values, paper=False,
                      program=services.settings.program_name, action="/privacy/consents",
                      **_choices())
    return RedirectResponse("/privacy?done=signed", status_code=303)


async def revoke_consent(request: Request) -> Response:
    _, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    consent_id = path_id(request, "consent_id")
    services = services_of(request)
    async with services.transaction() as session:
        revoked = await consents.revoke(session, actor, consent_id, now=services.clock.now(),
                                        zone=clinic_zone(services.settings))
    if actor.role is Role.patient:
        return RedirectResponse("/privacy?done=revoked", status_code=303)
    return RedirectResponse(f"/patients/{revoked.patient.id}/privacy?done=revoked",
                            status_code=303)


async def my_disclosures(request: Request) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.patient)
    require_full_session(actor)
    return await _accounting(request, actor.user_id, back="/privacy")


async def _accounting(request: Request, patient_id: int, *, back: str) -> Response:
    actor = actor_of(request)
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        patient = await access_patient_consents(session, actor, patient_id, now=now)
        found = await disclosures.accounting(session, actor, patient_id, now=now)
        tz = await viewer_zone(session, services.settings, actor)
    return render(request, "disclosures.html", disclosures=found, patient=patient, tz=tz,
                  back=back, program=services.settings.program_name,
                  years=rules().retention_years, purpose_labels=PURPOSE_LABELS)


# --- the care team's page ------------------------------------------------------------


async def patient_privacy(request: Request, *, status: int = 200,
                          **context: Any) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.prescriber, Role.coordinator, Role.admin)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        patient = await access_patient_consents(session, actor, patient_id, now=now)
        found = await consents.list_for(session, actor, patient_id, now=now,
                                        zone=clinic_zone(services.settings))
    context.setdefault("values", {"kind": "tpo"})
    return render(request, "patient_privacy.html", status=status, patient=patient,
                  tz=clinic_zone(services.settings),
                  consents=found, done=request.query_params.get("done"),
                  program=services.settings.program_name, paper=True,
                  action=f"/patients/{patient_id}/privacy/consents",
                  may_change=actor.role is not Role.admin, **_choices(), **context)


async def patient_privacy_page(request: Request) -> Response:
    return await patient_privacy(request)


async def record_paper_consent(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    values = _consent_form(form)
    try:
        body = _validated(ConsentBody, values)
        async with services.transaction() as session:
            await consents.record_paper(session, actor, patient_id, body,
                                        now=services.clock.now(),
                                        zone=clinic_zone(services.settings))
    except APIError as exc:
        if exc.status not in (409, 422):
            raise
        return await patient_privacy(request, status=exc.status, error=exc.message,
                                     error_field=exc.field, values=values)
    return RedirectResponse(f"/patients/{patient_id}/privacy?done=recorded", status_code=303)


async def record_emergency(request: Request) -> Response:
    patient_id = path_id(request, "patient_id")
    return await _emergency_submit(
        request, patient_id=patient_id, escalation_id=None,
        done=f"/patients/{patient_id}/privacy?done=emergency",
        again=lambda **context: patient_privacy(request, **context))


async def _emergency_submit(request: Request, *, patient_id: int | None,
                            escalation_id: int | None, done: str,
                            again: Callable[..., Awaitable[Response]]) -> Response:
    """A medical-emergency disclosure posted from the patient's privacy page or from the
    escalation being handled; a form with an error is shown again by ``again``."""
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    services = services_of(request)
    values = _posted(form, EMERGENCY_FIELDS)
    try:
        body = _validated(EmergencyBody, values)
        async with services.transaction() as session:
            await disclosures.record_emergency(session, actor, patient_id, body,
                                               now=services.clock.now(),
                                               escalation_id=escalation_id)
    except APIError as exc:
        if exc.status != 422:
            raise
        return await again(status=exc.status, emergency_error=exc.message,
                           emergency_field=exc.field, emergency=values)
    return RedirectResponse(done, status_code=303)


async def patient_disclosures(request: Request) -> Response:
    patient_id = path_id(request, "patient_id")
    return await _accounting(request, patient_id, back=f"/patients/{patient_id}/privacy")


async def escalation_emergency_page(request: Request, *, status: int = 200,
                                   **context: Any) -> Response:
    """The form for a medical-emergency disclosure made while handling an escalation."""
    context.setdefault("emergency", {})
    return await _escalation_form(request, "emergency_disclosure.html", status, context)


async def _escalation_form(request: Request, template: str, status: int,
                           context: dict[str, Any]) -> Response:
    """A form about an escalation's patient, for whoever may act on the escalation."""
    actor = actor_of(request)
    require_role(actor, Role.prescriber, Role.coordinator)
    escalation_id = path_id(request, "escalation_id")
    services = services_of(request)
    async with services.transaction() as session:
        escalation = await access_escalation(session, actor, escalation_id, write=True,
                                             now=services.clock.now())
        patient = await session.get(User, escalation.patient_id)
    assert patient is not None
    return render(request, template, status=status, patient=patient,
                  escalation_id=escalation_id, **context)


async def escalation_emergency_submit(request: Request) -> Response:
    escalation_id = path_id(request, "escalation_id")
    return await _emergency_submit(
        request, patient_id=None, escalation_id=escalation_id,
        done=f"/escalations/{escalation_id}",
        again=lambda **context: escalation_emergency_page(request, **context))


async def consent_to_guest(request: Request) -> Response:
    """The no-script path of the room's question about a guest (guest-consent.js)."""
    _, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    visit_id = path_id(request, "visit_id")
    guest_id = path_id(request, "guest_id")
    services = services_of(request)
    async with services.transaction() as session:
        await guests.consent_to_guest(session, actor, visit_id, guest_id,
                                      now=services.clock.now(),
                                      zone=clinic_zone(services.settings))
    return RedirectResponse(f"/visits/{visit_id}", status_code=303)


async def referral_form(request: Request, *, status: int = 200,
                        **context: Any) -> Response:
    """A referral packet for a step-up, from the escalation that calls for it."""
    context.setdefault("values", {})
    return await _escalation_form(request, "referral_new.html", status,
                                  {"levels": referrals.LEVEL_LABELS, **context})


async def referral_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    escalation_id = path_id(request, "escalation_id")
    services = services_of(request)
    values = _posted(form, ("program_name", "program_affiliation", "level_of_care", "note"))
    try:
        body = _validated(ReferralBody, {k: v for k, v in values.items() if v})
        async with services.transaction() as session:
            made = await referrals.make(session, actor, escalation_id, body,
                                        now=services.clock.now(),
                                        zone=clinic_zone(services.settings),
                                        organization=services.settings.program_name)
    except APIError as exc:
        if exc.status != 422:
            raise
        return await referral_form(request, status=exc.status, error=exc.message,
                                   error_field=exc.field, values=values)
    return RedirectResponse(f"/escalations/{escalation_id}/referrals/{made.id}",
                            status_code=303)


async def referral_page(request: Request) -> Response:
    """The packet as it went, to print (or to download as FHIR: the API)."""
    actor = actor_of(request)
    escalation_id = path_id(request, "escalation_id")
    referral_id = path_id(request, "referral_id")
    services = services_of(request)
    async with services.transaction() as session:
        found = await referrals.get(session, actor, escalation_id, referral_id,
                                    now=services.clock.now())
    return render(request, "referral.html", r=found, c=found.content,
                  levels=referrals.LEVEL_LABELS, tz=clinic_zone(services.settings),
                  reason_label=view.reason_label, category_label=rules().label,
                  when=datetime.fromisoformat)


async def counseling_notes_page(request: Request, *, status: int = 200,
                                **context: Any) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.prescriber, Role.coordinator)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    now = services.clock.now()
    async with services.transaction() as session:
        patient = await access_patient_consents(session, actor, patient_id, now=now)
        found = await counseling_notes.list_for(session, actor, patient_id, now=now)
    return render(request, "counseling_notes.html", status=status, patient=patient,
                  notes=found, tz=clinic_zone(services.settings), **context)


async def counseling_note_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    text = str(form.get("text") or "")
    try:
        body = _validated(NewCounselingNote, {"text": text})
        async with services.transaction() as session:
            await counseling_notes.write(session, actor, patient_id, body,
                                         now=services.clock.now())
    except APIError as exc:
        if exc.status != 422:
            raise
        return await counseling_notes_page(request, status=exc.status, error=exc.message,
                                           text=text)
    return RedirectResponse(f"/patients/{patient_id}/counseling-notes", status_code=303)


ROUTES = [
    Route("/escalations/{escalation_id}/referral", referral_form, methods=["GET"]),
    Route("/escalations/{escalation_id}/referral", referral_submit, methods=["POST"]),
    Route("/escalations/{escalation_id}/referrals/{referral_id}", referral_page,
          methods=["GET"]),
    Route("/patients/{patient_id}/counseling-notes", counseling_notes_page,
          methods=["GET"]),
    Route("/patients/{patient_id}/counseling-notes", counseling_note_submit,
          methods=["POST"]),
    Route("/visits/{visit_id}/guests/{guest_id}/consent", consent_to_guest,
          methods=["POST"]),
    Route("/escalations/{escalation_id}/emergency-disclosure", escalation_emergency_page,
          methods=["GET"]),
    Route("/escalations/{escalation_id}/emergency-disclosure", escalation_emergency_submit,
          methods=["POST"]),
    Route("/privacy", my_privacy, methods=["GET"]),
    Route("/privacy/consents/new", new_consent_page, methods=["GET"]),
    Route("/privacy/consents", sign_consent, methods=["POST"]),
    Route("/privacy/consents/{consent_id}/revoke", revoke_consent, methods=["POST"]),
    Route("/privacy/disclosures", my_disclosures, methods=["GET"]),
    Route("/patients/{patient_id}/privacy", patient_privacy_page, methods=["GET"]),
    Route("/patients/{patient_id}/privacy/consents", record_paper_consent, methods=["POST"]),
    Route("/patients/{patient_id}/privacy/emergency", record_emergency, methods=["POST"]),
    Route("/patients/{patient_id}/privacy/disclosures", patient_disclosures,
          methods=["GET"]),
]
