"""Form posts: CSRF check and small field readers for page routes."""

from __future__ import annotations

import hmac

from starlette.datastructures import FormData
from starlette.requests import Request

from server.auth import Current
from server.errors import Forbidden, ValidationFailed
from server.http import require_current


async def checked_form(request: Request) -> tuple[FormData, Current]:
    """The posted form of a signed-in user, after checking its CSRF token."""
    current = require_current(request)
    form = await request.form()
    token = form.get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token,
                                                            current.session.csrf_token):
        raise Forbidden("This form has expired. Go back, reload the page and try again.",
                        code="csrf_failed", field="csrf_token")
    return form, current


def text_field(form: FormData, name: str, *, required: bool = True, max_length: int = 500) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise ValidationFailed(f"Fill in {name.replace('_', ' ')}.", field=name)
    if len(text) > max_length:
        raise ValidationFailed(f"{name} is too long.", field=name)
    return text
