"""Same-origin form posts from our own pages are accepted; cross-site ones are not.

Our pages send ``Referrer-Policy: no-referrer``, under which browsers send
``Origin: null`` on same-origin form posts: only ``Sec-Fetch-Site`` (which no page can
set) then tells our own sign-in form from a sandboxed or redirected cross-site post.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.clinic import PASSWORD, Clinic


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303),   # Chromium, our /login
    ({"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, 303),
    ({}, 303),                                                     # not a browser
    ({"Origin": "null"}, 403),                                     # no Fetch Metadata
    ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),     # sandboxed, redirected
    ({"Origin": "null", "Sec-Fetch-Site": "same-site"}, 403),      # a sibling subdomain
    ({"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}, 403),
])
def test_sign_in_form_origin(client: TestClient, clinic: Clinic, headers: dict[str, str],
                             status: int) -> None:
    response = client.post("/login", data={"email": clinic.coordinator.email,
                                            "password": PASSWORD},
                           headers=headers, follow_redirects=False)
    assert response.status_code == status, response.text[:200]
    if status == 403:
        assert response.json()["error"]["code"] == "csrf_failed"
