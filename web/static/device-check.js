// The pre-join device check (docs/signaling.md, "Device check"): the camera and
// microphone go to the server's aiortc echo peer over /ws/device-check and the video
// comes back. The page measures what it receives itself (RTCPeerConnection.getStats():
// the echo's real size and frame rate, the round-trip time) and ends the check by
// itself after `check_seconds` (10; the server's `ready` says). When the server is at
// capacity (or cannot be reached) the check runs on this device only — a local preview
// and a microphone level — and says so. A speaker test plays a tone and asks.
// Nothing of the results leaves the page.

const READY_TIMEOUT_MS = 8000;   // no "ready" by then: check locally
const DEFAULT_SECONDS = 10;      // the "about 10 seconds" the page promises
const MEASURE_MS = 1000;
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

// One verdict per figure, in words a patient reads at a glance. Why these thresholds:
// - Video: the echo comes back at most `echo_width` (320) wide, the server's reduced size
//   (or the camera's own size when smaller). Arriving at that size means the camera and
//   the connection carried the whole picture; WebRTC shrinks the picture first when a
//   link is slow or a device busy, so smaller is "reduced", and under half of it a face
//   is hard to read.
// - Smoothness: from 15 frames a second a face and lips move smoothly enough to read
//   expression and follow speech; under 8 both visibly stutter.
// - Delay: the round trip to our server approximates one leg of the call. ITU-T G.114
//   puts conversation at ease under 150 ms one way and still acceptable to 400 ms; a
//   round trip to us under 200 ms keeps the call in the first band, while above 400 ms
//   people start talking over each other.
const VERDICTS = {
  video: (f) => (f.width >= f.expectedWidth ? "good"
    : f.width >= f.expectedWidth / 2 ? "reduced" : "poor"),
  smoothness: (f) => (f.fps >= 15 ? "good" : f.fps >= 8 ? "fair" : "poor"),
  delay: (f) => (f.rtt < 200 ? "good" : f.rtt < 400 ? "fair" : "poor"),
};

