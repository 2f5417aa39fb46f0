"""Two real Chromium browsers in a visit whose clinic allows media through TURN only
(``MENDWELL_ICE_TRANSPORT_POLICY=relay``), with coturn started by the test.

Both decode each other's video, and WebRTC's own statistics show that the selected
candidate pair is relay to relay on both sides and that no browser gathered a host or
server-reflexive candidate (the other side never learns a home IP address). The TURN
credentials live 60 s: the page asks for fresh ones before they expire, and an ICE
restart after the first ones expired connects again through TURN with the new ones.

coturn listens and relays on loopback: Chromium allocates on a TURN server at
127.0.0.1 and uses loopback relay candidates (no flag needed; coturn needs
``--allow-loopback-peers``, see tests/turn_support.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.turn_support import Coturn, coturn_log, run_coturn

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

pytest_plugins = ["tests.browser_support"]

pytestmark = [pytest.mark.browser, pytest.mark.coturn]

TURN_TTL_SECONDS = 60  # the shortest the settings allow

# Per peer connection of the page: its policy, its TURN username, the selected pair's
# candidates, and the type of every candidate gathered (local) and received (remote).
ROUTES = """async () => {
  const room = window.mendwellVisitRoom;
  const routes = [];
  for (const [peerId, link] of room.mesh.links) {
    const config = link.pc.getConfiguration();
    const stats = await link.pc.getStats();
    let pair = null;
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) {
        pair = stats.get(report.selectedCandidatePairId);
      }
    });
    const local = pair ? stats.get(pair.localCandidateId) : null;
    const remote = pair ? stats.get(pair.remoteCandidateId) : null;
    const types = (kind) => [...stats.values()].filter((r) => r.type === kind)
      .map((r) => r.candidateType);
    routes.push({
      peerId,
      state: link.pc.connectionState,
      policy: config.iceTransportPolicy,
      turnUsername: (config.iceServers.find((s) => s.username) || {}).username || null,
      pair: pair ? pair.id : null,
      bytesReceived: pair ? pair.bytesReceived : 0,
      local: local ? local.candidateType : null,
      localAddress: local ? local.address : null,
      remote: remote ? remote.candidateType : null,
      gathered: types("local-candidate"),
      received: types("remote-candidate"),
    });
  }
  return routes;
}"""

ALL_RELAYED = f"""async () => {{
  const routes = await ({ROUTES})();
  return routes.length === 1 && routes.every((r) => r.state === "connected" &&
    r.local === "relay" && r.remote === "relay");
}}"""


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    with run_coturn(tmp_path) as started:
        yield started


@pytest.fixture
def app_server(tmp_path: Path, coturn: Coturn) -> Iterator[AppServer]:
    from tests.browser_support import AppServer

    server = AppServer(tmp_path, settings={
        "turn_urls": coturn.url, "turn_secret": coturn.secret,
        "turn_ttl_seconds": str(TURN_TTL_SECONDS), "ice_transport_policy": "relay"})
    server.start(demo=True)
    yield server
    server.stop()


def routes(person: Person) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = person.page.evaluate(ROUTES)
    return found


def wait_relayed(person: Person, tmp_path: Path, when: str, timeout: float = 15_000) -> None:
    try:
        person.page.wait_for_function(ALL_RELAYED, timeout=timeout, polling=250)
    except Exception as exc:
        raise AssertionError(f"{person.email}: no relay-to-relay pair {when}: "
                             f"{routes(person)}\n{person.debug()}\n{coturn_log(tmp_path)}"
                             ) from exc


def expiry_of(username: str | None) -> int:
    assert username, "the peer connection has no TURN credentials"
    return int(username.split(":", 1)[0])


def test_relay_only_clinic_sends_all_media_through_turn(
        app_server: AppServer, people: dict[str, Person], coturn: Coturn,
        tmp_path: Path) -> None:
    patient, prescriber = people["patient"], people["prescriber"]
    visit_id = patient.first_visit_id()

    patient.join_waiting_room(visit_id)
    prescriber.admit(patient, visit_id)
    for person in (patient, prescriber):
        person.expect_state("connected")
        person.assert_video_moving("through TURN")
        wait_relayed(person, tmp_path, "after admission")

    first: dict[str, dict[str, Any]] = {}
    for person in (patient, prescriber):
        (route,) = routes(person)
        first[person.email] = route
        assert route["policy"] == "relay", route
        # The relayed address is coturn's; nothing else was gathered or received, so
        # neither browser ever saw the other's own address.
        assert route["localAddress"] == coturn.host, route
        assert set(route["gathered"]) == {"relay"}, route
        assert set(route["received"]) == {"relay"}, route
        assert route["bytesReceived"] > 0, route

    # The credentials from the welcome live 60 s; the page asks for fresh ones before
    # they expire (at 80 % of their life) and hands them to its peer connection.
    for person in (patient, prescriber):
        old = expiry_of(first[person.email]["turnUsername"])
        person.page.wait_for_function(
            f"""() => {{
              const links = [...window.mendwellVisitRoom.mesh.links.values()];
              return links.length === 1 && links.every((link) => {{
                const found = link.pc.getConfiguration().iceServers.find((s) => s.username);
                return found && Number(found.username.split(":")[0]) > {old};
              }});
            }}""", timeout=(TURN_TTL_SECONDS + 10) * 1000, polling=500)

    # Once the first credentials have expired, a new ICE generation can only allocate
    # on coturn with the fresh ones: restart ICE and the call comes back through TURN.
    expired_at = max(expiry_of(r["turnUsername"]) for r in first.values())
    allocated_before = len(coturn.allocated())
    time.sleep(max(0.0, expired_at + 1 - time.time()))
    # The impolite side restarts, as the page itself does (docs/signaling.md).
    restarted = [person.page.evaluate("""() => [...window.mendwellVisitRoom.mesh.links.values()]
        .filter((link) => !link.polite).map((link) => link.restartIce())""")
        for person in (patient, prescriber)]
    assert sorted(restarted) == [[], [True]], restarted
    for person in (patient, prescriber):
        person.page.wait_for_function(
            f"""async () => {{
              const routes = await ({ROUTES})();
              return routes.length === 1 && routes[0].local === "relay" &&
                routes[0].remote === "relay" && routes[0].pair !==
                {first[person.email]["pair"]!r};
            }}""", timeout=15_000, polling=250)
        person.expect_state("connected")
        # The new path may need a moment (and a key frame) before frames flow again.
        waited = time.monotonic()
        while person.count_frames()["frames"] < 5 and time.monotonic() - waited < 10:
            pass
        person.assert_video_moving("after an ICE restart with refreshed credentials")
    # coturn granted the new allocations to the refreshed credentials (the expired ones
    # would be refused: tests/test_webrtc_turn.py).
    fresh = coturn.allocated()[allocated_before:]
    assert fresh and all(expiry_of(name) > expired_at for name in fresh), fresh
