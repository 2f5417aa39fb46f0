"""``/visits/{visit_id}/guest?t=<token>``: the page an invited guest's email link opens.

A guest (an interpreter, a family member) has no account: the token from the invitation
is the credential. A good token renders the visit room for the guest, who waits until
the prescriber admits them; the page hands the token to ``visit-room.js``, which sends it
as ``guest_token`` in ``hello`` (and ``device-check.js`` in ``start``). A GET starts no
session and opens no socket, so a mail scanner opening the link changes nothing.

A malformed, unknown, expired or revoked token, or a visit that is over, gets a plain
page (400) and never the room.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import guests, visits
from server.errors import APIError
from server.http import path_id, services_of
from signaling.protocol import GUEST_TOKEN
from web.pages.visit_room import room_helpers, signaling_of, turn_offered
from web.rendering import render

INVALID = ("This invitation link is not valid, or it has expired or been withdrawn. "
           "Ask the clinician who invited you to send a new one.")


def _invalid(request: Request, message: str = INVALID) -> Response:
    response = render(request, "guest_invalid.html", status=400, message=message)
    response.headers["Cache-Control"] = "no-store"
    return response


async def guest_room(request: Request) -> Response:
    token = request.query_params.get("t", "")
    try:
        visit_id = path_id(request, "visit_id")
    except APIError:
        return _invalid(request)
    if not GUEST_TOKEN.fullmatch(token):
        return _invalid(request)
    services = services_of(request)
    async with services.transaction() as session:
        guest = await guests.guest_for_token(session, visit_id, token, now=services.clock.now())
        if guest is None:
            return _invalid(request)
        visit = await visits.get_visit_loaded(session, visit_id)
        if visit.status in visits.ENDED:
            return _invalid(request, "This visit has ended. Thank you for your help.")
        guest_name = guest.name
    response = render(request, "visit_room.html", visit=visit, role="guest", ended=False,
                      panel=None, guest_token=token, guest_name=guest_name,
                      turn_offered=turn_offered(services), signaling=signaling_of(request),
                      **room_helpers(services))
    # The token is in the address: keep the page out of caches.
    response.headers["Cache-Control"] = "no-store"
    return response


ROUTES = [Route("/visits/{visit_id}/guest", guest_room, methods=["GET"])]
