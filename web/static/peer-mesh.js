// The mesh: one PeerLink per other admitted participant (up to three), kept in step
// with the room's presence, and the recovery rules of docs/signaling.md.
//
// Presence is about the signaling sockets, media is peer to peer. A participant whose
// socket dropped (or whose server restarted) disappears from presence for a moment
// while our media with them may still be flowing, so a link is never closed just
// because its peer left presence: only once its media stops too.

import { LinkBroken, PeerLink } from "./peer-link.js";

const WATCH_MS = 1000;
const RESTART_DISCONNECTED_AFTER_MS = 3000;
const REBUILD_AFTER_MS = 10_000;
// The impolite side's rebuild sends a fresh offer; the polite side gives it a head
// start so that both do not throw away each other's new connection.
const POLITE_REBUILD_EXTRA_MS = 5000;
const ABSENT_GRACE_MS = 10_000;
// How long a peer may go without working media (across restarts and rebuilds) before
// the person is told that it failed and what to try; recovery carries on regardless.
// ICE with no usable candidate pair never reports "failed": it stays "connecting".
const FAILED_AFTER_MS = 20_000;
const FAILED_WITH_TURN_AFTER_MS = 30_000;
// A peer that left presence and whose media stopped has closed its connection (a
// reload, a closed tab): ICE would only notice after 5 to 30 seconds.
const STALLED_MS = 2000;
const RETURN_WATCH_MS = 10_000;
// After a rollback: how long to watch for video that is decoded but never shown.
const FROZEN_WATCH_MS = 15_000;
// The polite side leaves ICE restarts to the impolite side (two restarts at once
// collide, and the polite side's rollback freezes its video in Chromium); it restarts
// itself only when nothing has come from the other side for this long.
const POLITE_RESTART_AFTER_MS = 8000;
// An offer unanswered this long while signaling is up is sent again: a socket that
// dropped (or looked open while the network under it was gone) loses what was in
// flight, the offer or its answer, and nothing else would ever repeat it.
const OFFER_RESEND_AFTER_MS = 4000;

export function hasTurn(iceServers) {
  return (iceServers || []).some((server) => {
    const urls = [].concat(server.urls || server.url || []);
    return urls.some((url) => /^turns?:/i.test(url));
  });
}

// Events: "change" (links or their states changed), "remote" (detail: {peerId, link}:
// a link was opened, rebuilt or got a track, or its peer's media state changed),
// "media" (detail: {peerId, media, before}: a peer's `media` signal), "gone"
// (detail: {peerId}).
export class PeerMesh extends EventTarget {
  constructor({ signaling, media, selfPeerId, framesShown = () => null }) {
    super();
    this.framesShown = framesShown;
    this.signaling = signaling;
    this.media = media;
    this.selfPeerId = selfPeerId;
    this.links = new Map();
    this.present = new Map();
    this.known = new Map();
    this.absentSince = new Map();
    this.returned = new Set();
    this.returnedAt = new Map();
    this.troubleSince = new Map();
    // What each peer last said it sends (`media` signals): kept across rebuilds, and
    // before a link exists (the signal may overtake the presence that opens it).
    this.peerMedia = new Map();
    this.iceServers = [];
    this.iceTransportPolicy = "all";
    this.audioOnly = false;
    this.admitted = false;
    this.timer = setInterval(() => this.watch(), WATCH_MS);
    media.addEventListener("tracks", () => {
      for (const link of this.links.values()) {
        link.updateTracks().catch((error) => console.warn("could not swap tracks", error));
      }
    });
    // The media state goes first, so that the peer knows the screen's stream by the
    // time the offer that carries it arrives (signals keep their order).
    media.addEventListener("screen", () => {
      for (const link of this.links.values()) {
        this.sendMediaState(link);
        link.syncScreen();
      }
    });
  }

  mediaState() {
    return { video: !this.media.audioOnly,
      screen: this.media.screenStream ? this.media.screenStream.id : null };
  }

  sendMediaState(link) {
    link.send({ media: this.mediaState() });
  }

  get hasTurn() {
    return hasTurn(this.iceServers);
  }

  participant(peerId) {
    return this.known.get(peerId) || null;
  }

  setIceServers(iceServers, iceTransportPolicy = "all") {
    this.iceServers = iceServers || [];
    this.iceTransportPolicy = iceTransportPolicy === "relay" ? "relay" : "all";
    for (const link of this.links.values()) {
      link.setIceServers(this.iceServers, this.iceTransportPolicy);
    }
  }

  // Not admitted (still waiting, or sent back to the waiting room): no media at all.
  setAdmitted(admitted) {
    this.admitted = admitted;
    if (!admitted) {
      for (const peerId of [...this.links.keys()]) this.closeLink(peerId);
    }
    this.reconcile();
  }

