"""The app as a whole: security headers, health, the OpenAPI document, error shapes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.auth import COOKIE_NAME, COOKIE_SALT
from server.services import Services
from server.settings import Settings
from tests.clinic import Clinic, build_clinic
from tests.conftest import TEST_SECRET, Runner, SignIn
from tests.mail import free_port
from tests.signaling_support import connect

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def assert_security_headers(response: Any, kind: str, *, cacheable: bool = False) -> None:
    headers = response.headers
    csp = headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert "'unsafe-inline'" not in csp, kind
    assert "'unsafe-eval'" not in csp, kind
    assert directives.get("frame-ancestors") == ["'none'"], kind
    assert directives.get("script-src") == ["'self'"], kind
    assert directives.get("object-src") == ["'none'"], kind
    assert headers.get("referrer-policy") == "no-referrer", kind
    assert headers.get("x-content-type-options") == "nosniff", kind
    permissions = dict(p.strip().split("=", 1) for p in
                       headers.get("permissions-policy", "").split(","))
    assert permissions.get("camera") == "(self)", kind
    assert permissions.get("microphone") == "(self)", kind
    if not cacheable:
        # Pages and API answers carry patient information.
        assert headers.get("cache-control") == "no-store", kind


def test_security_headers_on_every_kind_of_response(
    client: TestClient, clinic: Clinic, sign_in: SignIn, services: Services
) -> None:
    too_big = b"x" * (services.settings.max_body_bytes + 1)
    sign_in(None)
    anonymous = {
        "page": client.get("/login"),
        "redirect": client.get("/", follow_redirects=False),
        "api json": client.get("/api/v1/instruments"),
        "api error 404": client.get("/api/v1/nothing-here"),
        "api error 401": client.get("/api/v1/visits"),
        "page error 404": client.get("/nothing-here"),
        "health": client.get("/healthz"),
        "openapi": client.get("/api/v1/openapi.json"),
        "body too large": client.post("/api/v1/session", content=too_big,
                                      headers={"Content-Type": "application/json"}),
        "cross-site post": client.post("/login", data={"email": "a@b.test"},
                                       headers={"Origin": "https://evil.example"}),
    }
    sign_in(clinic.patient)
    signed_in = {
        "visit room": client.get(f"/visits/{clinic.visit_id}"),
        "api visit": client.get(f"/api/v1/visits/{clinic.visit_id}"),
        "page error 403": client.get("/admin"),
    }
    for kind, response in (anonymous | signed_in).items():
        assert response.status_code < 500, kind
        assert_security_headers(response, kind)
    static = client.get("/static/app.css")
    assert static.status_code == 200
    assert_security_headers(static, "static file", cacheable=True)


def test_pages_need_nothing_that_the_policy_blocks(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    # The policy allows no inline script or style: an inline <script>, a style=""
    # attribute or an on*="" handler in a page would silently not work in a browser.
    pages = ["/login", "/account/password", "/home", "/progress", "/day", "/coordinator",
             "/admin", "/admin/care-teams", "/admin/audit", "/admin/outbox",
             f"/visits/{clinic.visit_id}", f"/visits/{clinic.visit_id}/checkin",
             f"/patients/{clinic.patient.id}", "/nothing-here"]
    people = {"anonymous": None, "patient": clinic.patient, "join_link": clinic.patient,
              "prescriber": clinic.prescriber, "coordinator": clinic.coordinator,
              "admin": clinic.admin}
    for who, person in people.items():
        sign_in(person, visit_id=clinic.visit_id if who == "join_link" else None)
        for path in pages:
            response = client.get(path)
            where = f"{path} as {who}"
            assert response.headers["content-type"].startswith("text/html"), where
            html = response.text
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), where
            assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), where
            assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), where


# --- health ---------------------------------------------------------------------------


def test_healthz_reports_each_dependency(client: TestClient, database_url: str) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["bus"] == "in-process"
    assert body["checks"]["smtp"] == "outbox-only"
    assert body["database"] == database_url.split("+")[0]


def _unreachable_databases(tmp_path: Path) -> dict[str, str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return {
        # A port that was free a moment ago: nothing listens there.
        "postgresql": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/mendwell",
        "sqlite": f"sqlite+aiosqlite:///{a_file / 'inside-a-file.db'}",
    }


@pytest.fixture(params=["postgresql", "sqlite"])
def database_down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(env="test", secret_key=TEST_SECRET, var_dir=tmp_path,
                        base_url="http://testserver", run_background_tasks=False,
                        database_url=_unreachable_databases(tmp_path)[request.param],
                        ).completed()
    app: Starlette = create_app(settings)
    # The app starts without its database (so a load balancer can see it is unhealthy).
    with TestClient(app, base_url="http://testserver",
                    raise_server_exceptions=False) as client:
        yield client


def test_healthz_is_503_when_the_database_is_down(database_down: TestClient) -> None:
    response = database_down.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "down"
    assert "Traceback" not in response.text


def test_database_failure_is_a_503_with_retry_after_without_a_trace(
    database_down: TestClient
) -> None:
    services: Services = database_down.app.state.services  # type: ignore[attr-defined]
    # A well-signed cookie makes the session loader go to the database, which fails.
    cookie = services.signer(COOKIE_SALT).dumps("some-session-token")
    database_down.cookies.set("mendwell_session", cookie)
    api = database_down.get("/api/v1/session")
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "unavailable"
    assert api.json()["error"]["retry_after"] == 5
    page = database_down.get("/home")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    for response in (api, page):
        assert response.headers["retry-after"] == "5"
        assert "Traceback" not in response.text
        assert "asyncpg" not in response.text and "sqlite" not in response.text
        assert_security_headers(response, "database unavailable")


def test_a_database_error_that_is_a_bug_stays_a_500(settings: Settings) -> None:
    """Only an unreachable database is a 503: a statement the database refuses is a bug
    (here: a table that is not there), answered 500 like any other."""
    with TestClient(create_app(settings), base_url="http://testserver",
                    raise_server_exceptions=False) as plain:
        services: Services = plain.app.state.services  # type: ignore[attr-defined]
        run = Runner(plain, services)
        clinic = run(build_clinic, services)
        SignIn(plain, run, services)(clinic.prescriber)

        async def rename(old: str, new: str) -> None:
            async with services.engine.begin() as connection:
                await connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

        run(rename, "visit_notes", "visit_notes_elsewhere")
        try:
            response = plain.get(f"/api/v1/visits/{clinic.visit_id}/note")
        finally:
            run(rename, "visit_notes_elsewhere", "visit_notes")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert "retry-after" not in response.headers


# --- the OpenAPI document -------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def test_openapi_document_is_valid_3_1(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths",
                        "webhooks", "components", "security", "tags", "externalDocs"}
    schemes = doc["components"]["securitySchemes"]
    operation_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/"), path
        templated = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert method in HTTP_METHODS, (path, method)
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (path, method)
            for status, answer in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", status), (path, status)
                assert answer["description"], (path, status)
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == templated, (path, method)
            for p in operation.get("parameters", []):
                assert p["required"] is True, (path, p)
            if "requestBody" in operation:
                assert "application/json" in operation["requestBody"]["content"]
                # A body that is not JSON, or nested too deep: 400 (tests/test_openapi_bodies.py).
                assert {"400", "413", "422"} <= set(operation["responses"]), (path, method)
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes), (path, method)
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for path, method in [("/api/v1/triage", "post"), ("/api/v1/visits/{visit_id}/checkin", "post"),
                         ("/api/v1/visits/{visit_id}/checkin/draft", "put")]:
        assert "requestBody" in doc["paths"][path][method], (path, method)
    for ref in _refs(doc):
        assert isinstance(_resolve(doc, ref), dict), ref


def test_openapi_lists_every_api_route(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    operations = {(op.method, op.path) for op in client.app.state.api_operations}  # type: ignore[attr-defined]
    assert documented == operations
    routed = {(method, route.path) for route in client.app.routes  # type: ignore[attr-defined]
              if isinstance(route, Route) and route.path.startswith("/api/")
              and route.path != "/api/v1/openapi.json"
              for method in route.methods or () if method != "HEAD"}
    assert routed == operations
    anonymous = {(op.method, op.path) for op in client.app.state.api_operations  # type: ignore[attr-defined]
                 if op.anonymous}
    for method, path in documented:
        secured = "security" in doc["paths"][path][method.lower()]
        assert secured == ((method, path) not in anonymous), (method, path)


# --- error shapes ---------------------------------------------------------------------


def assert_error(response: Any, status: int, code: str | None = None,
                 field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "field"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    assert "Traceback" not in response.text
    return error


def test_unknown_api_path_is_404_json(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/v2/visits", headers={"Accept": "text/html"}), 404,
                 "not_found")


def test_wrong_method_is_405_json(client: TestClient) -> None:
    assert_error(client.put("/api/v1/visits", json={}), 405, "method_not_allowed")


def test_body_that_is_not_json_is_400(client: TestClient) -> None:
    error = assert_error(client.post("/api/v1/session", content=b"email=a&password=b",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}),
                         400, "unsupported_media_type")
    assert error["field"] == "Content-Type"
    assert_error(client.post("/api/v1/session", content=b"{}"), 400, "unsupported_media_type")


def test_invalid_json_is_400(client: TestClient) -> None:
    for raw in (b'{"email": ', b"\xff\xfe", b"{'single': 'quotes'}"):
        assert_error(client.post("/api/v1/session", content=raw,
                                 headers={"Content-Type": "application/json"}),
                     400, "invalid_json", field="body")


def test_body_over_the_limit_is_413_with_or_without_content_length(
    client: TestClient, services: Services
) -> None:
    limit = services.settings.max_body_bytes
    body = b'{"email": "' + b"a" * limit + b'", "password": "x"}'
    headers = {"Content-Type": "application/json"}
    declared = client.post("/api/v1/session", content=body, headers=headers)
    assert_error(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    chunked = client.post("/api/v1/session", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in chunked.request.headers}
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert_error(chunked, 413, "payload_too_large")
    # Right at the limit is read (and then judged on its content: too long a password).
    at_limit = b'{"email": "a@b.test", "password": "' + b"x" * 300 + b'"}'
    at_limit = at_limit.ljust(limit, b" ")
    assert len(at_limit) == limit
    assert_error(client.post("/api/v1/session", content=at_limit, headers=headers), 422,
                 field="password")


def test_path_id_that_is_not_a_positive_int_is_422(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    # 2**31 and up: ids are 32-bit on PostgreSQL, so they must not reach the database.
    for raw in ("abc", "1.5", "-3", "0", "%20", str(2**31), str(2**63)):
        assert_error(client.get(f"/api/v1/visits/{raw}"), 422, "invalid", field="visit_id")


def test_ids_out_of_range_are_refused_before_the_database(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    # PostgreSQL ids are 32-bit; a bigger one reaching the driver is a 500 there.
    huge = 2**40
    sign_in(clinic.prescriber)
    assert_error(client.post("/api/v1/visits", json={
        "patient_id": huge, "kind": "follow_up", "scheduled_at": "2031-01-01T10:00:00+00:00"}),
        422, "invalid", field="patient_id")
    assert_error(client.post("/api/v1/escalations", json={
        "patient_id": huge, "level": "urgent", "reason": "relapse"}),
        422, "invalid", field="patient_id")
    assert_error(client.post("/api/v1/escalations/1/assign", json={"assignee_id": huge}),
                 422, "invalid", field="assignee_id")
    with connect(client, f"/ws/visits/{huge}", client.cookies.get(COOKIE_NAME) or "") as ws:
        assert ws.expect("error")["code"] == "not_found"
        assert ws.closed() == 4404
    sign_in(clinic.admin)
    assert_error(client.post(f"/api/v1/patients/{clinic.patient.id}/care-team",
                             json={"member_id": huge}), 422, "invalid", field="member_id")
    assert_error(client.post("/api/v1/break-glass", json={
        "patient_id": huge, "reason": "Unreachable after an emergency check-in"}),
        422, "invalid", field="patient_id")
    assert_error(client.get("/api/v1/audit", params={"patient_id": huge}), 422, "invalid",
                 field="patient_id")


def test_missing_things_on_pages_are_html(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.patient)
    for path in (f"/visits/{2**31 - 1}", "/nothing-here", "/visits/not-a-number"):
        response = client.get(path)
        assert response.status_code in (404, 422), path
        assert response.headers["content-type"].startswith("text/html"), path
        assert "<h1>" in response.text
        assert '"error"' not in response.text
        assert "Traceback" not in response.text
    assert client.get(f"/visits/{2**31 - 1}").status_code == 404


def test_pages_send_anonymous_people_to_sign_in(client: TestClient, clinic: Clinic) -> None:
    for path in ("/home", "/day", "/admin", f"/visits/{clinic.visit_id}", "/account/password"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"
    # ...while the API says 401 in JSON, also to a browser.
    assert_error(client.get("/api/v1/visits", headers={"Accept": "text/html"}), 401,
                 "unauthenticated")


def test_json_clients_get_json_errors_from_pages(client: TestClient) -> None:
    response = client.get("/nothing-here", headers={"Accept": "application/json"})
    assert_error(response, 404, "not_found")
