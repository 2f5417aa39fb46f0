"""Sign-in, sessions, idle timeout, logout, throttling and CSRF over the real app."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.auth import COOKIE_NAME
from server.models import AuditEntry, AuthSession
from server.services import Services
from tests.clinic import PASSWORD, Clinic
from tests.conftest import Runner, SignIn


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    client.cookies.clear()
    return client.post("/api/v1/session", json={"email": email, "password": password})


def test_login_returns_user_csrf_and_http_only_cookie(client: TestClient, clinic: Clinic) -> None:
    response = login(client, clinic.prescriber.email)
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": clinic.prescriber.id, "email": clinic.prescriber.email,
                            "name": clinic.prescriber.name, "role": "prescriber"}
    assert len(body["csrf_token"]) >= 32
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # test environment; see test_secure_cookie_outside_dev
    me = client.get("/api/v1/session")
    assert me.status_code == 200
    assert me.json()["user"]["id"] == clinic.prescriber.id


def test_email_is_case_insensitive(client: TestClient, clinic: Clinic) -> None:
    assert login(client, clinic.patient.email.upper()).status_code == 200


@pytest.mark.parametrize("email,password", [
    ("patient@clinic.test", "wrong password!"),
    ("nobody@clinic.test", PASSWORD),
])
def test_bad_credentials_are_401_without_saying_which(
    client: TestClient, clinic: Clinic, email: str, password: str
) -> None:
    response = login(client, email, password)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")


def test_unknown_email_takes_as_long_as_a_wrong_password(
    client: TestClient, clinic: Clinic
) -> None:
    def timed(email: str) -> float:
        start = time.perf_counter()
        login(client, email, "not the password")
        return time.perf_counter() - start

    known, unknown = [], []
    for _ in range(4):  # under the per-account limit of 5
        known.append(timed(clinic.patient.email))
        unknown.append(timed(f"ghost-{len(unknown)}@clinic.test"))
    # Both run one argon2 verification; without the dummy hash the unknown case would
    # be many times faster.
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)


def test_account_throttle_gives_429_even_with_the_right_password(
    client: TestClient, clinic: Clinic
) -> None:
    for _ in range(5):
        assert login(client, clinic.patient.email, "wrong password!").status_code == 401
    response = login(client, clinic.patient.email)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    # Another account from the same address is not locked by this one.
    assert login(client, clinic.patient2.email).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"login_address_limit": 3}])
def test_address_throttle_across_accounts(client: TestClient, clinic: Clinic) -> None:
    for n in range(3):
        assert login(client, f"spray-{n}@clinic.test", "guess").status_code == 401
    assert login(client, clinic.patient.email).status_code == 429


def test_logout_ends_the_session_on_the_server(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    body = login(client, clinic.coordinator.email).json()
    cookie = client.cookies.get(COOKIE_NAME)
    response = client.delete("/api/v1/session", headers={"X-CSRF-Token": body["csrf_token"]})
    assert response.status_code == 204
    # Replaying the old cookie does not work: the session is over server-side.
    client.cookies.set(COOKIE_NAME, cookie or "")
    assert client.get("/api/v1/session").status_code == 401

    async def ended() -> list[str | None]:
        async with services.transaction() as session:
            return list((await session.scalars(select(AuthSession.end_reason))).all())

    assert run(ended) == ["logout"]


def test_staff_idle_timeout(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.prescriber)
    assert client.get("/api/v1/session").status_code == 200
    services.clock.advance(timedelta(minutes=14))
    assert client.get("/api/v1/session").status_code == 200  # activity resets the clock
    services.clock.advance(timedelta(minutes=14))
    assert client.get("/api/v1/visits").status_code == 200
    services.clock.advance(timedelta(minutes=15, seconds=1))
    response = client.get("/api/v1/visits")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_session_reports_when_idle_logoff_will_happen(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    body = client.get("/api/v1/session").json()
    assert body["idle_warning_seconds"] == 120
    assert body["idle_expires_at"] < body["expires_at"]


def test_patients_have_a_longer_idle_timeout_than_staff(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.patient)
    services.clock.advance(timedelta(minutes=20))
    assert client.get("/api/v1/session").status_code == 200


def test_absolute_lifetime(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.patient)
    for _ in range(13):  # active every hour, but the session is 12 hours at most
        services.clock.advance(timedelta(minutes=59))
        client.get("/api/v1/session")
    assert client.get("/api/v1/session").status_code == 401


def test_forged_cookie_is_ignored(client: TestClient, clinic: Clinic) -> None:
    client.cookies.set(COOKIE_NAME, "forged.value.here")
    assert client.get("/api/v1/session").status_code == 401


def test_api_writes_need_the_csrf_header(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    csrf = sign_in(clinic.prescriber)
    client.headers.pop("X-CSRF-Token")
    body = {"patient_id": clinic.patient.id, "kind": "follow_up",
            "scheduled_at": "2031-01-01T10:00:00+00:00"}
    missing = client.post("/api/v1/visits", json=body)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    wrong = client.post("/api/v1/visits", json=body, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    right = client.post("/api/v1/visits", json=body, headers={"X-CSRF-Token": csrf})
    assert right.status_code == 201


def test_forms_need_their_csrf_token(client: TestClient, clinic: Clinic, sign_in: SignIn) -> None:
    csrf = sign_in(clinic.admin)
    client.headers.pop("X-CSRF-Token")
    data = {"name": "New Person", "email": "new@clinic.test", "role": "coordinator"}
    refused = client.post("/admin/users", data=data, follow_redirects=False)
    assert refused.status_code == 403
    accepted = client.post("/admin/users", data={**data, "csrf_token": csrf},
                           follow_redirects=False)
    assert accepted.status_code == 303


def test_cross_site_posts_are_refused(client: TestClient, clinic: Clinic) -> None:
    response = client.post("/login", data={"email": clinic.patient.email,
                                            "password": PASSWORD},
                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert COOKIE_NAME not in client.cookies


def test_login_form_signs_in_and_redirects_home(client: TestClient, clinic: Clinic) -> None:
    response = client.post("/login", data={"email": clinic.prescriber.email,
                                            "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/day"
    page = client.get("/day")
    assert page.status_code == 200
    assert clinic.prescriber.name in page.text


def test_login_and_failure_are_audited(
    client: TestClient, clinic: Clinic, run: Runner, services: Services
) -> None:
    login(client, clinic.patient.email, "wrong password!")
    login(client, clinic.patient.email)

    async def outcomes() -> list[tuple[str, str]]:
        async with services.transaction() as session:
            rows = await session.execute(
                select(AuditEntry.action, AuditEntry.outcome)
                .where(AuditEntry.action == "login").order_by(AuditEntry.id))
            return [tuple(r) for r in rows]  # type: ignore[misc]

    assert run(outcomes) == [("login", "failure"), ("login", "success")]


@pytest.mark.parametrize("settings_overrides", [{"env": "development"}])
def test_secure_cookie_only_outside_development(client: TestClient, clinic: Clinic) -> None:
    assert "Secure" not in login(client, clinic.patient.email).headers["set-cookie"]


def test_password_change_then_sign_in(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    sign_in(clinic.patient)
    bad = client.put("/api/v1/account/password",
                     json={"current_password": "wrong", "new_password": "a new password"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "current_password"
    short = client.put("/api/v1/account/password",
                       json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "new_password"
    ok = client.put("/api/v1/account/password",
                    json={"current_password": PASSWORD, "new_password": "a new password"})
    assert ok.status_code == 204
    assert login(client, clinic.patient.email, "a new password").status_code == 200

    async def sessions() -> int:
        async with services.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(AuthSession))
                       or 0)

    assert run(sessions) >= 2


def test_background_refreshes_do_not_count_as_activity(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    sign_in(clinic.coordinator)
    background = {"X-Mendwell-Background": "1"}
    for _ in range(3):  # a live queue re-reading itself for 12 minutes
        services.clock.advance(timedelta(minutes=4))
        page = client.get("/coordinator", headers=background, follow_redirects=False)
        assert page.status_code == 200
    services.clock.advance(timedelta(minutes=3, seconds=1))
    assert client.get("/api/v1/session", headers=background).status_code == 401
