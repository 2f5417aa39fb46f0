"""Dates and numbers out of range are 422 naming the field, never a 500 (issue 14).

Python's datetime ends at 9999-12-31: ``9999-12-31T23:59:59-14:00`` parses but has no UTC
time, which every date column needs. Integer columns are 32-bit: ``version: 2**70`` would
reach the driver. Both are refused where they come in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.cli import _instant
from server.errors import ValidationFailed
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import SignIn

LATEST = "9999-12-31T23:59:59-14:00"    # past the end of datetime once in UTC
EARLIEST = "0001-01-01T00:00:00+14:00"  # before its start once in UTC


def assert_422(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text[:300]
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["error"]["field"] == field
    else:
        assert "Traceback" not in response.text


def test_staff_queries_and_bodies(client: TestClient, clinic: Clinic, sign_in: SignIn,
                                  services: Services) -> None:
    sign_in(clinic.prescriber)
    for raw in (LATEST, EARLIEST, "1899-12-31T23:59:59+00:00", "2201-01-01T00:00:00+00:00"):
        assert_422(client.get("/api/v1/visits", params={"from": raw}), "from")
        assert_422(client.get("/api/v1/visits", params={"to": raw}), "to")
        assert_422(client.get("/api/v1/on-call", params={"at": raw}), "at")
    # The ends of the range are fine, whatever their offset.
    assert client.get("/api/v1/visits", params={"from": "1900-01-01T00:00:00+14:00",
                                                "to": "2200-12-31T23:59:59-14:00"}
                      ).status_code == 200
    assert_422(client.post("/api/v1/visits", json={
        "patient_id": clinic.patient.id, "kind": "follow_up", "scheduled_at": LATEST}),
        "scheduled_at")

    note = f"/api/v1/visits/{clinic.visit_id}/note"
    for version in (2**70, 2**31):
        assert_422(client.put(note, json={"version": version, "sections": {}}), "version")
        assert_422(client.post(f"{note}/sign", json={"version": version}), "version")
    assert client.put(note, json={"version": 0, "sections": {}}).status_code == 200


def test_admin_filters_and_the_rota(client: TestClient, clinic: Clinic, sign_in: SignIn,
                                    services: Services) -> None:
    csrf = sign_in(clinic.admin)
    for name in ("since", "until"):
        assert_422(client.get("/api/v1/audit", params={name: LATEST}), name)
        assert_422(client.get("/api/v1/audit.csv", params={name: EARLIEST}), name)
        assert_422(client.get("/admin/audit", params={name: LATEST}), name)
    start = services.clock.now() + timedelta(days=1)
    assert_422(client.post("/api/v1/on-call", json={
        "user_id": clinic.coordinator.id, "starts_at": start.isoformat(), "ends_at": LATEST}),
        "ends_at")
    page = client.post("/admin/on-call", data={
        "csrf_token": csrf, "user_id": str(clinic.coordinator.id),
        "starts_at": "2030-01-01T08:00", "ends_at": "9999-12-31T23:59"})
    assert_422(page, "ends_at")
    assert "Enter a date from 1900 to 2200" in page.text


@pytest.mark.parametrize("raw", [LATEST, EARLIEST])
def test_the_cli_rota_refuses_them_too(raw: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        _instant(raw, "until", now=None)  # type: ignore[arg-type]
    assert refused.value.field == "--until"