  updatePresence(participants) {
    const present = new Map();
    for (const p of participants || []) {
      if (p.peer_id !== this.selfPeerId) present.set(p.peer_id, p);
    }
    const now = Date.now();
    for (const [peerId, p] of present) {
      this.known.set(peerId, p);
      if (this.absentSince.delete(peerId)) {
        this.returned.add(peerId);
        this.returnedAt.set(peerId, now);
      }
    }
    for (const peerId of this.links.keys()) {
      if (!present.has(peerId) && !this.absentSince.has(peerId)) this.absentSince.set(peerId, now);
    }
    this.present = present;
    this.reconcile();
  }

  reconcile() {
    if (this.admitted) {
      for (const [peerId, p] of this.present) {
        const link = this.links.get(peerId);
        if (p.state !== "admitted") {
          // Back in the waiting room (removed, then knocked again): no media with them.
          if (link) this.closeLink(peerId);
          continue;
        }
        if (!link) {
          this.open(peerId, Boolean(p.polite));
        } else if (link.polite !== Boolean(p.polite)) {
          this.rebuild(peerId);
        } else if (this.returned.has(peerId)) {
          link.resendPendingOffer();
        }
      }
    }
    this.returned.clear();
    this.changed();
  }

  open(peerId, polite) {
    const link = new PeerLink({
      peerId, polite, iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy,
      media: this.media, audioOnly: this.audioOnly,
      send: (message) => this.signaling.send(message),
    });
    link.addEventListener("state", () => this.changed());
    link.addEventListener("track", () => this.emit("remote", { peerId, link }));
    if (this.peerMedia.has(peerId)) link.setPeerMedia(this.peerMedia.get(peerId));
    this.links.set(peerId, link);
    // A new link is a late joiner, a reload or a rebuild: tell them what we send.
    this.sendMediaState(link);
    this.emit("remote", { peerId, link });
    return link;
  }

  rebuild(peerId) {
    const old = this.links.get(peerId);
    const p = this.present.get(peerId) || this.known.get(peerId);
    const polite = p ? Boolean(p.polite) : Boolean(old && old.polite);
    if (old) old.close();
    this.links.delete(peerId);
    return this.open(peerId, polite);
  }

  closeLink(peerId) {
    const link = this.links.get(peerId);
    this.peerMedia.delete(peerId);
    if (!link) return;
    link.close();
    this.links.delete(peerId);
    this.absentSince.delete(peerId);
    this.returnedAt.delete(peerId);
    this.troubleSince.delete(peerId);
    this.emit("gone", { peerId });
    this.changed();
  }

  onSignal(message) {
    const peerId = message.from;
    if (message.media) {
      this.onMediaState(peerId, message.media);
      return;
    }
    let link = this.links.get(peerId);
    if (!link) {
      // An offer can overtake the presence that announces its sender.
      if (!this.admitted || !message.description || message.description.type !== "offer") return;
      const p = this.present.get(peerId);
      link = this.open(peerId, p ? Boolean(p.polite) : true);
    }
    link.handle(message).catch((error) => {
      if (!(error instanceof LinkBroken) || this.links.get(peerId) !== link) {
        console.warn(error);
        return;
      }
      // The peer built a new connection (a reload, or its own rebuild): ours cannot
      // follow it, so start fresh. A polite link answers the offer that broke the old
      // one; an impolite link makes its own offer, which the peer will accept.
      const fresh = this.rebuild(peerId);
      if (fresh.polite && message.description.type === "offer") {
        fresh.handle(message).catch((again) => console.warn(again));
        link.forwardTo = fresh;
      }
    });
  }

  onMediaState(peerId, media) {
    const before = this.peerMedia.get(peerId) || { video: true, screen: null };
    this.peerMedia.set(peerId, media);
    const link = this.links.get(peerId);
    if (link) link.setPeerMedia(media);
    this.emit("media", { peerId, media, before });
    if (link) this.emit("remote", { peerId, link });
  }

  // Signaling is back after a drop: restart ICE where media suffered (the impolite
  // side; see POLITE_RESTART_AFTER_MS), and give every unfinished connection a fresh
  // 10 seconds before it is rebuilt.
  onReconnected() {
    const now = Date.now();
    for (const link of this.links.values()) {
      // The old socket may have taken an offer or its answer down with it.
      link.resendPendingOffer();
      this.sendMediaState(link);
      if (link.state === "connected") continue;
      link.lastProgress = now;
      if ((link.state === "disconnected" || link.state === "failed") && !link.polite) {
        link.restartedAt = 0;
        link.restartIce();
      }
    }
    this.changed();
  }

