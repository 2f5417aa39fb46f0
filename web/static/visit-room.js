// The visit room: local preview, the waiting room, admission, the mesh of remote
// videos, and one plain-words connection state that the person can trust.
//
// `data-testid="connection-state"` always reads one of: waiting, connecting,
// connected, reconnecting, failed (and ended once the visit is over for this page).

import { PeerMesh } from "./peer-mesh.js";
import { LocalMedia } from "./media.js";
import { SignalingClient, peerIdFor } from "./signaling-client.js";
import { mountVisitChat } from "./visit-chat.js";

const NO_TURN_ADVICE = "Your network is blocking the video connection. Try switching from " +
  "Wi-Fi to mobile data, or the other way round, or join from another network.";
const STAFF_ROLES = new Set(["prescriber", "coordinator"]);
const ROLE_LABELS = { patient: "Patient", prescriber: "Prescriber", coordinator: "Care coordinator",
  guest: "Guest", admin: "Admin" };
const ICE_REFRESH_MARGIN_MS = 60_000;
// A visit is activity even when nobody clicks: while in it, the page keeps the session
// (and session-timeout.js's idle warning) moving, so nobody is signed out mid-visit
// and a reconnect late in a long visit is still accepted.
const SESSION_KEEPALIVE_MS = 120_000;

const $ = (id) => document.getElementById(id);

function parseInstant(value) {
  if (value === null || value === undefined || value === "") return NaN;
  if (typeof value === "number") return value < 1e12 ? value * 1000 : value;
  const asNumber = Number(value);
  if (Number.isFinite(asNumber)) return parseInstant(asNumber);
  return Date.parse(value);
}

