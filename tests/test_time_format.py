"""One format for a point in time, server and browser: the ``moment`` filter
(web/rendering.py) and static/moment.js give the same text for the same instant, zone
and day (run in node, the browser's Intl); the pages use it and declare their zone."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from server.services import Services
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn
from tests.test_timezones import PACIFIC, scheduled_at, set_zone
from web.rendering import STATIC, moment, zone_names

ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "America/Phoenix",
         "Pacific/Honolulu", "UTC", "Europe/London", "Europe/Berlin", "Asia/Dubai",
         "Asia/Kolkata", "Australia/Sydney")
# "Now" on the day the United States went to summer time in 2026.
NOW = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
INSTANTS = (
    NOW, NOW - timedelta(days=1), NOW + timedelta(days=1), NOW - timedelta(days=400),
    datetime(2027, 1, 2, 0, 0, tzinfo=UTC),
    # New York: 01:59 EST, then 03:00 EDT; and back in November.
    datetime(2026, 3, 8, 6, 59, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
    datetime(2025, 11, 2, 5, 59, tzinfo=UTC), datetime(2025, 11, 2, 6, 0, tzinfo=UTC),
    # London and Berlin: the last Sunday of March; Sydney in April.
    datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 15, 59, tzinfo=UTC), datetime(2026, 4, 4, 16, 0, tzinfo=UTC),
    # Local midnight in New York (00:00, never 24:00), and a minute before.
    datetime(2026, 3, 9, 4, 0, tzinfo=UTC), datetime(2026, 3, 9, 3, 59, tzinfo=UTC),
)

RUNNER = """
import { moment } from "./moment.mjs";
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map((c) =>
  moment(c.at, { zone: c.zone, names: JSON.parse(c.names), now: c.now }))));
"""


def in_node(tmp_path: Path, cases: list[dict[str, Any]]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        from tests.browser_support import unavailable

        unavailable("node is not installed (it runs the browser's time module)")
    (tmp_path / "moment.mjs").write_text((STATIC / "moment.js").read_text())
    (tmp_path / "run.mjs").write_text(RUNNER)
    done = subprocess.run([node, str(tmp_path / "run.mjs")], input=json.dumps(cases),
                          capture_output=True, text=True, check=True, timeout=60)
    found: list[str] = json.loads(done.stdout)
    return found


def test_the_browser_writes_a_time_as_the_server_does(tmp_path: Path) -> None:
    cases = [{"at": at.isoformat(), "zone": zone, "now": NOW.isoformat(),
              "names": zone_names(zone, NOW)} for zone in ZONES for at in INSTANTS]
    expected = [moment(datetime.fromisoformat(c["at"]), c["zone"], NOW) for c in cases]
    assert in_node(tmp_path, cases) == expected
    # The format itself, so agreeing on something else cannot pass.
    assert expected[ZONES.index("America/New_York") * len(INSTANTS):][:6] == [
        "11:00 EDT", "Sat 7 Mar, 10:00 EST", "Mon 9 Mar, 11:00 EDT",
        "Sat 1 Feb 2025, 10:00 EST", "Fri 1 Jan 2027, 19:00 EST", "01:59 EST"]
    dubai = expected[ZONES.index("Asia/Dubai") * len(INSTANTS)]
    assert dubai == "19:00 UTC+4"


def test_a_zone_the_server_does_not_know_reads_as_utc(tmp_path: Path) -> None:
    cases = [{"at": NOW.isoformat(), "zone": "Mars/Olympus", "now": NOW.isoformat(),
              "names": "{}"}]
    assert in_node(tmp_path, cases) == [moment(NOW, "Mars/Olympus", NOW)] == ["15:00 UTC"]


def test_pages_declare_the_readers_zone_and_name_the_day(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services,
) -> None:
    set_zone(run, services, clinic.patient.id, PACIFIC)
    tomorrow_id = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                      timedelta(days=1))
    tomorrow = scheduled_at(run, services, tomorrow_id)
    now = services.clock.now()
    sign_in(clinic.patient)
    home = client.get("/home").text
    assert f'data-time-zone="{PACIFIC}"' in home
    names = json.loads(re.search(r'data-zone-names="([^"]*)"', home)
                       .group(1).replace("&#34;", '"'))  # type: ignore[union-attr]
    assert set(names.values()) == {"PST", "PDT"}
    shown = moment(tomorrow, PACIFIC, now)
    assert re.fullmatch(r"\w{3} \d{1,2} \w{3}, \d\d:\d\d P[SD]T", shown)
    assert f">{shown}</time>" in home
    checkin = client.get(f"/visits/{tomorrow_id}/checkin").text
    assert f"With {clinic.prescriber.name}, {shown}." in checkin

    sign_in(clinic.prescriber)
    room = client.get(f"/visits/{tomorrow_id}").text
    clinic_zone = services.settings.clinic_timezone
    assert f'data-time-zone="{clinic_zone}"' in room
    assert moment(tomorrow, clinic_zone, now) in room
