"""The patient's labs page for the care team: the monitoring labs due, the results on
record, and the form to enter one (``server.labs``; the note panel links here)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import labs
from server.access import require_role
from server.errors import APIError
from server.http import actor_of, client_ip, path_id, services_of, validation_error
from server.models import Role, User
from server.timezones import clinic_zone
from web.forms import checked_form
from web.rendering import render

FIELDS = ("test", "value", "unit", "text_value", "taken_on")


async def labs_page(request: Request, *, status: int = 200, **context: Any) -> Response:
    actor = actor_of(request)
    require_role(actor, Role.prescriber, Role.coordinator)
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    now, zone = services.clock.now(), clinic_zone(services.settings)
    async with services.transaction() as session:
        due = await labs.labs_due(session, actor, patient_id, now=now, zone=zone)
        found = await labs.list_results(session, actor, patient_id, now=now)
        patient = await session.get(User, patient_id)
    lab_rules = labs.rules()
    units = sorted({unit for test in lab_rules.tests.values() for unit in test.units})
    return render(request, "labs.html", status=status, patient=patient, labs=due,
                  results=found, tests=lab_rules.tests, units=units, tz=zone,
                  values=context.pop("values", {}), **context)


def _body(values: dict[str, str]) -> labs.NewLabResult:
    """The posted form as the API's body (blank fields left out), or the API's 422."""
    try:
        return labs.NewLabResult.model_validate({k: v for k, v in values.items() if v})
    except ValidationError as exc:
        raise validation_error(exc) from None


async def lab_submit(request: Request) -> Response:
    form, current = await checked_form(request)
    actor = current.actor(client_ip(request))
    patient_id = path_id(request, "patient_id")
    services = services_of(request)
    values = {name: str(form.get(name) or "").strip() for name in FIELDS}
    try:
        body = _body(values)
        async with services.transaction() as session:
            await labs.add_result(session, actor, patient_id, body, now=services.clock.now(),
                                  zone=clinic_zone(services.settings))
    except APIError as exc:
        if exc.status != 422:
            raise
        return await labs_page(request, status=exc.status, error=exc.message,
                               error_field=exc.field, values=values)
    return RedirectResponse(f"/patients/{patient_id}/labs?added=1", status_code=303)


ROUTES = [
    Route("/patients/{patient_id}/labs", labs_page, methods=["GET"]),
    Route("/patients/{patient_id}/labs", lab_submit, methods=["POST"]),
]
