// A WebSocket that comes back by itself: backoff from 0.5 s doubling to 10 s, with
// jitter so that a whole clinic does not reconnect in the same instant after a server
// restart. Used by the visit room's signaling and by the live dashboards.

export const BACKOFF_INITIAL_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

// Close codes after which trying again cannot help: signed out, not allowed.
const FINAL_CLOSE_CODES = [4401, 4403];
// Every other close is retried with backoff, among them the server's: 1011 (an error),
// 1012 (the instance is restarting) and 1013 ("try again later": Redis or the database
// is unavailable, docs/signaling.md "Close codes"). After 1013 the first retry waits
// about a second, not half of one: the server has just said it cannot serve yet.
const TRY_AGAIN_LATER = 1013;

export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** attempt);
  // ±20 %: enough to spread a crowd, small enough to keep the schedule recognisable.
  return Math.round(base * (0.8 + 0.4 * random()));
}

export function socketUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${path}`;
}

// Events: "open", "message" (detail: parsed JSON object), "down" (detail: {code,
// attempt, delay}), "final" (detail: {code, reason}: the server refused us for good).
export class ReconnectingSocket extends EventTarget {
  constructor(url, { heartbeatMs = 5000, silenceMs = 12_000, finalCodes = [] } = {}) {
    super();
    this.url = url;
    this.finalCodes = new Set([...FINAL_CLOSE_CODES, ...finalCodes]);
    this.heartbeatMs = heartbeatMs;
    this.silenceMs = silenceMs;
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.lastHeard = 0;
    this.stopped = false;
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  // Call once the server has accepted us at the application level (a `welcome`):
  // only then is the connection good enough to reset the backoff.
  markHealthy() {
    this.attempt = 0;
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.scheduleRetry(1006);
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      this.startHeartbeat();
      this.dispatchEvent(new Event("open"));
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === "string") {
        this.dispatchEvent(new CustomEvent("message", { detail: message }));
      }
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.stopHeartbeat();
      if (this.finalCodes.has(event.code)) {
        this.stopped = true;
        this.dispatchEvent(new CustomEvent("final", {
          detail: { code: event.code, reason: event.reason } }));
        return;
      }
      this.scheduleRetry(event.code);
    });
  }

  scheduleRetry(code) {
    if (this.stopped) return;
    if (code === TRY_AGAIN_LATER) this.attempt = Math.max(this.attempt, 1);
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.dispatchEvent(new CustomEvent("down", {
      detail: { code, attempt: this.attempt, delay } }));
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // A socket can look open long after the network under it went away (a phone moving
  // between networks). The application-level ping gets an answer within a round trip;
  // silence for longer than `silenceMs` means the socket is dead, so drop it.
  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (!this.isOpen) return;
      if (Date.now() - this.lastHeard > this.silenceMs) {
        this.drop();
        return;
      }
      this.sendNow({ type: "ping" });
    }, this.heartbeatMs);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  // Close the current socket and reconnect (as if the network had dropped it).
  drop() {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    this.stopHeartbeat();
    try {
      socket.close(4000, "silent");
    } catch {
      // already closing
    }
    this.scheduleRetry(4000);
  }

  sendNow(message) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      try {
        socket.close(1000, "bye");
      } catch {
        // already closed
      }
    }
  }
}