const $ = (id) => document.getElementById(id);

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws/device-check`;
}

class DeviceCheck {
  constructor(section, room) {
    this.section = section;
    this.room = room;
    this.el = {
      start: $("device-check-start"), stop: $("device-check-stop"),
      relayOption: $("device-check-relay-option"), relay: $("device-check-relay"),
      status: $("device-check-status"), tile: $("device-check-tile"),
      video: $("device-check-video"), caption: $("device-check-caption"),
      level: $("device-check-level"), meter: $("device-check-meter"),
      result: $("device-check-result"),
    };
    this.reset();
    if (section.dataset.turn === "1") this.el.relayOption.hidden = false;
    this.el.start.addEventListener("click", () => this.start());
    this.el.stop.addEventListener("click", () => this.stop("You stopped the test."));
    const join = $("join");
    // Joining the visit ends the check: the camera is the call's from then on.
    if (join) join.addEventListener("click", () => this.stop(""));
    window.addEventListener("pagehide", () => this.stop(""));
  }

  reset() {
    this.ws = null;
    this.pc = null;
    this.stream = null;
    this.ownStream = false;
    this.audio = null;
    this.meterTimer = null;
    this.timers = [];
    this.running = false;
    this.gotReady = false;
    this.gotEcho = false;
    this.relay = false;
    this.local = false;
    this.seconds = DEFAULT_SECONDS;
    this.summary = "";
    this.echoWidth = null;
    this.measureTimer = null;
    this.lastDecoded = null;
    this.figures = { width: null, height: null, fps: null, rtt: null };
  }

  setState(state) {
    this.section.dataset.state = state;
  }

  setStatus(text) {
    this.el.status.textContent = text;
  }

  setResult(text, data = {}) {
    const { result } = this.el;
    result.replaceChildren();
    if (text) {
      const line = document.createElement("p");
      line.textContent = text;
      result.append(line);
    }
    for (const key of ["mode", "rtt", "fps", "width", "height", "verdict"]) {
      if (data[key] === undefined || data[key] === null) delete result.dataset[key];
      else result.dataset[key] = String(data[key]);
    }
  }

  later(ms, fn) {
    this.timers.push(setTimeout(fn, ms));
  }

  // The room's own camera stream when it has one (cloned, so stopping the check leaves
  // the room's preview alone; some phones cannot open a camera twice), else a new one.
  async localStream() {
    const shown = $("local-video") && $("local-video").srcObject;
    const live = shown ? shown.getTracks().filter((t) => t.readyState === "live") : [];
    if (live.some((t) => t.kind === "video")) {
      this.ownStream = true;
      return new MediaStream(live.map((t) => t.clone()));
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return null;
    try {
      this.ownStream = true;
      return await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: true });
    } catch {
      try {
        return await navigator.mediaDevices.getUserMedia({ audio: AUDIO });
      } catch {
        return null;
      }
    }
  }

  async start() {
    if (this.running) return;
    this.reset();
    this.running = true;
    this.relay = this.el.relay.checked && !this.el.relayOption.hidden;
    this.el.start.disabled = true;
    this.el.stop.hidden = false;
    this.setState("running");
    this.setResult("");
    this.setStatus("Starting your camera and microphone…");
    this.stream = await this.localStream();
    if (!this.running) return;
    if (!this.stream) {
      this.finish("Your camera and microphone could not be started. Allow them in the " +
        "browser's site settings (the icon next to the address), then try again.", "failed");
      return;
    }
    this.startMeter();
    this.setStatus(this.relay ? "Connecting to the server through the relay…"
      : "Connecting to the server…");
    this.later(READY_TIMEOUT_MS, () => {
      if (this.running && !this.gotReady) {
        this.fallback("The server's camera check did not answer.");
      }
    });
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch {
      this.fallback("The server's camera check could not be reached.");
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => this.send(this.startMessage(this.relay)));
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message).catch(() =>
        this.fallback("Your browser could not start the server check."));
    });
    ws.addEventListener("close", (event) => this.onClose(event));
  }

  startMessage(relay) {
    const message = { type: "start", relay };
    const { guestToken, visitId } = this.room ? this.room.dataset : {};
    if (guestToken) {
      message.visit_id = Number(visitId);
      message.guest_token = guestToken;
    }
    return message;
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async onMessage(message) {
    if (!this.running) return;
    switch (message.type) {
      case "ready":
        this.gotReady = true;
        if (message.ice_expires_at) this.el.relayOption.hidden = false;
        if (message.check_seconds > 0) this.seconds = message.check_seconds;
        this.echoWidth = message.echo_width || null;
        // The check ends by itself; the server's own deadline (max_seconds) is later.
        this.later(this.seconds * 1000, () => { this.complete(); });
        await this.connect(message);
        break;
      case "answer":
        if (this.pc) await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        break;
      case "done":
        if (message.reason === "time_limit") this.complete();
        else this.finish("");
        break;
      case "error":
        this.onError(message);
        break;
      default:
        break;
    }
  }

  onError(message) {
    if (message.code === "busy") {
      this.fallback("The server's camera check is busy right now.");
    } else if (message.code === "no_turn") {
      // No relay here: hide the option and check the ordinary path instead.
      this.el.relayOption.hidden = true;
      this.el.relay.checked = false;
      this.relay = false;
      this.setStatus("No relay server is set up here, so the ordinary path is tested instead.");
      this.send(this.startMessage(false));
    } else if (!this.gotEcho) {
      this.fallback("The server's camera check could not run.");
    }
  }

  async connect(ready) {
    const config = { iceServers: ready.ice_servers || [] };
    if (ready.relay) config.iceTransportPolicy = "relay";
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    pc.addEventListener("icecandidate", (event) => {
      this.send({ type: "candidate", candidate: event.candidate ? event.candidate.toJSON() : null });
    });
    pc.addEventListener("track", (event) => {
      if (event.track.kind !== "video") return;  // the audio echo is not played: no feedback
      const { video, tile, caption } = this.el;
      video.srcObject = new MediaStream([event.track]);
      video.play().catch(() => {});
      caption.textContent = ready.relay ? "Your video, back from the server through the relay"
        : "Your video, back from the server";
      tile.hidden = false;
      video.addEventListener("loadeddata", () => {
        this.gotEcho = true;
        this.setStatus(this.relay ? "Testing through the relay…" : "Testing…");
        this.measureTimer = setInterval(() => { this.measure().then((f) => this.show(f)); },
          MEASURE_MS);
      }, { once: true });
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" && this.running) {
        this.finish(ready.relay
          ? "Your video could not get through the relay. Calls may fail on this network; " +
            "try another network (for example your phone's mobile data)."
          : "Your video could not reach the server. Your network may block video calls; " +
            "try another network, or join anyway and use Sound only if needed.", "failed");
      }
    });
    this.setStatus("Sending your video to the server…");
    await pc.setLocalDescription(await pc.createOffer());
    this.send({ type: "offer", sdp: pc.localDescription.sdp });
  }

  // The figures as this browser measures them: the echo's real size and frame rate
  // (inbound-rtp) and the round trip of the candidate pair in use.
  async measure() {
    const { pc } = this;
    if (!pc) return this.figures;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return this.figures;
    }
    let inbound = null;
    let pair = null;
    let remoteRtt = null;
    let selected = null;
    report.forEach((stat) => {
      if (stat.type === "inbound-rtp" && stat.kind === "video") inbound = stat;
      else if (stat.type === "transport" && stat.selectedCandidatePairId) {
        selected = stat.selectedCandidatePairId;
      } else if (stat.type === "remote-inbound-rtp" && typeof stat.roundTripTime === "number") {
        remoteRtt = stat.roundTripTime;
      }
    });
    if (selected) pair = report.get(selected) || null;
    if (!pair) {
      report.forEach((stat) => {
        if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded") {
          pair = stat;
        }
      });
    }
    const figures = { ...this.figures };
    if (inbound) {
      if (inbound.frameWidth) {
        figures.width = inbound.frameWidth;
        figures.height = inbound.frameHeight;
      }
      if (typeof inbound.framesPerSecond === "number") {
        figures.fps = inbound.framesPerSecond;
      } else if (this.lastDecoded && inbound.timestamp > this.lastDecoded.timestamp) {
        figures.fps = ((inbound.framesDecoded - this.lastDecoded.framesDecoded) * 1000) /
          (inbound.timestamp - this.lastDecoded.timestamp);
      }
      this.lastDecoded = { framesDecoded: inbound.framesDecoded, timestamp: inbound.timestamp };
    }
    if (!figures.width && this.el.video.videoWidth) {
      figures.width = this.el.video.videoWidth;
      figures.height = this.el.video.videoHeight;
    }
    if (pair && typeof pair.currentRoundTripTime === "number") {
      figures.rtt = pair.currentRoundTripTime * 1000;
    } else if (remoteRtt !== null) {
      figures.rtt = remoteRtt * 1000;
    }
    this.figures = figures;
    return figures;
  }

  // What the camera sends, capped at the echo's width: the size a full echo has.
  expectedWidth() {
    const track = this.stream && this.stream.getVideoTracks()[0];
    const camera = track && track.getSettings ? track.getSettings().width : null;
    const cap = this.echoWidth || camera || 0;
    return camera ? Math.min(cap, camera) : cap;
  }

  show(figures) {
    if (!this.running || this.local || !figures || !figures.width) return;
    const fps = figures.fps === null ? null : Math.round(figures.fps);
    const rtt = figures.rtt === null ? null : Math.round(figures.rtt);
    const f = { ...figures, fps, rtt, expectedWidth: this.expectedWidth() };
    const rows = [
      ["video", "Video", `your video came back at ${f.width}×${f.height}`],
      ["smoothness", "Smoothness", fps === null ? null : `${fps} frames a second`],
      ["delay", "Delay", rtt === null ? null : `${rtt} ms round trip to our server`],
    ];
    const list = document.createElement("ul");
    list.className = "check-figures";
    const verdicts = [];
    for (const [key, label, text] of rows) {
      const item = document.createElement("li");
      item.dataset.figure = key;
      if (text === null) {
        item.textContent = `${label}: measuring…`;
      } else {
        const verdict = VERDICTS[key](f);
        verdicts.push(verdict);
        item.dataset.verdict = verdict;
        item.textContent = `${label}: ${verdict} — ${text}.`;
      }
      list.append(item);
    }
    const verdict = verdicts.length < rows.length ? null
      : verdicts.every((v) => v === "good") ? "good"
        : verdicts.includes("poor") ? "poor" : "fair";
    const summary = verdict === null ? ""
      : verdict === "poor"
        ? "Your connection looks slow. If the video stalls in the visit, use Sound only."
        : "Your camera, microphone and connection are working.";
    this.setResult(summary, { mode: this.relay ? "relay" : "server", rtt, fps,
      width: f.width, height: f.height, verdict });
    this.el.result.prepend(list);
    this.summary = [...list.children].map((item) => item.textContent).concat(summary)
      .filter(Boolean).join(" ");
  }

  // The end of the check's time: measure once more, show it, and stop.
  async complete() {
    if (!this.running || this.local) return;
    if (!this.gotEcho) {
      this.finish("Your video did not come back from the server. Your network may block " +
        "video calls; try another network, or join anyway and use Sound only if needed.",
      "failed");
      return;
    }
    const figures = await this.measure();
    if (!this.running) return;
    this.show(figures);
    this.finish(`The test is finished. ${this.summary || ""}`.trim());
  }

  onClose(event) {
    this.ws = null;
    if (!this.running) return;
    if (event.code === 4503) {
      this.fallback("The server's camera check is busy right now.");
    } else if (!this.gotEcho) {
      this.fallback("The connection to the server's camera check was lost.");
    } else {
      this.finish("");
    }
  }

  // Beyond the server's cap or without it: preview and microphone level on this device.
  fallback(reason) {
    if (!this.running || this.local) return;
    this.local = true;
    this.closePeer();
    const { video, tile, caption } = this.el;
    const hasVideo = this.stream && this.stream.getVideoTracks().length > 0;
    if (hasVideo) {
      video.srcObject = this.stream;
      video.play().catch(() => {});
      caption.textContent = "Your camera, on this device";
      tile.hidden = false;
    }
    this.setStatus(`${reason} Your camera and microphone were checked on this device ` +
      "only; the connection itself was not tested.");
    const mic = this.stream && this.stream.getAudioTracks().length > 0;
    this.setResult(`Local check only: camera ${hasVideo ? "working" : "not found"}, ` +
      `microphone ${mic ? "working (speak and watch the level move)" : "not found"}.`,
    { mode: "local" });
    this.el.stop.hidden = false;
    // The local check ends on time too: the camera and microphone are not left on.
    this.later(this.seconds * 1000, () => this.stop("The test is finished.", "done"));
  }

  startMeter() {
    const track = this.stream.getAudioTracks()[0];
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!track || !Context) return;
    try {
      this.audio = new Context();
      const source = this.audio.createMediaStreamSource(new MediaStream([track]));
      const analyser = this.audio.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      this.el.level.hidden = false;
      this.meterTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const s of samples) sum += s * s;
        const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
        this.el.meter.value = level;
        this.el.meter.textContent = `${Math.round(level * 100)}%`;
      }, 100);
      this.audio.resume().catch(() => {});
    } catch {
      this.audio = null;
    }
  }

  closePeer() {
    if (this.ws) {
      this.send({ type: "stop" });
      try {
        this.ws.close(1000);
      } catch {
        // already closing
      }
      this.ws = null;
    }
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
  }

  // End the server part, keep what was found on screen.
  finish(message, state = "done") {
    if (!this.running) return;
    this.closePeer();
    if (message) this.setStatus(message);
    else if (!this.local) this.setStatus("The test is finished.");
    if (!this.local) {
      this.release();
      this.setState(state);
    }
  }

  stop(message, state = "stopped") {
    if (!this.running) return;
    this.closePeer();
    this.release();
    this.setState(state);
    if (message) this.setStatus(message);
  }

  release() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    if (this.measureTimer) clearInterval(this.measureTimer);
    this.measureTimer = null;
    if (this.meterTimer) clearInterval(this.meterTimer);
    this.meterTimer = null;
    if (this.audio) this.audio.close().catch(() => {});
    this.audio = null;
    if (this.stream && this.ownStream) for (const track of this.stream.getTracks()) track.stop();
    if (this.local || !this.gotEcho) this.el.video.srcObject = null;
    this.el.level.hidden = true;
    this.stream = null;
    this.running = false;
    this.local = false;
    this.el.start.disabled = false;
    this.el.start.textContent = "Test again";
    this.el.stop.hidden = true;
  }
}

const TONE_HZ = 660;           // clear on laptop and phone speakers, not shrill
const TONE_GAIN = 0.25;        // audible at a normal volume without startling
const SOUND_BLOCKED_MS = 4000; // the tone never finished: the browser did not play it

// "Play a test sound": two short beeps made by the Web Audio API (no file to fetch),
// then "Did you hear it?". Only this page knows the answer.
class SpeakerCheck {
  constructor(root) {
    this.root = root;
    this.el = {
      play: $("speaker-check-play"), ask: $("speaker-check-ask"), yes: $("speaker-check-yes"),
      no: $("speaker-check-no"), result: $("speaker-check-result"),
      help: $("speaker-check-help"),
    };
    this.context = null;
    this.blocked = null;
    this.el.play.addEventListener("click", () => this.play());
    this.el.yes.addEventListener("click", () => this.answer(true));
    this.el.no.addEventListener("click", () => this.answer(false));
    window.addEventListener("pagehide", () => this.close());
  }

  setState(state) {
    this.root.dataset.state = state;
  }

  play() {
    const Context = window.AudioContext || window.webkitAudioContext;
    this.close();
    this.el.ask.hidden = true;
    this.el.help.hidden = true;
    if (!Context) {
      this.setState("unsupported");
      this.el.result.textContent = "This browser cannot play the test sound. Try another " +
        "browser, or join anyway and say at the start if you cannot hear.";
      return;
    }
    const context = new Context();
    this.context = context;
    const tone = context.createOscillator();
    const gain = context.createGain();
    tone.type = "sine";
    tone.frequency.value = TONE_HZ;
    // Ramps, not steps: a sound switched on or off at once clicks.
    const t = context.currentTime + 0.05;
    const level = gain.gain;
    level.setValueAtTime(0, t);
    for (const [on, off] of [[0, 0.4], [0.6, 1.0]]) {
      level.setValueAtTime(0, t + on);
      level.linearRampToValueAtTime(TONE_GAIN, t + on + 0.03);
      level.setValueAtTime(TONE_GAIN, t + off - 0.03);
      level.linearRampToValueAtTime(0, t + off);
    }
    tone.connect(gain).connect(context.destination);
    // "ended" fires only when the context's clock really ran to the stop time: the
    // sound was played, not just scheduled.
    tone.addEventListener("ended", () => this.played(context));
    tone.start(t);
    tone.stop(t + 1.05);
    context.resume().catch(() => {});
    this.setState("playing");
    this.el.play.disabled = true;
    this.el.result.textContent = "Playing a test sound…";
    this.blocked = setTimeout(() => {
      if (this.context !== context) return;
      this.close();
      this.setState("blocked");
      this.el.play.disabled = false;
      this.el.result.textContent = "The browser did not play the sound. Press the button " +
        "again; if it still does not play, check the site's sound settings.";
    }, SOUND_BLOCKED_MS);
  }

  played(context) {
    if (this.context !== context) return;
    this.root.dataset.played = "1";
    this.close();
    this.setState("asked");
    this.el.play.disabled = false;
    this.el.play.textContent = "Play the sound again";
    this.el.result.textContent = "";
    this.el.ask.hidden = false;
    this.el.yes.focus();
  }

  answer(heard) {
    this.setState(heard ? "heard" : "not-heard");
    this.el.ask.hidden = true;
    this.el.help.hidden = heard;
    this.el.result.textContent = heard ? "Sound: working. You will hear the visit."
      : "Sound: not heard. See what to try below.";
  }

  close() {
    if (this.blocked) clearTimeout(this.blocked);
    this.blocked = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}

const section = document.getElementById("device-check");
if (section) new DeviceCheck(section, document.querySelector(".visit-room"));
const speaker = document.getElementById("speaker-check");
if (speaker) new SpeakerCheck(speaker);
