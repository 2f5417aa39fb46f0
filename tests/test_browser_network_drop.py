"""Issue 3's "done when": pull the patient's network for ten seconds, plug it back in,
and the call comes back by itself.

Playwright's offline mode does not touch WebRTC, so the patient's Chromium runs in a
network namespace of its own (tests/netns.py), joined to the host by a veth pair. The
app listens on the host side's address; the prescriber's Chromium (in the root
namespace) uses that address too, so the browsers' only path to each other, for
signaling and for media, is that pair. Taking its host side down for ten seconds is the
patient's cable pulled: their interface loses carrier and keeps its address.

The test proves that a drop happened (remote video stood still on both sides, and both
pages said something other than "connected") and that recovery happened by itself: both
sides decode new frames again and read "connected" within RECOVERY_LIMIT_S of the link
coming back, and the patient is back in the call without a second admission. Which
side is polite decides who restarts ICE (docs/signaling.md), so it runs with each.

With the server's default heartbeat the patient's socket mostly outlives the outage,
and the call comes back on the same peer connection (a ten-second outage is far from
ICE's "failed": rebuilding would be a bug). The "server-drops-socket" runs shorten the
heartbeat so that the server gives up on the patient's socket during the outage: the
prescriber's page sees the patient leave, closes that link (the patient might have
closed the tab), and a new connection is built once the patient's socket resumes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.netns import NetworkError, NetworkNamespace

if TYPE_CHECKING:
    from tests.browser_support import AppServer, Person

# The fixtures and helpers live there; importing the module here at the top would keep
# pytest from rewriting its asserts.
pytest_plugins = ["tests.browser_support"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTAGE_S = 10.0
# Link up -> both sides decode new frames and read "connected". Measured: about 2 s
# (docs/signaling.md, "Recovery"); the limit leaves room for a busy CI machine and for
# the slow path (signaling socket dropped and resumed, ICE restarted).
RECOVERY_LIMIT_S = 45.0
# Frames count as flowing again from the first one followed by this many more within a
# second (a stray frame from a jitter buffer is not recovery).
FLOWING_FRAMES = 10
# Peer ids that sort the patient first (polite) or last (impolite).
LOW_PEER_ID = "aaaaaaaa-network-drop"
HIGH_PEER_ID = "zzzzzzzz-network-drop"


@pytest.fixture
def patient_network() -> Iterator[NetworkNamespace]:
    from tests.browser_support import unavailable

    reason = NetworkNamespace.unavailable()
    if reason:
        unavailable(reason)
    network = NetworkNamespace()
    try:
        network.create()
    except NetworkError as exc:
        unavailable(f"cannot create a network namespace: {exc}")
    try:
        yield network
    finally:
        network.remove()


@pytest.fixture
def server_drops_patient() -> bool:
    """Whether the server's heartbeat gives up on the patient's socket during the outage
    (parametrized by the test)."""
    return False


@pytest.fixture
def veth_server(tmp_path: Path, patient_network: NetworkNamespace,
                server_drops_patient: bool) -> Iterator[AppServer]:
    """The app on the host side of the pair (its base URL, for cookies and Origin, too)."""
    from tests.browser_support import AppServer

    # The default heartbeat (ping every 5 s, 10 s for the pong) mostly outlasts a 10 s
    # outage; this one drops the patient's socket 3 to 5 s into it.
    settings = ({"ws_ping_interval_seconds": "1", "ws_ping_timeout_seconds": "2"}
                if server_drops_patient else {})
    server = AppServer(tmp_path, host=patient_network.host_address, settings=settings)
    try:
        server.start(demo=True)
        yield server
    finally:
        server.stop()


@pytest.fixture
def call_people(tmp_path: Path, patient_network: NetworkNamespace,
                veth_server: AppServer) -> Iterator[dict[str, Person]]:
    """The prescriber's Chromium in the root namespace, the patient's in theirs."""
    from tests.browser_support import CHROMIUM_ARGS, Person, chromium_executable, sync_playwright

    chromium = chromium_executable()
    # getUserMedia needs a secure context, which http://10.x.y.1:port is not. No flag
    # for mDNS: Chromium hides host addresses behind .local names only from pages
    # without camera or microphone access, and these have both (the test checks the
    # real addresses are in the candidates). A --disable-features flag would also
    # replace Playwright's own list: Chromium keeps the last of repeated switches.
    args = [*CHROMIUM_ARGS,
            f"--unsafely-treat-insecure-origin-as-secure={veth_server.base_url}"]
    browsers: list[Any] = []
    found: dict[str, Person] = {}
    with sync_playwright() as playwright:
        try:
            browsers.append(playwright.chromium.launch(executable_path=chromium, args=args))
            browsers.append(playwright.chromium.launch(
                executable_path=str(patient_network.wrap(chromium, tmp_path)), args=args))
            found["prescriber"] = Person(browsers[0], veth_server, "prescriber@demo.test")
            found["patient"] = Person(browsers[1], veth_server, "patient@demo.test",
                                      viewport={"width": 375, "height": 740})
            for person in found.values():
                person.tap_call()
                person.sign_in()
            yield found
        finally:
            for person in found.values():
                person.close()
            for launched in browsers:
                launched.close()


def flowing_again_at(frames: list[float], after: float) -> float | None:
    """The first frame presented after ``after`` that more keep following, if any."""
    later = [at for at in frames if at > after]
    for index, at in enumerate(later):
        following = [t for t in later[index + 1:index + 1 + FLOWING_FRAMES] if t - at <= 1000]
        if len(following) >= FLOWING_FRAMES:
            return at
    return None


def longest_gap(frames: list[float], start: float, end: float) -> float:
    """The longest stretch (ms) without a presented frame between ``start`` and ``end``."""
    times = [start, *(at for at in frames if start < at < end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def now_ms() -> float:
    return time.time() * 1000  # the pages' Date.now(): the same machine's clock


def story(person: Person, since: float) -> str:
    return (f"--- {person.email}: states "
            + ", ".join(f"{(at - since) / 1000:+.1f}s {text}" for at, text in person.state_times())
            + f"\n{person.call_log(since)}\n{person.call_stats()}\n{person.debug()}")


@pytest.mark.parametrize(("patient_polite", "server_drops_patient"), [
    pytest.param(True, False, id="patient-polite"),
    pytest.param(False, False, id="patient-impolite"),
    pytest.param(True, True, id="patient-polite-server-drops-socket"),
    pytest.param(False, True, id="patient-impolite-server-drops-socket"),
])
def test_pulling_the_patients_network_for_ten_seconds_and_restoring_it_brings_the_call_back(
        patient_network: NetworkNamespace, call_people: dict[str, Person],
        patient_polite: bool, server_drops_patient: bool) -> None:
    patient, prescriber = call_people["patient"], call_people["prescriber"]
    both = (patient, prescriber)
    visit_id = patient.first_visit_id()
    patient.use_peer_id(visit_id, LOW_PEER_ID if patient_polite else HIGH_PEER_ID)
    prescriber.use_peer_id(visit_id, HIGH_PEER_ID if patient_polite else LOW_PEER_ID)

    patient.join_waiting_room(visit_id)
    prescriber.admit(patient, visit_id)
    for person in both:
        person.first_frame_at()
        person.expect_state("connected")
        person.assert_video_moving("after admission")
    own_address = {patient.email: patient_network.address,
                   prescriber.email: patient_network.host_address}
    streams = {}
    for person in both:
        stats = person.call_stats()
        assert stats is not None and stats["state"] == "connected", stats
        # Host candidates with real addresses on the pair (no mDNS names): the
        # patient's only network is the pair.
        assert any(f" {own_address[person.email]} " in line for line in stats["candidates"]), \
            f"{person.email}: no host candidate on the pair: {stats['candidates']}"
        streams[person.email] = person.remote_stream_id()
        person.record_states()
        person.watch_frames()
    time.sleep(1)

    pulled_at = now_ms()
    patient_network.set_link(up=False)
    time.sleep(OUTAGE_S)
    plugged_at = now_ms()
    patient_network.set_link(up=True)

    # Both sides decode new frames and say "connected" again, by themselves.
    deadline = time.monotonic() + RECOVERY_LIMIT_S
    recovered: dict[str, float] = {}
    while time.monotonic() < deadline and len(recovered) < len(both):
        for person in both:
            if person.email in recovered:
                continue
            again = flowing_again_at(person.frame_times(), plugged_at)
            state = person.page.get_by_test_id("connection-state").text_content()
            if again is not None and state == "connected":
                recovered[person.email] = again
        time.sleep(0.25)
    missing = [p for p in both if p.email not in recovered]
    assert not missing, (
        f"no recovery within {RECOVERY_LIMIT_S:.0f} s of the link coming back for "
        + ", ".join(p.email for p in missing) + "\n"
        + "\n".join(story(p, pulled_at) for p in both))

    # Whether the prescriber's page was told the patient had left (the server gave up on
    # their socket): a link to a peer that left whose media stopped is closed (the peer
    # may have closed the tab), and a new one is built when they come back.
    patient_left = any("patient" not in roles for at, roles in prescriber.presences()
                       if at > pulled_at)
    rebuilt = []
    for person in both:
        # A drop really happened: the remote video stood still for most of the outage,
        # and the page said so.
        gap = longest_gap(person.frame_times(), pulled_at, recovered[person.email])
        assert gap > OUTAGE_S * 1000 * 0.6, \
            f"{person.email}: the video never stopped ({gap:.0f} ms)\n{story(person, pulled_at)}"
        during = [text for at, text in person.state_times()
                  if pulled_at < at < recovered[person.email]]
        assert any(text != "connected" for text in during), \
            f"{person.email} showed no trouble during the outage\n{story(person, pulled_at)}"
        # New frames, decoded by the same connection as before the drop: it was
        # restarted (or recovered by itself), not rebuilt.
        before = person.call_stats()
        person.assert_video_moving("after the network came back")
        after = person.call_stats()
        assert before is not None and after is not None
        assert after["state"] == "connected", after
        assert after["framesDecoded"] > before["framesDecoded"], (before, after)
        if after["connections"] > 1 or person.remote_stream_id() != streams[person.email]:
            rebuilt.append(person.email)
    # Otherwise the connection was restarted (or came back by itself), never rebuilt:
    # a ten-second outage is far from ICE's "failed".
    assert patient_left or not rebuilt, \
        f"rebuilt: {rebuilt}\n" + "\n".join(story(p, pulled_at) for p in both)
    sockets = patient.page.evaluate("window.__sockets")
    if server_drops_patient:
        assert patient_left and sockets > 1, \
            f"the server never dropped the patient\n{story(patient, pulled_at)}"

    # No second admission: the prescriber has nobody to admit (and never clicked admit
    # again), the patient never went back to the waiting room, and every welcome the
    # patient's socket got after the first (if it had to reconnect) resumed its place.
    assert prescriber.page.get_by_test_id("admit").count() == 0
    assert "waiting" not in patient.states(), patient.states()
    assert patient.page.locator("#waiting-room").is_hidden()
    welcomes = patient.welcomes()
    assert welcomes[0]["state"] == "waiting"
    for welcome in welcomes[1:]:
        assert welcome["state"] == "admitted" and welcome["resumed"] is True, welcome

    recovery = {email: (at - plugged_at) / 1000 for email, at in recovered.items()}
    print(f"\npatient {'polite' if patient_polite else 'impolite'}: link up -> new frames "
          f"decoded: patient {recovery[patient.email]:.1f} s, prescriber "
          f"{recovery[prescriber.email]:.1f} s; patient signaling sockets: {sockets}; "
          f"patient left presence: {patient_left}; rebuilt: {rebuilt or 'no'}")
    for person in both:
        print(story(person, pulled_at).split("\n")[0])
