// The pre-join device check (docs/signaling.md, "Device check"): the camera and
// microphone go to the server's aiortc echo peer over /ws/device-check and the video
// comes back, with the round-trip time and frame rate the server measures. When the
// server is at capacity (or cannot be reached) the check runs on this device only —
// a local preview and a microphone level — and says so.

const READY_TIMEOUT_MS = 8000;   // no "ready" by then: check locally
const ECHO_TIMEOUT_MS = 15000;   // no echoed frame by then: say the path failed
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

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
  }

  setStatus(text) {
    this.el.status.textContent = text;
  }

  setResult(text, data = {}) {
    const { result } = this.el;
    result.textContent = text;
    for (const key of ["mode", "rtt", "fps"]) {
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
    this.setResult("");
    this.setStatus("Starting your camera and microphone…");
    this.stream = await this.localStream();
    if (!this.running) return;
    if (!this.stream) {
      this.finish("Your camera and microphone could not be started. Allow them in the " +
        "browser's site settings (the icon next to the address), then try again.");
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
        await this.connect(message);
        break;
      case "answer":
        if (this.pc) await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        break;
      case "stats":
        this.onStats(message);
        break;
      case "done":
        this.finish(message.reason === "time_limit" ? "The test reached its time limit." : "");
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
      video.addEventListener("loadeddata", () => { this.gotEcho = true; }, { once: true });
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" && this.running) {
        this.finish(ready.relay
          ? "Your video could not get through the relay. Calls may fail on this network; " +
            "try another network (for example your phone's mobile data)."
          : "Your video could not reach the server. Your network may block video calls; " +
            "try another network, or join anyway and use Sound only if needed.");
      }
    });
    this.setStatus("Sending your video to the server…");
    await pc.setLocalDescription(await pc.createOffer());
    this.send({ type: "offer", sdp: pc.localDescription.sdp });
    this.later(ECHO_TIMEOUT_MS, () => {
      if (this.running && !this.gotEcho) {
        this.finish("Your video did not come back from the server. Your network may block " +
          "video calls; try another network, or join anyway and use Sound only if needed.");
      }
    });
  }

  onStats(stats) {
    if (stats.connection_state !== "connected") return;
    const fps = Math.round(stats.frames_per_second);
    const rtt = stats.round_trip_ms === null ? null : Math.round(stats.round_trip_ms);
    const parts = [
      rtt === null ? "Round trip: measuring…" : `Round trip ${rtt} ms`,
      `${fps} frames a second`,
    ];
    if (stats.width) parts.push(`${stats.width}×${stats.height} received`);
    let verdict = "";
    if (rtt !== null) {
      verdict = fps >= 10 && rtt < 400
        ? "Your camera, microphone and connection are working."
        : "Your connection looks slow. If the video stalls in the visit, use Sound only.";
    }
    this.setStatus(this.relay ? "Testing through the relay." : "Testing.");
    this.setResult(`${parts.join(" · ")}.${verdict ? ` ${verdict}` : ""}`,
      { mode: this.relay ? "relay" : "server", rtt, fps });
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
  finish(message) {
    if (!this.running) return;
    this.closePeer();
    if (message) this.setStatus(message);
    else if (!this.local) this.setStatus("The test is finished.");
    if (!this.local) this.release();
  }

  stop(message) {
    if (!this.running) return;
    this.closePeer();
    this.release();
    if (message) this.setStatus(message);
  }

  release() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
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

const section = document.getElementById("device-check");
if (section) new DeviceCheck(section, document.querySelector(".visit-room"));
