"""Join to video: prescriber clicks admit -> both Chromium tabs decode remote frames.

Debian's headless Chromium (Playwright for Python, fake camera and microphone), the app
as ``mendwell serve --demo`` on loopback, a fresh visit per run (made through the API).
Reuses the live-server and browser helpers of tests/browser_support.py.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import pct, save, table

VISITS = 10
BUDGET_MEDIAN_MS = 1000


def run() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.browser_support import CHROMIUM_ARGS, AppServer, Person

    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("Chromium not installed (Debian package `chromium`)")
    times: list[float] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp))
        server.start(demo=True)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable,
                                                     args=CHROMIUM_ARGS)
                patient = Person(browser, server, "patient@demo.test",
                                 viewport={"width": 375, "height": 740})
                prescriber = Person(browser, server, "prescriber@demo.test")
                try:
                    for person in (patient, prescriber):
                        person.sign_in()
                    patient_id = patient.page.request.get("/api/v1/session").json()["user"]["id"]
                    csrf = prescriber.page.request.get("/api/v1/session").json()["csrf_token"]
                    for n in range(VISITS + 1):  # the first run warms up, not counted
                        try:
                            ms = one_visit(patient, prescriber, patient_id, csrf)
                        except Exception as exc:
                            failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                            continue
                        if n > 0:
                            times.append(ms)
                finally:
                    patient.close()
                    prescriber.close()
                    browser.close()
        finally:
            server.stop()
    result = {"visits": len(times), "failures": len(failures), "first_failures": failures[:3],
              "median_ms": round(statistics.median(times), 1) if times else None,
              "p90_ms": pct(times, 90), "min_ms": round(min(times), 1) if times else None,
              "max_ms": round(max(times), 1) if times else None,
              "all_ms": [round(t, 1) for t in times]}
    table("join: admit click -> both sides decoding remote video (headless Chromium, loopback)",
          ["visits", "median ms", "p90 ms", "min ms", "max ms", "failures", "budget"],
          [[result["visits"], result["median_ms"], result["p90_ms"], result["min_ms"],
            result["max_ms"], result["failures"], f"median < {BUDGET_MEDIAN_MS} ms"]])
    if failures:
        print(f"  failures: {failures[:3]}")
    print(f"  -> {save('join', result)}")
    return result


def one_visit(patient: Any, prescriber: Any, patient_id: int, csrf: str) -> float:
    from playwright.sync_api import expect

    created = prescriber.page.request.post("/api/v1/visits", headers={"X-CSRF-Token": csrf},
                                           data={"patient_id": patient_id, "kind": "follow_up",
                                                 "scheduled_at": (datetime.now(UTC) + timedelta(
                                                     minutes=5)).isoformat()})
    assert created.status == 201, created.text()
    visit_id = created.json()["id"]
    page = patient.page
    page.goto(f"/visits/{visit_id}")
    if page.url.endswith("/where"):  # where they are first (invariant 10; not measured)
        page.get_by_test_id("where-address").fill("12 Elm Street, Springfield")
        page.get_by_test_id("where-state").select_option("MA")
        page.get_by_test_id("where-callback").fill("617 555 0100")
        page.get_by_test_id("where-confirm").check()
        page.get_by_test_id("where-submit").click()
        page.wait_for_url(f"**/visits/{visit_id}")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"local-video\"]').videoWidth > 0",
        timeout=10_000)
    page.get_by_test_id("join").click()
    expect(page.get_by_test_id("connection-state")).to_have_text("waiting", timeout=15_000)
    prescriber.page.goto(f"/visits/{visit_id}")
    button = prescriber.page.get_by_test_id("admit")
    button.wait_for(state="visible", timeout=15_000)
    for person in (prescriber, patient):
        person.watch_first_frame()
    clicked_at: float = prescriber.page.evaluate("Date.now()")
    button.click()
    decoded = max(p.first_frame_at() for p in (patient, prescriber)) - clicked_at
    for person in (patient, prescriber):
        person.page.goto("about:blank")
    return decoded
