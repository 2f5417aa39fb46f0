"""Browser tests' real services: the app in a uvicorn subprocess, headless Chromium.

The app runs as ``mendwell serve --demo`` in its own process (so a test can kill it and
start it again, as plain ``mendwell serve``, on the same port and database). Chromium is
Debian's, driven by Playwright for Python with fake camera and microphone devices.
Without Chromium the tests skip with one line; with MENDWELL_REQUIRE_SERVICES=1 they
fail instead.

Modules use these fixtures with ``pytest_plugins = ["tests.browser_support"]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.databases import require_services
from tests.log_scanner import LOG_SCAN

DEMO_PASSWORD = "browser-demo-password-1"
SECRET_KEY = "browser-test-secret-key-that-is-long-enough-0123456789"
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
START_TIMEOUT = 30.0
STATE = "connection-state"

# --- in-page probes (plain JavaScript run by Playwright) ---------------------------------

# Records when the first remote frame was decoded and painted (epoch ms).
WATCH_FIRST_FRAME = """() => {
  window.__firstRemoteFrameAt = null;
  const watch = () => {
    const video = document.querySelector('[data-testid="remote-video"]');
    if (video && !video.__watched) {
      video.__watched = true;
      video.requestVideoFrameCallback(() => {
        if (window.__firstRemoteFrameAt === null) window.__firstRemoteFrameAt = Date.now();
      });
    }
    if (window.__firstRemoteFrameAt === null) setTimeout(watch, 5);
  };
  watch();
}"""

# How many frames the remote video presents in `ms`, and how far currentTime moved.
COUNT_FRAMES = """async (ms) => {
  const video = document.querySelector('[data-testid="remote-video"]');
  if (!video) return { frames: 0, advanced: 0, width: 0 };
  let frames = 0;
  const start = video.currentTime;
  const count = () => { frames += 1; video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { frames, advanced: video.currentTime - start, width: video.videoWidth };
}"""

# Every text connection-state shows from now on, in order (and when: epoch ms).
RECORD_STATES = """() => {
  const element = document.querySelector('[data-testid="connection-state"]');
  window.__states = [element.textContent];
  window.__stateTimes = [[Date.now(), element.textContent]];
  new MutationObserver(() => {
    window.__states.push(element.textContent);
    window.__stateTimes.push([Date.now(), element.textContent]);
  }).observe(element, { childList: true, characterData: true, subtree: true });
}"""

# From now on, when (epoch ms) each remote frame is presented, following
# `remote-video` to a new element if the tile is replaced.
WATCH_FRAMES = """() => {
  window.__frameTimes = [];
  let watched = null;
  const follow = (video) => {
    const onFrame = () => {
      if (video !== watched) return;
      window.__frameTimes.push(Date.now());
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  setInterval(() => {
    const video = document.querySelector('[data-testid="remote-video"]');
    if (video && video !== watched) {
      watched = video;
      follow(video);
    }
  }, 50);
}"""

RELAY_ONLY = """(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function RTCPeerConnection(config) {
    return new Native({ ...(config || {}), iceTransportPolicy: "relay" });
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""

# Keeps every RTCPeerConnection the page makes (window.__pcs) and every `welcome` the
# signaling socket receives (window.__welcomes), for tests to inspect.
TAP_CALL = """(() => {
  const NativePeerConnection = window.RTCPeerConnection;
  window.__pcs = [];
  window.__callLog = [];
  const note = (...what) => window.__callLog.push([Date.now(), ...what]);
  window.RTCPeerConnection = function RTCPeerConnection(...args) {
    const pc = new NativePeerConnection(...args);
    const n = window.__pcs.push(pc);
    note(`pc${n}`, "created");
    for (const event of ["connectionstatechange", "iceconnectionstatechange",
                         "signalingstatechange", "icegatheringstatechange"]) {
      pc.addEventListener(event, () => note(`pc${n}`, event.replace("statechange", ""),
        { connection: pc.connectionState, ice: pc.iceConnectionState,
          signaling: pc.signalingState, gathering: pc.iceGatheringState }[
          event.replace("statechange", "").replace("iceconnection", "ice")
            .replace("icegathering", "gathering")]));
    }
    return pc;
  };
  window.RTCPeerConnection.prototype = NativePeerConnection.prototype;
  const NativeWebSocket = window.WebSocket;
  window.__welcomes = [];
  window.__sockets = 0;
  window.WebSocket = function WebSocket(url, protocols) {
    const socket = new NativeWebSocket(url, protocols);
    if (String(url).includes("/ws/visits/")) {
      const n = (window.__sockets += 1);
      const describe = (message) => (message.description ? message.description.type
        : message.candidate !== undefined ? "candidate" : "");
      socket.addEventListener("open", () => note(`ws${n}`, "open"));
      socket.addEventListener("close", (event) => note(`ws${n}`, "close", event.code));
      socket.addEventListener("message", (event) => {
        try {
          const message = JSON.parse(event.data);
          if (message.type === "welcome") window.__welcomes.push({ at: Date.now(), ...message });
          if (message.type === "presence") {
            note(`ws${n}`, "<-", "presence", (message.participants || []).map((p) => p.role));
          } else if (message.type !== "pong" && describe(message) !== "candidate") {
            note(`ws${n}`, "<-", message.type, describe(message));
          }
        } catch {
          // not ours to judge
        }
      });
      const send = socket.send.bind(socket);
      socket.send = (data) => {
        try {
          const message = JSON.parse(data);
          if (message.type !== "ping" && describe(message) !== "candidate") {
            note(`ws${n}`, "->", message.type, describe(message));
          }
        } catch {
          // not ours to judge
        }
        return send(data);
      };
    }
    return socket;
  };
  Object.assign(window.WebSocket, {
    CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3, prototype: NativeWebSocket.prototype });
})();"""

# The open peer connection's video: frames decoded, its state, and the candidate pair
# in use (the newest connection: a rebuilt one replaces the old).
CALL_STATS = """async () => {
  const pcs = (window.__pcs || []).filter((pc) => pc.connectionState !== "closed");
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  let framesDecoded = 0;
  let pair = null;
  const byId = new Map();
  stats.forEach((report) => byId.set(report.id, report));
  stats.forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      framesDecoded += report.framesDecoded || 0;
    }
    if (report.type === "transport" && report.selectedCandidatePairId) {
      const selected = byId.get(report.selectedCandidatePairId);
      const local = selected && byId.get(selected.localCandidateId);
      const remote = selected && byId.get(selected.remoteCandidateId);
      pair = `${local && local.address} -> ${remote && remote.address}`;
    }
  });
  const sdp = pc.localDescription ? pc.localDescription.sdp : "";
  const candidates = sdp.split("\\r\\n").filter((line) => line.startsWith("a=candidate"));
  return { connections: window.__pcs.length, state: pc.connectionState,
           iceState: pc.iceConnectionState, framesDecoded, pair, candidates };
}"""

# The remote audio of every open peer connection of the visit room: RTP packets and
# decoded samples received, and the energy of what was played out (Chromium's fake
# microphone beeps, so a working path carries energy, silence would not).
REMOTE_AUDIO = """async () => {
  const found = [];
  for (const link of window.mendwellVisitRoom.mesh.links.values()) {
    const stats = await link.pc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        found.push({ packets: report.packetsReceived || 0,
                     samples: report.totalSamplesReceived || 0,
                     energy: report.totalAudioEnergy || 0 });
      }
    });
  }
  return found;
}"""

REMOTE_STREAM_ID = """() => {
  const video = document.querySelector('[data-testid="remote-video"]');
  return video && video.srcObject ? video.srcObject.id : null;
}"""


def unavailable(reason: str) -> None:
    if require_services():
        pytest.fail(f"MENDWELL_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def chromium_executable() -> str:
    found = shutil.which("chromium")
    if found is None:
        unavailable("Chromium not installed (Debian package `chromium`)")
    assert found is not None
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class AppServer:
    """``mendwell serve`` on a fixed port and database, which a test may kill and restart.

    ``host`` is the address it listens on, and the one in its base URL.
    """

    def __init__(self, directory: Path, port: int | None = None,
                 settings: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.settings = settings or {}
        self.host = host
        self.port = port or free_port(host)
        # Visit signaling's own listener: kept across restarts, like the HTTP port.
        self.signaling_port = free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.database = directory / "mendwell.db"
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MENDWELL_")}
        env.update({
            "MENDWELL_ENV": "test",
            "MENDWELL_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
            "MENDWELL_SECRET_KEY": SECRET_KEY,
            "MENDWELL_DEMO_PASSWORD": DEMO_PASSWORD,
            "MENDWELL_VAR_DIR": str(self.directory),
            "MENDWELL_BASE_URL": self.base_url,
            **{f"MENDWELL_{name.upper()}": value for name, value in self.settings.items()},
        })
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "server.cli", *args]

    def start(self, *, demo: bool = False) -> None:
        """Serve (``demo``: first migrate and seed the demo clinic, ``serve --demo``)."""
        assert self.process is None, "already running"
        self.starts += 1
        self.log = (self.directory / f"server-{self.starts}.log").open("wb")
        demo_flag = ["--demo"] if demo else []
        self.process = subprocess.Popen(
            self.command("serve", *demo_flag, "--host", self.host, "--port", str(self.port),
                         "--signaling-port", str(self.signaling_port)),
            env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.kill()  # closes the log
                raise AssertionError(f"the server exited at start:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the server did not answer /healthz in {START_TIMEOUT} s:\n"
                             f"{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 (our own http:// URL)
                    f"{self.base_url}/healthz", timeout=1) as response:
                return bool(response.status == 200 and
                            json.loads(response.read())["status"] == "ok")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to any socket, like a crashed or rescheduled instance."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def _stop(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            path = Path(self.log.name)
            self.log = None
            LOG_SCAN.scan_output(f"mendwell serve ({path.name})",
                                 path.read_text(errors="replace"))

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted(self.directory.glob("server-*.log"))
        if not logs:
            return "(no server log)"
        text = logs[-1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[AppServer]:
    server = AppServer(tmp_path)
    server.start(demo=True)
    yield server
    server.stop()


def sync_playwright() -> Any:
    """Playwright's sync context manager (skips, or fails in CI, without Playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    return sync_playwright()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Person:
    """One person's own browser context (cookies, storage), signed in through /login."""

    def __init__(self, browser: Any, server: AppServer, email: str, *,
                 viewport: dict[str, int] | None = None, timezone_id: str | None = None,
                 bypass_csp: bool = False) -> None:
        self.server = server
        self.email = email
        # bypass_csp: only for a context that injects axe-core, which our CSP refuses.
        self.context = browser.new_context(
            base_url=server.base_url, viewport=viewport or {"width": 1100, "height": 800},
            permissions=["camera", "microphone"], timezone_id=timezone_id,
            bypass_csp=bypass_csp)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(
            f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def block_direct_connections(self) -> None:
        """Stand in for a network that lets no peer-to-peer media through: with a relay-only
        policy and no TURN server, this browser has no path to anyone."""
        self.context.add_init_script(RELAY_ONLY)

    def tap_call(self) -> None:
        """Keep the page's peer connections and signaling welcomes for ``call_stats()``
        and ``welcomes()`` (from the next page load on)."""
        self.context.add_init_script(TAP_CALL)

    def use_peer_id(self, visit_id: int, peer_id: str) -> None:
        """Join ``visit_id`` with this peer id (from the next page load on): the server
        makes the peer whose id sorts first the polite one (docs/signaling.md)."""
        key = json.dumps(f"mendwell.peer.{visit_id}")
        self.context.add_init_script(
            f"(() => {{ if (!sessionStorage.getItem({key})) "
            f"sessionStorage.setItem({key}, {json.dumps(peer_id)}); }})();")

    def sign_in(self) -> None:
        page = self.page
        page.goto("/login")
        page.get_by_test_id("email").fill(self.email)
        page.get_by_test_id("password").fill(DEMO_PASSWORD)
        with page.expect_response(lambda r: r.request.method == "POST" and
                                  r.url.endswith("/login")) as posted:
            page.get_by_test_id("login").click()
        response = posted.value
        if response.status == 403 and b"csrf_failed" in response.body():
            raise AssertionError(
                "the sign-in form was refused as cross-site: the browser sent "
                f"Origin: {response.request.header_value('origin')!r} (with "
                "Referrer-Policy: no-referrer, browsers send Origin: null on same-origin "
                "form posts)")
        page.wait_for_url(lambda url: "/login" not in url)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()

    def debug(self) -> str:
        return f"--- {self.email} console:\n" + "\n".join(self.console[-30:])

    def first_visit_id(self) -> int:
        """The patient's next visit, as their home page lists it (the demo's visit soon)."""
        self.page.goto("/home")
        found = self.page.locator(".visit[data-visit-id]").first.get_attribute("data-visit-id")
        assert found is not None, "the patient has no visit listed"
        return int(found)

    # In-page probes (plain JavaScript, run by Playwright).

    def watch_first_frame(self) -> None:
        """Record when the first remote frame is decoded and painted (epoch ms)."""
        self.page.evaluate(WATCH_FIRST_FRAME)

    def first_frame_at(self, timeout: float = 15_000) -> float:
        self.page.wait_for_function("() => window.__firstRemoteFrameAt !== null",
                                    timeout=timeout)
        at: float = self.page.evaluate("window.__firstRemoteFrameAt")
        return at

    def count_frames(self, ms: int = 1000) -> dict[str, Any]:
        """Frames the remote video presented in ``ms``, and how far currentTime moved."""
        seen: dict[str, Any] = self.page.evaluate(COUNT_FRAMES, ms)
        return seen

    def record_states(self) -> None:
        """From now on, keep every text that connection-state shows (``states()``)."""
        self.page.evaluate(RECORD_STATES)

    def states(self) -> list[str]:
        seen: list[str] = self.page.evaluate("window.__states")
        return seen

    def remote_stream_id(self) -> str | None:
        found: str | None = self.page.evaluate(REMOTE_STREAM_ID)
        return found

    def call_stats(self) -> dict[str, Any] | None:
        """See CALL_STATS (needs ``tap_call()``)."""
        found: dict[str, Any] | None = self.page.evaluate(CALL_STATS)
        return found

    def presences(self) -> list[tuple[float, list[str]]]:
        """When each `presence` came, and the roles in it (needs ``tap_call()``)."""
        log: list[list[Any]] = self.page.evaluate("window.__callLog || []")
        return [(float(entry[0]), [str(role) for role in entry[4]]) for entry in log
                if entry[2:4] == ["<-", "presence"]]

    def call_log(self, since: float = 0) -> str:
        """What the peer connections and the signaling socket did (needs ``tap_call()``),
        one line each, in seconds from ``since`` (epoch ms)."""
        log: list[list[Any]] = self.page.evaluate("window.__callLog || []")
        return "\n".join(f"  {(entry[0] - since) / 1000:+7.2f}s " +
                         " ".join(str(part) for part in entry[1:]) for entry in log)

    def welcomes(self) -> list[dict[str, Any]]:
        """Every signaling `welcome` so far, with `at` (epoch ms); needs ``tap_call()``."""
        found: list[dict[str, Any]] = self.page.evaluate("window.__welcomes")
        return found

    def watch_frames(self) -> None:
        """From now on, note when each remote frame is presented (``frame_times()``)."""
        self.page.evaluate(WATCH_FRAMES)

    def frame_times(self) -> list[float]:
        seen: list[float] = self.page.evaluate("window.__frameTimes")
        return seen

    def state_times(self) -> list[tuple[float, str]]:
        """``states()`` with the epoch ms each one appeared."""
        seen: list[list[Any]] = self.page.evaluate("window.__stateTimes")
        return [(float(at), str(text)) for at, text in seen]

    # The visit room (web/templates/visit.html, web/static/visit-room.js).

    def expect_state(self, text: str, timeout: float = 15_000) -> None:
        """``connection-state`` reads ``text`` within ``timeout`` ms."""
        from playwright.sync_api import expect

        try:
            expect(self.page.get_by_test_id(STATE)).to_have_text(text, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{self.email} never showed {text!r}\n{self.debug()}") from exc

    def assert_video_moving(self, when: str) -> None:
        seen = self.count_frames()
        assert seen["width"] > 0, f"{self.email}: remote video has no size {when}"
        assert seen["frames"] >= 5 and seen["advanced"] > 0.2, \
            f"{self.email}: remote video is not moving {when}: {seen}\n{self.debug()}"

    def assert_audio_flowing(self, when: str, seconds: float = 2.0) -> None:
        """The other side's microphone reaches this page: audio packets and samples
        keep arriving and carry sound (energy), over ``seconds``."""
        before: list[dict[str, float]] = self.page.evaluate(REMOTE_AUDIO)
        self.page.wait_for_timeout(seconds * 1000)
        after: list[dict[str, float]] = self.page.evaluate(REMOTE_AUDIO)
        assert before and len(after) == len(before), \
            f"{self.email}: no remote audio stream {when}: {after}\n{self.debug()}"
        for old, new in zip(before, after, strict=True):
            assert new["packets"] > old["packets"] and new["samples"] > old["samples"], \
                f"{self.email}: remote audio is not arriving {when}: {old} -> {new}"
            assert new["energy"] > old["energy"], \
                f"{self.email}: remote audio is silent {when}: {old} -> {new}"

    def assert_audio_silent(self, when: str, seconds: float = 2.0) -> None:
        """The other side is muted: this page receives no sound (what is in flight at
        the start has a moment to play out)."""
        self.page.wait_for_timeout(500)
        before: list[dict[str, float]] = self.page.evaluate(REMOTE_AUDIO)
        self.page.wait_for_timeout(seconds * 1000)
        after: list[dict[str, float]] = self.page.evaluate(REMOTE_AUDIO)
        assert before and len(after) == len(before), f"{self.email}: no remote audio {when}"
        for old, new in zip(before, after, strict=True):
            # Chromium's fake microphone gives 0.47-0.72 of energy in 2 s; a muted track
            # leaves a trace (3e-8 usually, 1.3e-6 once under CI load: the decoder
            # fading out what was in flight), over three orders of magnitude less.
            assert new["energy"] - old["energy"] < 1e-4, \
                f"{self.email}: still hears sound {when}: {old} -> {new}"

    def enter_room(self, visit_id: int, page: Any = None) -> Any:
        """As the patient: open the visit room, first confirming where they are when the
        room asks (CLINICAL.md invariant 10; web/pages/where.py), as a patient does."""
        page = page or self.page
        page.goto(f"/visits/{visit_id}")
        if page.url.endswith(f"/visits/{visit_id}/where"):
            address = page.get_by_test_id("where-address")
            if not address.input_value().strip():
                address.fill("221 Maple Avenue, Apt 3, Springfield")
            state = page.get_by_test_id("where-state")
            if not state.input_value():
                state.select_option("MA")
            callback = page.get_by_test_id("where-callback")
            if not callback.input_value().strip():
                callback.fill("617 555 0100")
            page.get_by_test_id("where-confirm").check()
            page.get_by_test_id("where-submit").click()
            page.wait_for_url(lambda url: url.endswith(f"/visits/{visit_id}"))
        return page

    def join_waiting_room(self, visit_id: int) -> None:
        """As the patient: open the visit, join, and wait to be let in."""
        from playwright.sync_api import expect

        page = self.page
        self.enter_room(visit_id)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"local-video\"]').videoWidth > 0",
            timeout=10_000)
        page.get_by_test_id("join").click()
        self.expect_state("waiting")
        expect(page.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
        timer = page.locator("#wait-timer")
        first = timer.inner_text()
        expect(timer).not_to_have_text(first, timeout=3000)  # the waiting time counts up

    def admit(self, patient: Person, visit_id: int) -> float:
        """As the prescriber: open the visit, admit the patient; the epoch ms of the click."""
        page = self.page
        page.goto(f"/visits/{visit_id}")
        button = page.get_by_test_id("admit")
        button.wait_for(state="visible", timeout=15_000)
        for person in (self, patient):
            person.watch_first_frame()
        clicked_at: float = page.evaluate("Date.now()")
        button.click()
        return clicked_at


@pytest.fixture
def people(browser: Any, app_server: AppServer) -> Iterator[dict[str, Person]]:
    """The demo patient and prescriber, each signed in in a context of their own."""
    found = {
        "patient": Person(browser, app_server, "patient@demo.test",
                          viewport={"width": 375, "height": 740}),
        "prescriber": Person(browser, app_server, "prescriber@demo.test"),
    }
    try:
        for person in found.values():
            person.sign_in()
        yield found
    finally:
        for person in found.values():
            person.close()


