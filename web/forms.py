"""Form posts: CSRF check and small field readers for page routes."""

from __future__ import annotations

import hmac

from starlette.datastructures import FormData
from starlette.requests import Request

from server.auth import Current
from server.errors import Forbidden, ValidationFailed
from server.http import refuse_unstorable, require_current


def _refuse_unstorable_fields(form: FormData) -> FormData:
    for name, value in form.multi_items():
        refuse_unstorable(name, "form")
        if isinstance(value, str):
            refuse_unstorable(value, name)
    return form


async def posted_form(request: Request) -> FormData:
    """The posted form, refused with 422 ``invalid_text`` naming the field when a name
    or value holds a character that cannot be stored (``server.http``): URL-encoded
    forms can carry NUL (%00), and a multipart form declaring a charset such as
    raw_unicode_escape can carry a lone surrogate."""
    return _refuse_unstorable_fields(await request.form())


async def checked_form(request: Request) -> tuple[FormData, Current]:
    """The posted form of a signed-in user, after checking its CSRF token (first: a
    forged post learns nothing about its fields) and refusing unstorable text."""
    current = require_current(request)
    form = await request.form()
    token = form.get("csrf_token")
    # compare_digest raises TypeError on non-ASCII text; a real token is ASCII.
    if not isinstance(token, str) or not token.isascii() or \
            not hmac.compare_digest(token, current.session.csrf_token):
        raise Forbidden("This form has expired. Go back, reload the page and try again.",
                        code="csrf_failed", field="csrf_token")
    return _refuse_unstorable_fields(form), current


def text_field(form: FormData, name: str, *, required: bool = True, max_length: int = 500) -> str:
    value = form.get(name)
    text = refuse_unstorable(value.strip(), name) if isinstance(value, str) else ""
    if required and not text:
        raise ValidationFailed(f"Fill in {name.replace('_', ' ')}.", field=name)
    if len(text) > max_length:
        raise ValidationFailed(f"{name} is too long.", field=name)
    return text