  watch() {
    const now = Date.now();
    const up = this.signaling.isUp;
    for (const [peerId, link] of [...this.links]) {
      const state = link.state;
      const absent = this.absentSince.get(peerId);
      if (state === "connected") this.troubleSince.delete(peerId);
      else if (!this.troubleSince.has(peerId)) this.troubleSince.set(peerId, now);
      if (absent !== undefined && (["disconnected", "failed", "closed"].includes(state) ||
          (state !== "connected" && now - absent > ABSENT_GRACE_MS))) {
        this.closeLink(peerId);
        continue;
      }
      if (up && absent === undefined && link.offerUnansweredFor(OFFER_RESEND_AFTER_MS)) {
        link.resendPendingOffer();
      }
      if (state === "connected") {
        this.checkLiveness(peerId, link, absent, now);
        this.checkFrozenVideo(peerId, link, now);
        continue;
      }
      // Without signaling nothing can be renegotiated: wait for it to come back.
      if (!up || absent !== undefined) continue;
      const troubled = state === "failed" ||
        (state === "disconnected" && now - link.stateSince > RESTART_DISCONNECTED_AFTER_MS);
      const mayRestart = !link.polite || (now - link.stateSince > POLITE_RESTART_AFTER_MS &&
        now - link.lastProgress > POLITE_RESTART_AFTER_MS);
      if (troubled && mayRestart && link.restartedAt === 0 && link.restartIce()) continue;
      const limit = REBUILD_AFTER_MS + (link.polite ? POLITE_REBUILD_EXTRA_MS : 0);
      if (now - link.lastProgress > limit) this.rebuild(peerId);
    }
    this.changed();
  }

  // Only for peers that left presence or just came back: everyone else's media is
  // judged by ICE. A returning peer with dead media reloaded its page: its fresh
  // connection needs a fresh one here (the impolite side's new offer starts it).
  checkLiveness(peerId, link, absent, now) {
    const returnedAt = this.returnedAt.get(peerId);
    if (returnedAt !== undefined && now - returnedAt > RETURN_WATCH_MS) {
      this.returnedAt.delete(peerId);
    }
    if (absent === undefined && !this.returnedAt.has(peerId)) return;
    link.inboundStalledFor().then((stalled) => {
      if (stalled < STALLED_MS || this.links.get(peerId) !== link) return;
      if (Date.now() - link.lastProgress < STALLED_MS) return; // renegotiating right now
      if (this.absentSince.has(peerId)) {
        this.closeLink(peerId);
      } else if (this.signaling.isUp) {
        this.returnedAt.delete(peerId);
        this.rebuild(peerId);
      }
    });
  }

  // Video decoded but never shown after a rollback (Chromium bug, see peer-link.js):
  // swap in a fresh receiver, or rebuild the connection when that does not help.
  checkFrozenVideo(peerId, link, now) {
    if (!link.rolledBackAt || now - link.rolledBackAt > FROZEN_WATCH_MS) {
      link.frozenSeen = null;
      return;
    }
    if (document.visibilityState !== "visible") return; // hidden pages show no frames
    link.videoFramesDecoded().then((decoded) => {
      const shown = this.framesShown(peerId);
      if (shown === null || this.links.get(peerId) !== link) return;
      const before = link.frozenSeen;
      link.frozenSeen = { decoded, shown, count: 0 };
      if (!before) return;
      const frozen = decoded - before.decoded >= 5 && shown === before.shown;
      link.frozenSeen.count = frozen ? before.count + 1 : 0;
      if (link.frozenSeen.count < 2 || !this.signaling.isUp) return;
      link.frozenSeen = null;
      if (!link.replaceVideoReceiver()) this.rebuild(peerId);
    });
  }

  setAudioOnly(on) {
    this.audioOnly = on;
    for (const link of this.links.values()) {
      this.sendMediaState(link);
      link.setAudioOnly(on).catch((error) => console.warn("could not switch video", error));
    }
  }

  summary() {
    const now = Date.now();
    let connected = 0;
    let troubled = 0;
    let failed = 0;
    const limit = this.hasTurn ? FAILED_WITH_TURN_AFTER_MS : FAILED_AFTER_MS;
    for (const [peerId, link] of this.links) {
      const state = link.state;
      if (state === "connected") connected += 1;
      if (state === "disconnected" || state === "failed") troubled += 1;
      const since = this.troubleSince.get(peerId);
      if ((state === "failed" && !this.hasTurn) ||
          (state !== "connected" && since !== undefined && now - since > limit)) {
        failed += 1;
      }
    }
    return { count: this.links.size, connected, troubled, failed };
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  close() {
    clearInterval(this.timer);
    for (const peerId of [...this.links.keys()]) this.closeLink(peerId);
  }
}
