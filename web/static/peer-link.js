// One RTCPeerConnection to one remote participant, negotiated with the "perfect
// negotiation" pattern (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example).
//
// The server decides who is polite in each pair (docs/signaling.md). The impolite side
// makes the first offer; the polite side adds nothing before that offer arrives and then
// puts its camera and microphone on the transceivers the offer created. That keeps the
// first exchange free of collisions, and it is what an aiortc peer (always impolite,
// unable to roll back) needs. After the first exchange either side may renegotiate
// (audio-only, ICE restart, a shared screen) and the polite side rolls back on a
// collision.
//
// A shared screen goes on a transceiver of its own, send-only, with a stream of its own
// (media.screenStream); stopping the share makes it inactive, sharing again reuses it.
// The peer is told the screen's stream id in a `media` signal (docs/signaling.md) and
// never puts its own camera on a transceiver the other side offered as send-only.

const PENDING_CANDIDATE_LIMIT = 200;

export class LinkBroken extends Error {
  constructor(peerId, description, cause) {
    super(`Cannot apply the ${description.type} from peer "${peerId}": ` +
      `${cause && cause.message}`);
    this.description = description;
  }
}

function kindOf(transceiver) {
  return transceiver.receiver.track.kind;
}

// Chrome dropped RTCRtpTransceiver.stopped; currentDirection says it instead.
function isStopped(transceiver) {
  return transceiver.stopped === true || transceiver.currentDirection === "stopped" ||
    transceiver.direction === "stopped";
}

const MAX_VIDEO_REPAIRS = 3;

// The direction the remote description gives the m-section `mid` (from its side).
function remoteDirectionOf(sdp, mid) {
  for (const section of (sdp || "").split("\r\nm=").slice(1)) {
    if (!section.includes(`\r\na=mid:${mid}\r\n`)) continue;
    const found = /\r\na=(sendrecv|sendonly|recvonly|inactive)\r\n/.exec(section);
    return found ? found[1] : "sendrecv";
  }
  return null;
}

function fingerprintOf(sdp) {
  const found = /^a=fingerprint:.*$/m.exec(sdp || "");
  return found ? found[0].trim() : "";
}

