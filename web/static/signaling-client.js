// The client side of docs/signaling.md: one socket per participant per visit.
//
// It says the same `hello` (same peer_id) on every connection so the server resumes
// our place after a drop or a restart, holds outgoing messages while the socket is
// away, and paces what it sends to stay under the server's rate limit (a burst of 60,
// then 30 a second): a mesh gathering ICE candidates for three peers at once must not
// get itself disconnected with 4429.

import { ReconnectingSocket, socketUrl } from "./reconnecting-socket.js";

const PEER_ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
const BURST = 50;
const PER_SECOND = 25;
const QUEUE_LIMIT = 500;
// Besides signed out and not allowed: no such visit (4404), the same peer_id took over
// in another tab (4409), the visit has ended (4410), the care team sent this guest out
// (4411). Reconnecting would not help.
// Every other close resumes with backoff and the same hello: a dropped network (1006),
// a restarting server (1012), Redis or the database unavailable (1013, after an
// `error` `unavailable`; reconnecting-socket.js waits a little longer before the first
// retry). The call's media is peer to peer and goes on meanwhile.
const FINAL_CLOSE_CODES = [4404, 4409, 4410, 4411];

// The peer id is kept in sessionStorage: a reload of the same tab resumes the same
// place in the room, a second tab gets its own.
export function peerIdFor(visitId) {
  const key = `mendwell.peer.${visitId}`;
  let id = null;
  try {
    id = window.sessionStorage.getItem(key);
  } catch {
    // storage disabled: an id for this page's life only
  }
  if (!id || !PEER_ID_PATTERN.test(id)) {
    id = crypto.randomUUID().replaceAll("-", "");
    try {
      window.sessionStorage.setItem(key, id);
    } catch {
      // see above
    }
  }
  return id;
}

// Events: one per server message type ("welcome", "presence", "signal", ...), with
// the message as detail; plus "connection" (detail: {status: "connecting" | "open" |
// "down" | "closed", code}) for the socket itself.
export class SignalingClient extends EventTarget {
  // `base`: visit signaling's origin (its own listener, on another port; the page says
  // where in data-signaling); empty: the page's own origin.
  constructor({ visitId, peerId, guestToken = null, base = "" }) {
    super();
    this.peerId = peerId;
    this.hello = { type: "hello", peer_id: peerId, polite_capable: true };
    // An invited guest (interpreter, family member) has no account: the invitation's
    // token in the hello is their authentication.
    if (guestToken) this.hello.guest_token = guestToken;
    const path = `/ws/visits/${visitId}`;
    this.socket = new ReconnectingSocket(base ? `${base}${path}` : socketUrl(path),
      { finalCodes: FINAL_CLOSE_CODES });
    this.welcomed = false;
    this.everWelcomed = false;
    this.queue = [];
    this.tokens = BURST;
    this.refilledAt = performance.now();
    this.drainTimer = null;
    this.socket.addEventListener("open", () => {
      this.welcomed = false;
      this.tokens = BURST;
      this.socket.sendNow(this.hello);
    });
    this.socket.addEventListener("message", (event) => this.receive(event.detail));
    this.socket.addEventListener("down", (event) => {
      this.welcomed = false;
      this.emit("connection", { status: "down", ...event.detail });
    });
    this.socket.addEventListener("final", (event) => {
      this.welcomed = false;
      this.emit("connection", { status: "closed", ...event.detail });
    });
  }

  get isUp() {
    return this.welcomed && this.socket.isOpen;
  }

  start() {
    this.emit("connection", { status: "connecting" });
    this.socket.start();
  }

  receive(message) {
    if (message.type === "welcome") {
      const resumed = this.everWelcomed;
      this.welcomed = true;
      this.everWelcomed = true;
      this.socket.markHealthy();
      this.emit("connection", { status: "open", reconnected: resumed });
      this.emit("welcome", { ...message, reconnected: resumed });
      this.drain();
      return;
    }
    if (message.type === "pong") return;
    this.emit(message.type, message);
  }

  // Queue, then send as fast as the rate limit allows once the server has welcomed us.
  send(message) {
    if (this.queue.length >= QUEUE_LIMIT) {
      // Stale negotiation is worse than none: the oldest goes first.
      this.queue.shift();
    }
    this.queue.push(message);
    this.drain();
  }

  drain() {
    clearTimeout(this.drainTimer);
    this.drainTimer = null;
    if (!this.isUp) return;
    const now = performance.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.refilledAt) / 1000) * PER_SECOND);
    this.refilledAt = now;
    while (this.queue.length > 0 && this.tokens >= 1) {
      if (!this.socket.sendNow(this.queue[0])) return;
      this.queue.shift();
      this.tokens -= 1;
    }
    if (this.queue.length > 0) {
      this.drainTimer = setTimeout(() => this.drain(), Math.ceil(1000 / PER_SECOND));
    }
  }

  // Leaving on purpose: tell the server right away (not through the paced queue).
  leave() {
    this.socket.sendNow({ type: "leave" });
    this.stop();
  }

  stop() {
    clearTimeout(this.drainTimer);
    this.queue = [];
    this.welcomed = false;
    this.socket.stop();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
