"""Apps, people and figures for the fault tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from server.auth import COOKIE_NAME
from server.settings import Settings
from tests.clinic import Clinic, Person
from tests.conftest import TEST_SECRET, SignIn
from tests.faults.writes import Http, Writes


def settings_for(database_url: str, var_dir: Path, **values: Any) -> Settings:
    return Settings(**{"env": "test", "database_url": database_url,
                       "secret_key": TEST_SECRET, "base_url": "http://testserver",
                       "var_dir": var_dir, "run_background_tasks": False,
                       **values}).completed()


def credentials(sign_in: SignIn, person: Person) -> tuple[str, dict[str, str]]:
    """A real session for ``person``: its cookie value, and the headers an API client
    sends with it. The client's own jar is left empty."""
    csrf = sign_in(person)
    cookie = sign_in.client.cookies.get(COOKIE_NAME) or ""
    sign_in.client.cookies.clear()
    sign_in.client.headers.pop("X-CSRF-Token", None)
    return cookie, {"cookie": f"{COOKIE_NAME}={cookie}", "X-CSRF-Token": csrf}


def open_escalation(client: TestClient, clinic: Clinic, prescriber: dict[str, str],
                    coordinator: dict[str, str]) -> int:
    """An escalation the coordinator has acknowledged, so that timeline notes go in."""
    raised = client.post("/api/v1/escalations", headers=prescriber, json={
        "patient_id": clinic.patient.id, "visit_id": clinic.visit_id, "level": "urgent",
        "reason": "psychosis"})
    assert raised.status_code == 201, raised.text
    escalation_id: int = raised.json()["id"]
    taken = client.post(f"/api/v1/escalations/{escalation_id}/acknowledge",
                        headers=coordinator)
    assert taken.status_code == 200, taken.text
    return escalation_id


@dataclass(frozen=True)
class Team:
    """The three people a fault test writes as, signed in (their cookies, for sockets),
    and the escalation the coordinator has taken, for timeline notes."""

    clinic: Clinic
    patient_cookie: str
    prescriber_cookie: str
    coordinator_cookie: str
    patient: dict[str, str]
    prescriber: dict[str, str]
    coordinator: dict[str, str]
    escalation_id: int

    def writes(self, http: Http, **options: Any) -> Writes:
        """Writes as these people through ``http`` (the test client, or a live server's)."""
        return Writes(http, self.clinic.visit_id, self.escalation_id, self.prescriber,
                      self.coordinator, self.patient, **options)


def sign_in_team(client: TestClient, sign_in: SignIn, clinic: Clinic) -> Team:
    patient_cookie, patient = credentials(sign_in, clinic.patient)
    prescriber_cookie, prescriber = credentials(sign_in, clinic.prescriber)
    coordinator_cookie, coordinator = credentials(sign_in, clinic.coordinator)
    return Team(clinic, patient_cookie, prescriber_cookie, coordinator_cookie, patient,
                prescriber, coordinator,
                open_escalation(client, clinic, prescriber, coordinator))


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               step: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


def report(name: str, figures: dict[str, float | int | str]) -> None:
    """Figures for docs/reliability.md (shown with ``pytest -s``)."""
    shown = ", ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in figures.items())
    print(f"\n[{name}] {shown}")