// Events: "state" (connection state changed), "track" (the remote stream or the remote
// screen got a track).
// `handle()` rejects with LinkBroken when a description cannot be applied at all (the
// peer rebuilt its connection): the mesh then rebuilds ours and replays the message.
export class PeerLink extends EventTarget {
  constructor({ peerId, polite, iceServers, iceTransportPolicy = "all", media, send,
    audioOnly = false }) {
    super();
    this.peerId = peerId;
    this.polite = polite;
    this.media = media;
    this.sendSignal = send;
    this.audioOnly = audioOnly;
    this.createdAt = Date.now();
    this.lastProgress = this.createdAt;
    this.restartedAt = 0;
    this.rolledBackAt = 0;
    this.videoRepairs = 0;
    this.stateSince = this.createdAt;
    this.lastState = "new";
    this.offerSentAt = 0;
    this.negotiated = false;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswerPending = false;
    this.pendingCandidates = [];
    this.chain = Promise.resolve();
    this.mine = new Set();
    this.closed = false;
    this.forwardTo = null;
    this.remoteStream = new MediaStream();
    // The peer's shared screen (null when it shares none), and what it says it sends.
    this.remoteScreen = null;
    this.peerMedia = { video: true, screen: null };
    this.cameraStreamId = "";
    this.screenTransceiver = null;
    // Transceivers the peer offered as send-only (its screen): receive-only here.
    this.theirs = new Set();

    // iceTransportPolicy "relay" (the server's MENDWELL_ICE_TRANSPORT_POLICY): TURN
    // candidates only, so the other side never sees this device's IP address.
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy,
      bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.addEventListener("track", ({ track, streams }) => {
      const streamId = streams && streams[0] ? streams[0].id : "";
      if (this.isScreen(track, streamId)) {
        if (!this.remoteScreen || !this.remoteScreen.getTracks().includes(track)) {
          this.remoteScreen = new MediaStream([track]);
        }
      } else {
        // The camera's stream also carries the microphone: a video track in any other
        // stream is a screen, even before its `media` signal arrives.
        if (track.kind === "audio" && streamId) this.cameraStreamId = streamId;
        if (!this.remoteStream.getTracks().includes(track)) {
          // One track per kind: an old one left from before a renegotiation goes.
          for (const old of this.remoteStream.getTracks()) {
            if (old.kind === track.kind) this.remoteStream.removeTrack(old);
          }
          this.remoteStream.addTrack(track);
        }
      }
      this.dispatchEvent(new CustomEvent("track", { detail: { track } }));
    });
    pc.addEventListener("icecandidate", ({ candidate }) => {
      // Trickle ICE: each candidate goes out as soon as it is gathered; null marks the end.
      this.send({ candidate: candidate && candidate.candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("negotiationneeded", () => this.negotiate());
    pc.addEventListener("connectionstatechange", () => {
      const now = Date.now();
      if (pc.connectionState === "connected") {
        this.lastProgress = now;
        this.restartedAt = 0;
      } else if (this.lastState === "connected") {
        // The trouble starts now: the mesh's clocks (restart, then rebuild) count from
        // here, not from when the connection came up, which may be long ago.
        this.lastProgress = now;
      }
      this.lastState = pc.connectionState;
      this.stateSince = now;
      this.dispatchEvent(new Event("state"));
    });

    if (!polite) {
      // Adding the transceivers fires negotiationneeded: our first offer goes out.
      for (const kind of ["audio", "video"]) {
        const track = this.trackFor(kind);
        const transceiver = pc.addTransceiver(track || kind, {
          direction: this.directionFor(kind), streams: [media.stream] });
        this.mine.add(transceiver);
      }
      this.syncScreen(); // a late joiner gets the screen with the first offer
    }
  }

  isScreen(track, streamId) {
    if (track.kind !== "video" || !streamId) return false;
    if (streamId === this.peerMedia.screen) return true;
    return Boolean(this.cameraStreamId) && streamId !== this.cameraStreamId;
  }

  // What the peer says it sends (a `media` signal, kept by the mesh across rebuilds).
  setPeerMedia(media) {
    this.peerMedia = { video: media.video !== false, screen: media.screen || null };
    if (!this.peerMedia.screen) this.remoteScreen = null;
  }

  // The peer's screen as the page should show it: null when it shares none.
  get sharedScreen() {
    if (!this.peerMedia.screen || !this.remoteScreen) return null;
    const live = this.remoteScreen.getVideoTracks().some((t) => t.readyState === "live");
    return live ? this.remoteScreen : null;
  }

  // Send our shared screen (media.screenTrack), or stop sending it. A change of
  // direction or a new transceiver fires negotiationneeded: renegotiated by the
  // perfect-negotiation code below, whichever side is polite.
  syncScreen() {
    // A polite link's first exchange is the impolite side's offer; the screen is
    // added once it is done (see onDescription).
    if (this.closed || (this.polite && !this.negotiated)) return;
    const track = this.media.screenTrack;
    const transceiver = this.screenTransceiver && !isStopped(this.screenTransceiver)
      ? this.screenTransceiver : null;
    if (!track) {
      if (transceiver && transceiver.direction !== "inactive") {
        transceiver.direction = "inactive";
        transceiver.sender.replaceTrack(null).catch(() => {});
      }
      return;
    }
    if (!transceiver) {
      this.screenTransceiver = this.pc.addTransceiver(track, {
        direction: "sendonly", streams: [this.media.screenStream] });
      return;
    }
    if (transceiver.sender.track !== track) {
      transceiver.sender.replaceTrack(track).catch((error) =>
        console.warn("could not share the screen", error));
      if (transceiver.sender.setStreams) transceiver.sender.setStreams(this.media.screenStream);
    }
    transceiver.direction = "sendonly";
  }

  get state() {
    return this.closed ? "closed" : this.pc.connectionState;
  }

  trackFor(kind) {
    if (kind === "audio") return this.media.audioTrack;
    return this.audioOnly ? null : this.media.videoTrack;
  }

  directionFor(kind) {
    return kind === "video" && this.audioOnly ? "inactive" : "sendrecv";
  }

  send(payload) {
    if (!this.closed) this.sendSignal({ type: "signal", to: this.peerId, ...payload });
  }

  async negotiate() {
    // The first offer belongs to the impolite side; a polite link that has not been
    // offered to yet has nothing to say (its transceivers come with that offer).
    if (this.closed || (this.polite && !this.negotiated)) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.offerSentAt = Date.now();
      this.send({ description: this.pc.localDescription.toJSON() });
    } catch (error) {
      console.warn(`offer to ${this.peerId} failed`, error);
    } finally {
      this.makingOffer = false;
    }
  }

  // Signals from one peer are applied in arrival order, one at a time.
  handle(message) {
    const step = message.description
      ? () => this.onDescription(message.description)
      : () => this.onCandidate(message.candidate ?? null);
    const run = this.chain.then(step);
    this.chain = run.catch(() => {});
    return run;
  }

  async onDescription(description) {
    const pc = this.pc;
    if (this.closed) return;
    if (description.type === "rollback") {
      if (pc.signalingState === "have-remote-offer") {
        await pc.setRemoteDescription({ type: "rollback" });
      }
      return;
    }
    const readyForOffer = !this.makingOffer &&
      (pc.signalingState === "stable" || this.settingRemoteAnswerPending);
    const offerCollision = description.type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && offerCollision;
    if (this.ignoreOffer) return;
    // Chromium (seen in 156) stops delivering the frames of an existing video receiver
    // after a rollback, though it keeps decoding them; the mesh watches for that after
    // a collision and asks for a fresh receiver (replaceVideoReceiver).
    if (offerCollision) this.rolledBackAt = Date.now();
    if (description.type === "answer" && pc.signalingState !== "have-local-offer") {
      return; // a late duplicate: nothing is waiting for it
    }
    // Another DTLS certificate means the peer started a new connection (it reloaded,
    // or rebuilt its own). Chrome would accept the description and then never connect,
    // so ours must start over too.
    const current = pc.currentRemoteDescription;
    if (current && fingerprintOf(description.sdp) !== fingerprintOf(current.sdp)) {
      throw new LinkBroken(this.peerId, description, new Error("the peer's certificate changed"));
    }
    this.settingRemoteAnswerPending = description.type === "answer";
    try {
      // On the polite side a colliding offer rolls our own back implicitly.
      await pc.setRemoteDescription(description);
    } catch (error) {
      throw new LinkBroken(this.peerId, description, error);
    } finally {
      this.settingRemoteAnswerPending = false;
    }
    this.lastProgress = Date.now();
    await this.flushCandidates();
    if (description.type === "offer") {
      await this.attachLocalMedia(description.sdp);
      await pc.setLocalDescription();
      this.send({ description: pc.localDescription.toJSON() });
    }
    const first = !this.negotiated;
    this.negotiated = true;
    if (first && this.polite) this.syncScreen();
  }

  // Put our tracks on transceivers the remote offer created (first offer, or a peer
  // that added a transceiver later), except the ones it only sends on (its screen).
  async attachLocalMedia(sdp) {
    for (const transceiver of this.pc.getTransceivers()) {
      if (this.mine.has(transceiver) || this.theirs.has(transceiver) ||
          transceiver === this.screenTransceiver || isStopped(transceiver)) continue;
      if (remoteDirectionOf(sdp, transceiver.mid) === "sendonly") {
        this.theirs.add(transceiver);
        transceiver.direction = "recvonly";
        continue;
      }
      const kind = kindOf(transceiver);
      this.mine.add(transceiver);
      transceiver.direction = this.directionFor(kind);
      await transceiver.sender.replaceTrack(this.trackFor(kind));
      if (transceiver.sender.setStreams) transceiver.sender.setStreams(this.media.stream);
    }
  }

  async onCandidate(candidate) {
    // Candidates queued behind an offer that moved to a rebuilt link follow it there.
    if (this.forwardTo) return this.forwardTo.handle({ candidate });
    if (this.closed) return;
    if (!this.pc.remoteDescription) {
      if (this.pendingCandidates.length < PENDING_CANDIDATE_LIMIT) {
        this.pendingCandidates.push(candidate);
      }
      return;
    }
    await this.addCandidate(candidate);
  }

  async flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of pending) await this.addCandidate(candidate);
  }

  async addCandidate(candidate) {
    try {
      if (candidate) await this.pc.addIceCandidate(candidate);
      else await this.pc.addIceCandidate();
    } catch (error) {
      // Candidates for an offer we ignored, or from a previous ICE generation, are
      // expected to fail; they do not break the connection.
      if (!this.ignoreOffer) console.debug(`candidate from ${this.peerId} refused`, error);
    }
  }

  // The local tracks changed (another camera, audio-only off): no renegotiation needed.
  async updateTracks() {
    for (const transceiver of this.mine) {
      if (isStopped(transceiver)) continue;
      const kind = kindOf(transceiver);
      if (transceiver.sender.track !== this.trackFor(kind)) {
        await transceiver.sender.replaceTrack(this.trackFor(kind));
      }
    }
  }

  // Audio-only stops video in both directions: the peer stops sending it too.
  async setAudioOnly(on) {
    this.audioOnly = on;
    for (const transceiver of this.mine) {
      if (isStopped(transceiver) || kindOf(transceiver) !== "video") continue;
      transceiver.direction = this.directionFor("video"); // fires negotiationneeded
    }
    await this.updateTracks();
  }

  // A restart needs an established session to restart; before that, rebuilding is
  // the only remedy.
  restartIce() {
    if (this.closed || !this.negotiated) return false;
    this.restartedAt = Date.now();
    this.lastProgress = this.restartedAt;
    this.pc.restartIce();
    return true;
  }

  // An offer still unanswered is sent again: the peer may have missed it (it was away
  // from the room), or its answer was lost (our socket dropped with it in flight).
  // Applying the same offer twice is harmless: the peer answers it again.
  resendPendingOffer() {
    if (this.closed || this.makingOffer || this.pc.signalingState !== "have-local-offer" ||
        !this.pc.localDescription || this.pc.localDescription.type !== "offer") return false;
    this.offerSentAt = Date.now();
    this.send({ description: this.pc.localDescription.toJSON() });
    return true;
  }

  // Whether our offer has waited for its answer longer than `ms`.
  offerUnansweredFor(ms) {
    return !this.closed && this.pc.signalingState === "have-local-offer" &&
      this.offerSentAt > 0 && Date.now() - this.offerSentAt > ms;
  }

  // Whether media from the peer is still arriving: packets received keep growing while
  // its connection lives, even with its camera off or microphone muted (black frames
  // and silence are still sent). Returns the ms since the count last moved.
  async inboundStalledFor() {
    if (this.closed) return Infinity;
    let packets = 0;
    try {
      const stats = await this.pc.getStats();
      stats.forEach((report) => {
        if (report.type === "inbound-rtp") packets += report.packetsReceived || 0;
      });
    } catch {
      return 0;
    }
    const now = Date.now();
    if (packets !== this.inboundPackets) {
      this.inboundPackets = packets;
      this.inboundMovedAt = now;
    }
    return now - (this.inboundMovedAt || now);
  }

  async videoFramesDecoded() {
    let frames = 0;
    try {
      const stats = await this.pc.getStats();
      stats.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") {
          frames += report.framesDecoded || 0;
        }
      });
    } catch {
      // closed meanwhile
    }
    return frames;
  }

  // Swap our video transceiver for a new one (a new m-line): its receiver is fresh,
  // and the peer puts its camera on it when it answers. Works around the Chromium
  // rollback bug above without dropping the call; after a few tries the mesh rebuilds.
  replaceVideoReceiver() {
    if (this.closed || !this.negotiated || this.videoRepairs >= MAX_VIDEO_REPAIRS) return false;
    const old = [...this.mine].find((t) => !isStopped(t) && kindOf(t) === "video");
    if (!old) return false;
    this.videoRepairs += 1;
    this.rolledBackAt = 0;
    const fresh = this.pc.addTransceiver(this.trackFor("video") || "video", {
      direction: this.directionFor("video"), streams: [this.media.stream] });
    this.mine.add(fresh);
    old.stop(); // fires negotiationneeded: the offer carries both changes
    return true;
  }

  setIceServers(iceServers, iceTransportPolicy = "all") {
    if (this.closed) return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers, iceTransportPolicy });
    } catch (error) {
      console.warn("could not update ICE servers", error);
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    this.dispatchEvent(new Event("state"));
  }
}