function formatWait(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${m}:${String(s).padStart(2, "0")}`;
}

function spokenWait(ms) {
  const minutes = Math.floor(ms / 60000);
  if (minutes < 1) return "under a minute";
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}

function listNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

// `?admit=1` (the day view's Admit), taken off the address so that a reload, or the
// page restored from history, does not admit again.
function takeAdmitRequest() {
  const url = new URL(window.location.href);
  if (url.searchParams.get("admit") !== "1") return false;
  url.searchParams.delete("admit");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  return true;
}

class VisitRoom {
  constructor(root) {
    this.root = root;
    this.visitId = root.dataset.visitId;
    this.role = root.dataset.role;
    this.isStaff = STAFF_ROLES.has(this.role);
    this.otherName = root.dataset.otherName || "the clinician";
    this.peerId = peerIdFor(this.visitId);
    this.joinedKey = `mendwell.joined.${this.visitId}`;

    this.joined = false;
    this.selfState = null;      // "waiting" | "admitted" once welcomed
    this.waitingSince = NaN;
    this.ended = null;          // why the room is over for this page
    this.fatal = null;          // a refusal that retrying cannot fix
    this.participants = [];
    this.iceTimer = null;
    this.lastWord = "";
    this.lastAnnounced = "";
    this.tiles = new Map();
    this.patientCalls = new Map();
    this.admitOnOpen = this.isStaff && takeAdmitRequest();
    this.pressed = null;        // the participant button just pressed, to keep focus near

    this.media = new LocalMedia();
    this.signaling = new SignalingClient({ visitId: this.visitId, peerId: this.peerId,
      guestToken: root.dataset.guestToken || null, base: root.dataset.signaling || "" });
    this.mesh = new PeerMesh({ signaling: this.signaling, media: this.media,
      selfPeerId: this.peerId, framesShown: (peerId) => this.framesShown(peerId) });

    this.el = {
      state: $("connection-state"), detail: $("state-detail"), announcer: $("announcer"),
      advice: $("advice"), mediaError: $("media-error"), waitingRoom: $("waiting-room"),
      waitTimer: $("wait-timer"), remoteGrid: $("remote-grid"), localVideo: $("local-video"),
      localTile: $("local-tile"), join: $("join"), joinPanel: $("join-panel"),
      mute: $("mute"), camera: $("camera"), audioOnly: $("audio-only"), soundOn: $("sound-on"),
      leave: $("leave"), endVisit: $("end-visit"), cameraSelect: $("camera-select"),
      microphoneSelect: $("microphone-select"), participants: $("participants"),
      participantsEmpty: $("participants-empty"), controls: $("controls"),
      visitStatus: $("visit-status"), videos: $("videos"), shareScreen: $("share-screen"),
      fullScreen: $("full-screen"), flipCamera: $("flip-camera"),
    };
    this.wire();
  }

  wire() {
    const { el, media, signaling, mesh } = this;
    media.addEventListener("tracks", () => this.showLocal());
    media.addEventListener("devices", () => this.fillDevices());
    media.addEventListener("error", (event) => this.showMediaError(event.detail.message));

    signaling.addEventListener("connection", () => this.render());
    signaling.addEventListener("welcome", (event) => this.onWelcome(event.detail));
    signaling.addEventListener("presence", (event) => this.onPresence(event.detail));
    signaling.addEventListener("admitted", () => this.onAdmitted());
    signaling.addEventListener("signal", (event) => mesh.onSignal(event.detail));
    signaling.addEventListener("ice-servers", (event) => this.onIceServers(event.detail));
    signaling.addEventListener("removed", () => this.onRemoved());
    signaling.addEventListener("ended", () => this.finish("ended"));
    signaling.addEventListener("error", (event) => this.onServerError(event.detail));
    signaling.addEventListener("connection", (event) => {
      if (event.detail.status === "closed") this.onRefused(event.detail.code);
    });

    mesh.addEventListener("change", () => this.render());
    mesh.addEventListener("remote", (event) => this.showRemote(event.detail.peerId,
      event.detail.link));
    mesh.addEventListener("media", (event) => this.onPeerMedia(event.detail));
    media.addEventListener("screen", () => this.onScreenShare());
    mesh.addEventListener("gone", (event) => {
      this.removeTile(event.detail.peerId);
      this.reportPatientCall(event.detail.peerId, "lost");
    });

    el.join.addEventListener("click", () => this.join());
    el.mute.addEventListener("click", () => {
      media.setMuted(!media.muted);
      this.setPressed(el.mute, media.muted);
      this.announce(media.muted ? "Your microphone is off." : "Your microphone is on.");
    });
    el.camera.addEventListener("click", () => {
      media.setCameraOff(!media.cameraOff);
      this.setPressed(el.camera, media.cameraOff);
      el.localTile.classList.toggle("camera-off", media.cameraOff || !media.videoTrack);
      this.announce(media.cameraOff ? "Your camera is off." : "Your camera is on.");
    });
    el.audioOnly.addEventListener("click", () => this.toggleAudioOnly());
    el.soundOn.addEventListener("click", () => this.unmuteRemotes());
    if (el.shareScreen) {
      el.shareScreen.hidden = !media.canShareScreen;
      el.shareScreen.addEventListener("click", () => this.toggleScreenShare());
    }
    el.fullScreen.addEventListener("click", () => this.toggleFullScreen());
    el.flipCamera.addEventListener("click", () => this.flipCamera());
    document.addEventListener("fullscreenchange", () => this.showFullScreen());
    document.addEventListener("webkitfullscreenchange", () => this.showFullScreen());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && el.videos.classList.contains("pseudo-fullscreen")) {
        this.toggleFullScreen();
      }
    });
    el.leave.addEventListener("click", () => this.leave());
    if (el.endVisit) el.endVisit.addEventListener("click", () => this.endVisit());
    el.cameraSelect.addEventListener("change", () => media.useCamera(el.cameraSelect.value));
    el.microphoneSelect.addEventListener("change",
      () => media.useMicrophone(el.microphoneSelect.value));
    if (el.participants) {
      el.participants.addEventListener("click", (event) => this.onParticipantAction(event));
    }
    window.addEventListener("pagehide", () => {
      if (this.joined) this.signaling.leave();
    });
    setInterval(() => this.tick(), 1000);
    setInterval(() => this.keepSessionAlive(), SESSION_KEEPALIVE_MS);
  }

  async keepSessionAlive() {
    // A guest has no account session to keep alive: the invitation is their pass.
    if (this.root.dataset.guestToken) return;
    if (!this.joined || this.ended || this.fatal) return;
    try {
      const response = await fetch("/api/v1/session", { credentials: "same-origin" });
      if (!response.ok) return;
      const session = await response.json();
      window.dispatchEvent(new CustomEvent("mendwell:session-active", {
        detail: { idleExpiresAt: session.idle_expires_at } }));
    } catch {
      // offline for a moment: the next round tries again
    }
  }

  async start() {
    this.render();
    await this.media.start();
    this.el.join.disabled = false;
    let rejoin = false;
    try {
      rejoin = window.sessionStorage.getItem(this.joinedKey) === "1";
    } catch {
      // no storage: ask again
    }
    // Staff are admitted on arrival and need to see who is waiting at once; a patient
    // who already joined in this tab (and reloaded) goes straight back in.
    if (this.isStaff || rejoin) this.join();
  }

  join() {
    if (this.joined || this.ended === "ended" || this.ended === "removed") return;
    try {
      window.sessionStorage.setItem(this.joinedKey, "1");
    } catch {
      // see start()
    }
    if (this.ended === "left") {
      // Camera, socket and connections were all let go: a fresh page is the simplest
      // correct way back in (the flag above joins it at once).
      window.location.reload();
      return;
    }
    this.joined = true;
    this.el.joinPanel.hidden = true;
    this.el.leave.hidden = false;
    this.signaling.start();
    this.render();
  }

  onWelcome(message) {
    this.fatal = null;
    this.selfState = message.state;
    if (message.state === "waiting" && !Number.isFinite(this.waitingSince)) {
      this.waitingSince = Date.now();
    }
    this.onIceServers(message);
    this.mesh.setAdmitted(message.state === "admitted");
    if (message.reconnected) {
      // The welcome carries fresh credentials already; asking as well keeps to the
      // protocol's recovery order and covers a server that hands out short ones.
      this.signaling.send({ type: "ice-refresh" });
      this.mesh.onReconnected();
    }
    this.render();
  }

  onIceServers(message) {
    this.mesh.setIceServers(message.ice_servers || [], message.ice_transport_policy);
    clearTimeout(this.iceTimer);
    const expires = parseInstant(message.ice_expires_at);
    if (!Number.isFinite(expires)) return;
    const left = expires - Date.now();
    const delay = Math.max(1000, left - Math.min(ICE_REFRESH_MARGIN_MS, left * 0.2));
    this.iceTimer = setTimeout(() => this.signaling.send({ type: "ice-refresh" }), delay);
  }

  onPresence(message) {
    this.participants = message.participants || [];
    const me = this.participants.find((p) => p.peer_id === this.peerId);
    if (me) {
      if (me.state) this.selfState = me.state;
      const since = parseInstant(me.since);
      if (me.state === "waiting" && Number.isFinite(since)) this.waitingSince = since;
    }
    this.mesh.updatePresence(this.participants);
    this.mesh.setAdmitted(this.selfState === "admitted");
    if (this.admitOnOpen) this.admitFromDay();
    this.renderParticipants();
    for (const [peerId, tile] of this.tiles) this.captionTile(peerId, tile);
    this.render();
  }

  // Opened by the day view's Admit (`?admit=1`): the first presence lists whoever is in
  // the waiting room; the patient there is let in with the same `admit` as the button.
  // Only that once: a patient who left meanwhile is not let in whenever they return.
  admitFromDay() {
    this.admitOnOpen = false;
    const patient = this.others("waiting").find((p) => p.role === "patient");
    if (!patient) {
      this.announce("The patient is no longer in the waiting room.");
      return;
    }
    this.signaling.send({ type: "admit", peer_id: patient.peer_id });
    this.announce(`Letting ${patient.name} in.`);
  }

  onAdmitted() {
    this.selfState = "admitted";
    this.mesh.setAdmitted(true);
    this.announce("You have been let in. Connecting you now.");
    this.render();
  }

  // The server sends a removed patient back to the waiting room (the socket stays), so
  // the clinician can let them in again.
  onRemoved() {
    this.selfState = "waiting";
    this.waitingSince = Date.now();
    this.mesh.setAdmitted(false);
    this.announce("The clinician has moved you back to the waiting room.");
    this.render();
  }

  onServerError(message) {
    if (message.code === "dismissed") {
      // The care team sent this guest out: the server closes the socket (4411) next, and
      // coming back on our own would take the seat they just freed.
      this.signaling.stop();
      this.forgetJoined(); // a reload shows the Join button, not the waiting room
      this.refuse(message.message || "The care team has removed you from this visit.");
      return;
    }
    if (message.code === "room_full") {
      this.fatal = this.role === "guest"
        ? "This visit has a place for one guest at a time, and someone is in it. Ask the " +
          "clinician to let you in when it is free."
        : "This visit already has four people in it, the most it can hold. Ask the " +
          "clinician to let you in when someone leaves.";
    } else if (message.code === "guest_consent_required") {
      // 42 CFR Part 2: the patient is asked on their screen; say so where it is read out.
      this.announce(message.message);
      this.renderParticipants();
    } else {
      console.warn("signaling error", message);
      // An admit or remove that was refused: give the buttons back.
      this.renderParticipants();
    }
    this.render();
  }

  onRefused(code) {
    if (code === 4410) {
      this.finish("ended");
      return;
    }
    if (code === 4411 && this.fatal) return; // said already, with the server's words
    this.refuse({
      4401: "You are signed out, so you cannot rejoin the visit. Sign in again and reopen it.",
      4404: "This visit could not be found. Go back to your visits and open it again.",
      4409: "This visit is open in another tab or window; it continues there. Close this one.",
      4411: "The care team has removed you from this visit.",
    }[code] || "You cannot join this visit with this account. If you think this is wrong, " +
      "call the clinic.");
  }

  refuse(why) {
    this.fatal = why;
    // Refused for good: the call must not go on peer to peer behind the server's back.
    this.mesh.close();
    this.media.stop();
    this.el.controls.hidden = true;
    this.render();
  }

  finish(why) {
    this.ended = why;
    clearTimeout(this.iceTimer);
    this.signaling.stop();
    this.mesh.close();
    this.media.stop();
    this.joined = false;
    this.forgetJoined();
    this.el.controls.hidden = true;
    this.el.leave.hidden = true;
    if (why === "left") {
      this.el.join.textContent = "Rejoin the visit";
      this.el.joinPanel.hidden = false;
    }
    this.render();
  }

  forgetJoined() {
    try {
      window.sessionStorage.removeItem(this.joinedKey);
    } catch {
      // nothing kept
    }
  }

  leave() {
    this.signaling.leave();
    this.finish("left");
  }

  endVisit() {
    // eslint-disable-next-line no-alert
    if (!window.confirm("End the visit for everyone?")) return;
    this.signaling.send({ type: "end" });
  }

  async toggleAudioOnly() {
    const on = !this.media.audioOnly;
    this.setPressed(this.el.audioOnly, on);
    await this.media.setAudioOnly(on);
    this.mesh.setAudioOnly(on);
    this.root.classList.toggle("audio-only", on);
    this.fillDevices();
    for (const [peerId, tile] of this.tiles) {
      const link = this.mesh.links.get(peerId);
      if (link) this.showSoundOnly(tile, link);
    }
    this.announce(on ? "Sound only: video is off in both directions to save your connection."
      : "Video is back on.");
  }

  // --- screen, full screen, camera flip, the peers' media ----------------------------

  async toggleScreenShare() {
    if (this.media.screenTrack) this.media.stopScreenShare();
    else await this.media.startScreenShare();
  }

  onScreenShare() {
    const sharing = Boolean(this.media.screenTrack);
    const button = this.el.shareScreen;
    if (button) {
      this.setPressed(button, sharing);
      button.textContent = sharing ? "Stop sharing" : "Share screen";
    }
    this.el.localTile.classList.toggle("sharing", sharing);
    this.announce(sharing ? "You are sharing your screen." : "You stopped sharing your screen.");
  }

  onPeerMedia({ peerId, media, before }) {
    const name = (this.mesh.participant(peerId) || {}).name || "The other person";
    if (Boolean(media.screen) !== Boolean(before.screen)) {
      this.announce(media.screen ? `${name} is sharing their screen.`
        : `${name} stopped sharing their screen.`);
    } else if ((media.video !== false) !== (before.video !== false)) {
      this.announce(media.video === false ? `${name} switched to sound only.`
        : `${name} turned video back on.`);
    }
  }

  get fullScreenNow() {
    const element = document.fullscreenElement || document.webkitFullscreenElement;
    return element === this.el.videos || this.el.videos.classList.contains("pseudo-fullscreen");
  }

  // The Fullscreen API where the browser has it for any element; iPhone Safari has it
  // only for a lone <video>, which would hide the self-view and the controls: there the
  // video area covers the page instead.
  async toggleFullScreen() {
    const area = this.el.videos;
    if (document.fullscreenElement || document.webkitFullscreenElement) {
      const exit = document.exitFullscreen || document.webkitExitFullscreen;
      await exit.call(document);
    } else if (area.classList.contains("pseudo-fullscreen")) {
      area.classList.remove("pseudo-fullscreen");
      document.documentElement.classList.remove("video-covers-page");
    } else {
      const request = area.requestFullscreen || area.webkitRequestFullscreen;
      let done = false;
      if (request) {
        try {
          await request.call(area);
          done = true;
        } catch {
          // refused (an embedded page, a policy): cover the page instead
        }
      }
      if (!done) {
        area.classList.add("pseudo-fullscreen");
        document.documentElement.classList.add("video-covers-page");
      }
    }
    this.showFullScreen();
  }

  showFullScreen() {
    const on = this.fullScreenNow;
    this.setPressed(this.el.fullScreen, on);
    this.el.fullScreen.textContent = on ? "Exit full screen" : "Full screen";
  }

  async flipCamera() {
    this.el.flipCamera.disabled = true;
    try {
      await this.media.flipCamera();
      this.announce("Camera switched.");
    } finally {
      this.el.flipCamera.disabled = false;
    }
  }

  onParticipantAction(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const peerId = button.dataset.peerId;
    const person = this.participants.find((p) => p.peer_id === peerId);
    const name = person ? person.name : "this person";
    if (button.dataset.action === "admit") {
      this.pressed = { peerId, action: "admit" };
      button.disabled = true;
      this.signaling.send({ type: "admit", peer_id: peerId });
      this.announce(`Letting ${name} in.`);
    } else if (button.dataset.action === "remove") {
      // eslint-disable-next-line no-alert
      if (!window.confirm(`Remove ${name} from the visit?`)) return;
      this.signaling.send({ type: "remove", peer_id: peerId });
    } else if (button.dataset.action === "dismiss" || button.dataset.action === "revoke") {
      const revoke = button.dataset.action === "revoke";
      const question = revoke
        ? `Remove ${name} and cancel their invitation? Their link will stop working.`
        : `Remove ${name} from the visit? Their place is freed; with their link they ` +
          "can ask to be let in again.";
      // eslint-disable-next-line no-alert
      if (!window.confirm(question)) return;
      button.disabled = true;
      this.signaling.send({ type: "dismiss", peer_id: peerId, revoke });
      this.announce(`Removing ${name}.`);
    }
  }

  // --- rendering -----------------------------------------------------------------

  others(state) {
    return this.participants.filter((p) => p.peer_id !== this.peerId &&
      (state === undefined || p.state === state));
  }

  word() {
    if (this.ended) return "ended";
    if (this.fatal) return "failed";
    if (!this.joined) return "waiting";
    if (!this.signaling.everWelcomed) return "connecting";
    const media = this.mesh.summary();
    if (media.failed > 0) return "failed";
    if (!this.signaling.isUp) return "reconnecting";
    if (this.selfState !== "admitted" || media.count === 0) return "waiting";
    if (media.troubled > 0) return "reconnecting";
    if (media.connected > 0) return "connected";
    return "connecting";
  }

  detail(word) {
    const connectedNames = [...this.mesh.links]
      .filter(([, link]) => link.state === "connected")
      .map(([peerId]) => (this.mesh.participant(peerId) || {}).name || "someone");
    switch (word) {
      case "ended":
        return {
          ended: "The visit has ended. Thank you. Your care team will follow up as planned.",
          left: "You left the visit. You can rejoin while it is still going on.",
        }[this.ended];
      case "failed":
        if (this.fatal) return this.fatal;
        return this.mesh.hasTurn
          ? "The video connection failed. Check your internet connection; we keep trying."
          : NO_TURN_ADVICE;
      case "waiting": {
        if (!this.joined) {
          return this.isStaff ? "Starting your camera…"
            : "Check that you can see yourself, then join when you are ready.";
        }
        if (this.selfState !== "admitted") return `Waiting for ${this.otherName} to let you in.`;
        const waiting = this.others("waiting");
        if (this.isStaff && waiting.length > 0) {
          return `${listNames(waiting.map((p) => p.name))} ${waiting.length === 1 ? "is" : "are"} ` +
            "in the waiting room. Let them in when you are ready.";
        }
        return this.isStaff ? "Nobody else is here yet." : `Waiting for ${this.otherName} to join.`;
      }
      case "connecting":
        return this.selfState === "admitted" && this.mesh.links.size > 0
          ? "Connecting the video…" : "Connecting to the visit…";
      case "reconnecting":
        return this.signaling.isUp
          ? "The connection is unstable. Trying to restore it…"
          : "Reconnecting to the server… The call goes on if you can still see and hear the " +
            "other person.";
      case "connected":
        return `Connected with ${listNames(connectedNames)}.`;
      default:
        return "";
    }
  }

  render() {
    const word = this.word();
    const text = this.detail(word) || "";
    const { el } = this;
    if (el.state.textContent !== word) el.state.textContent = word;
    el.state.dataset.state = word;
    // A failure gets the advice box (role="alert", read out at once) instead of the
    // line beside the state.
    const showAdvice = word === "failed";
    const detail = showAdvice ? "" : text;
    if (el.detail.textContent !== detail) el.detail.textContent = detail;
    el.advice.hidden = !showAdvice;
    if (showAdvice && el.advice.textContent !== text) el.advice.textContent = text;
    if (el.waitingRoom) {
      el.waitingRoom.hidden = !(this.joined && this.selfState === "waiting" && !this.ended);
    }
    this.root.dataset.state = word;
    for (const [peerId, link] of this.mesh.links) {
      if (link.state === "connected") this.reportPatientCall(peerId, "connected");
      else if (word === "failed") this.reportPatientCall(peerId, "failed");
    }
    this.showVisitStatus();
    if (word !== this.lastWord) {
      this.lastWord = word;
      this.announce(detail);
    }
    this.tick();
  }

  // For the note panel's emergency mode (note-panel.js): the call with the patient was
  // lost or failed, or is connected again. Not when this page ends the call, nor when
  // the patient was moved back to the waiting room on purpose.
  reportPatientCall(peerId, state) {
    if (!this.isStaff || this.ended || this.fatal) return;
    const person = this.mesh.participant(peerId);
    if (!person || person.role !== "patient") return;
    const present = this.mesh.present.get(peerId);
    if (state === "lost" && present && present.state === "waiting") return;
    if (this.patientCalls.get(peerId) === state) return;
    this.patientCalls.set(peerId, state);
    window.dispatchEvent(new CustomEvent("mendwell:patient-call",
      { detail: { peerId, state, name: person.name } }));
  }

  // The visit's status in the header, kept up with what the room shows.
  showVisitStatus() {
    let status = null;
    if (this.ended === "ended") status = "completed";
    else if (!this.isStaff && this.selfState) {
      status = this.selfState === "admitted" ? "in_progress" : "waiting";
    } else if (this.isStaff) {
      const patient = this.others().find((p) => p.role === "patient");
      if (patient) status = patient.state === "admitted" ? "in_progress" : "waiting";
    }
    const badge = this.el.visitStatus;
    if (!status || !badge || badge.dataset.status === status) return;
    let labels = {};
    try {
      labels = JSON.parse(this.root.dataset.statusLabels || "{}");
    } catch {
      // keep the raw status
    }
    badge.dataset.status = status;
    badge.className = `status status-${status}`;
    badge.textContent = labels[status] || status;
  }

  tick() {
    if (this.el.waitTimer && Number.isFinite(this.waitingSince) && this.selfState === "waiting") {
      const elapsed = Date.now() - this.waitingSince;
      this.el.waitTimer.textContent = formatWait(elapsed);
      this.el.waitTimer.setAttribute("aria-label", spokenWait(elapsed));
    }
    if (this.el.participants) {
      for (const span of this.el.participants.querySelectorAll("[data-since]")) {
        const since = Number(span.dataset.since);
        span.textContent = `waiting ${formatWait(Date.now() - since)}`;
      }
    }
  }

  announce(text) {
    if (!text || text === this.lastAnnounced) return;
    this.lastAnnounced = text;
    this.el.announcer.textContent = text;
  }

  setPressed(button, pressed) {
    button.setAttribute("aria-pressed", String(pressed));
  }

  showMediaError(message) {
    this.el.mediaError.textContent = message;
    this.el.mediaError.hidden = false;
  }

  showLocal() {
    const { el, media } = this;
    el.localVideo.srcObject = null;
    el.localVideo.srcObject = media.stream;
    el.localVideo.play().catch(() => {});
    el.localTile.classList.toggle("camera-off", media.cameraOff || !media.videoTrack);
    el.mute.disabled = !media.audioTrack;
    el.camera.disabled = !media.videoTrack;
    this.fillDevices();
  }

  fillDevices() {
    const fill = (select, devices, current, noun) => {
      const options = devices.map((device, index) => {
        const option = document.createElement("option");
        option.value = device.deviceId;
        option.textContent = device.label || `${noun} ${index + 1}`;
        option.selected = device.deviceId === current;
        return option;
      });
      select.replaceChildren(...options);
      select.disabled = options.length < 2;
    };
    fill(this.el.cameraSelect, this.media.cameras, this.media.cameraId, "Camera");
    this.el.flipCamera.hidden = !this.media.canFlip;
    fill(this.el.microphoneSelect, this.media.microphones, this.media.microphoneId, "Microphone");
  }

  renderParticipants() {
    const list = this.el.participants;
    if (!list) return;
    // The list is drawn afresh on every presence; whoever was on one of its buttons
    // (the Admit just pressed) stays on that person's row, and the page stays put:
    // a focus() that scrolls would move the video out of sight.
    // (A pressed Admit is disabled until the server answers, which drops its focus.)
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    let focusedPeer = focused && focused.closest("[data-peer-id]")
      ? focused.closest("[data-peer-id]").dataset.peerId : null;
    let focusedAction = focused ? focused.dataset.action : null;
    const lost = !document.activeElement || document.activeElement === document.body;
    if (!focusedPeer && lost && this.pressed) ({ peerId: focusedPeer, action: focusedAction } = this.pressed);
    this.pressed = null;
    const others = this.others();
    const items = others.map((p) => {
      const li = document.createElement("li");
      li.className = `participant participant-${p.state}`;
      li.dataset.peerId = p.peer_id;
      const who = document.createElement("span");
      who.className = "participant-name";
      who.tabIndex = -1; // focus lands here when the button pressed goes away
      who.textContent = p.name;
      const role = document.createElement("span");
      role.className = "participant-role";
      role.textContent = ROLE_LABELS[p.role] || p.role;
      const state = document.createElement("span");
      state.className = "participant-state";
      const since = parseInstant(p.since);
      if (p.state === "waiting" && Number.isFinite(since)) {
        state.dataset.since = String(since);
        state.textContent = `waiting ${formatWait(Date.now() - since)}`;
      } else {
        state.textContent = p.state === "waiting" ? "waiting" : "in the visit";
      }
      const actions = document.createElement("span");
      actions.className = "participant-actions";
      if (p.state === "waiting") {
        actions.append(this.actionButton("admit", p, `Admit ${p.name}`, "Admit", true));
      }
      if (p.role === "guest") {
        // A guest is sent out of the room (their place frees for someone else), not back
        // to the waiting room, where they would keep it.
        actions.append(this.actionButton("dismiss", p, `Remove ${p.name} from the visit`,
          "Remove", false));
        actions.append(this.actionButton("revoke", p,
          `Remove ${p.name} and cancel their invitation`, "Cancel invitation", false));
      } else if (!STAFF_ROLES.has(p.role)) { // staff leave by themselves (server refuses)
        actions.append(this.actionButton("remove", p, `Remove ${p.name} from the visit`,
          "Remove", false));
      }
      li.append(who, role, state, actions);
      return li;
    });
    list.replaceChildren(...items);
    this.el.participantsEmpty.hidden = items.length > 0;
    if (focusedPeer) {
      const row = [...list.children].find((li) => li.dataset.peerId === focusedPeer);
      const same = row && [...row.querySelectorAll("button")]
        .find((b) => b.dataset.action === focusedAction && !b.disabled);
      const target = same || (row && row.querySelector(".participant-name"));
      if (target) target.focus({ preventScroll: true });
    }
  }

  actionButton(action, person, label, text, primary) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.action = action;
    button.dataset.peerId = person.peer_id;
    button.setAttribute("aria-label", label);
    button.textContent = text;
    if (primary) button.className = "primary";
    if (action === "admit") button.dataset.testid = "admit";
    return button;
  }

  showRemote(peerId, link) {
    let tile = this.tiles.get(peerId);
    if (!tile) {
      const figure = document.createElement("figure");
      figure.className = "tile remote-tile";
      const video = document.createElement("video");
      video.className = "camera-video";
      video.autoplay = true;
      video.playsInline = true;
      // The peer's shared screen: shown large, with their camera small in a corner.
      const screen = document.createElement("video");
      screen.className = "screen-video";
      screen.autoplay = true;
      screen.playsInline = true;
      screen.muted = true; // a screen is sent without sound
      screen.hidden = true;
      // Their name in place of a frozen frame while their video is off.
      const status = document.createElement("div");
      status.className = "tile-status";
      const statusName = document.createElement("strong");
      const statusText = document.createElement("span");
      status.append(statusName, statusText);
      const caption = document.createElement("figcaption");
      figure.append(screen, video, status, caption);
      this.el.remoteGrid.append(figure);
      tile = { figure, video, screen, status, statusName, statusText, caption, stream: null };
      this.tiles.set(peerId, tile);
      this.markFirstRemote();
    }
    this.captionTile(peerId, tile);
    this.showScreen(tile, link);
    this.showSoundOnly(tile, link);
    if (tile.stream !== link.remoteStream) {
      tile.stream = link.remoteStream;
      tile.video.srcObject = link.remoteStream;
    }
    for (const track of link.remoteStream.getVideoTracks()) {
      if (tile.watched === track) continue;
      if (tile.watched) {
        // A new video track in the same stream (a fresh receiver): re-attach so that
        // every browser switches to it.
        tile.video.srcObject = null;
        tile.video.srcObject = link.remoteStream;
      }
      tile.watched = track;
      const update = () => {
        tile.figure.classList.toggle("no-video", track.muted);
        this.showSoundOnly(tile, link);
      };
      track.addEventListener("mute", update);
      track.addEventListener("unmute", update);
      update();
    }
    this.play(tile.video);
  }

  showScreen(tile, link) {
    const screen = link.sharedScreen;
    if (tile.screen.srcObject !== screen) {
      tile.screen.srcObject = screen;
      if (screen) this.play(tile.screen);
    }
    tile.screen.hidden = !screen;
    tile.figure.classList.toggle("sharing", Boolean(screen));
    if (screen) tile.screen.dataset.testid = "remote-screen";
    else delete tile.screen.dataset.testid;
  }

  // "Sound only" (theirs, said in their `media` signal, or ours: video is off both
  // ways) shows who it is instead of the last frame; so does a video track that went
  // quiet.
  showSoundOnly(tile, link) {
    const soundOnly = link.peerMedia.video === false || this.media.audioOnly;
    tile.figure.classList.toggle("sound-only", soundOnly);
    tile.statusText.textContent = soundOnly ? "Sound only" : "Video paused";
  }

  framesShown(peerId) {
    const tile = this.tiles.get(peerId);
    if (!tile || !tile.video.getVideoPlaybackQuality) return null;
    return tile.video.getVideoPlaybackQuality().totalVideoFrames;
  }

  captionTile(peerId, tile) {
    const p = this.mesh.participant(peerId);
    tile.caption.textContent = p ? p.name : "";
    tile.statusName.textContent = p ? p.name : "";
    tile.video.setAttribute("aria-label", p ? `Video of ${p.name}` : "Video");
    tile.screen.setAttribute("aria-label", p ? `Screen shared by ${p.name}` : "Shared screen");
  }

  play(video) {
    video.play().catch((error) => {
      if (error.name !== "NotAllowedError") return;
      // The browser wants a tap before it plays sound: play silently, offer the tap.
      video.muted = true;
      video.play().catch(() => {});
      this.el.soundOn.hidden = false;
    });
  }

  unmuteRemotes() {
    for (const tile of this.tiles.values()) {
      tile.screen.play().catch(() => {});
      tile.video.muted = false;
      tile.video.play().catch(() => {});
    }
    this.el.soundOn.hidden = true;
  }

  removeTile(peerId) {
    const tile = this.tiles.get(peerId);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.screen.srcObject = null;
    tile.figure.remove();
    this.tiles.delete(peerId);
    this.markFirstRemote();
  }

  markFirstRemote() {
    this.el.videos.classList.toggle("in-call", this.tiles.size > 0);
    const videos = this.el.remoteGrid.querySelectorAll("video.camera-video");
    videos.forEach((video, index) => {
      if (index === 0) video.dataset.testid = "remote-video";
      else delete video.dataset.testid;
    });
  }
}

const root = document.querySelector(".visit-room[data-live]");
if (root) {
  const room = new VisitRoom(root);
  // For people and tests checking a call from the console (connection states, getStats()
  // of room.mesh.links); nothing in the page reads it.
  window.mendwellVisitRoom = room;
  mountVisitChat(room.signaling);
  room.start();
}
