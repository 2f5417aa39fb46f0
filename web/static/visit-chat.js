// The chat of the call (docs/signaling.md, "Chat"): the messages of everyone in the room,
// a box to write in, and on a phone a "Chat" button with the count of what came in unread.
//
// A message is shown "Sending…" until the server relays it back (that is the receipt).
// One not yet back when the socket drops is kept (in sessionStorage, so a reload keeps it
// too) and sent again with the same client_id when the room takes us back: the server
// sends the chat so far on every admission, and stores a client_id once. Text is only
// ever put in the page as text, never as HTML.

const MAX_CHARACTERS = 2000;
const RETRY_MS = 2000;
const ROLE_LABELS = { patient: "Patient", prescriber: "Prescriber", coordinator: "Care coordinator",
  guest: "Guest" };
const REFUSALS = {
  text_empty: "Write a message first.",
  text_too_long: `A message holds at most ${MAX_CHARACTERS} characters.`,
  visit_ended: "The visit is over; the chat is closed.",
};

function newClientId() {
  return crypto.randomUUID().replaceAll("-", "");
}

// As the pages' `moment` (web/rendering.py): "13:30 EST" today, "Tue 8 Dec, 13:30 EST"
// on another day, with the year when it is not this one; in the reader's zone.
export function moment(date, zone, now = new Date()) {
  const format = (options, locale = "en-GB") =>
    new Intl.DateTimeFormat(locale, { timeZone: zone, ...options });
  const clock = format({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
  const zoneName = (format({ timeZoneName: "short" }, "en-US").formatToParts(date)
    .find((part) => part.type === "timeZoneName") || {}).value || zone;
  const ymd = format({ year: "numeric", month: "2-digit", day: "2-digit" }, "en-CA");
  if (ymd.format(date) === ymd.format(now)) return `${clock} ${zoneName}`;
  const sameYear = format({ year: "numeric" }).format(date) === format({ year: "numeric" }).format(now);
  const parts = Object.fromEntries(format({ weekday: "short", day: "numeric", month: "short",
    year: "numeric" }).formatToParts(date).map((part) => [part.type, part.value]));
  const day = `${parts.weekday} ${parts.day} ${parts.month}${sameYear ? "" : ` ${parts.year}`}`;
  return `${day}, ${clock} ${zoneName}`;
}

class VisitChat {
  constructor(section, signaling) {
    this.section = section;
    this.signaling = signaling;
    this.zone = section.dataset.tz || "UTC";
    this.storageKey = `mendwell.chat.pending.${section.dataset.visitId}`;
    this.admitted = false;
    this.unread = 0;
    this.confirmed = new Map();   // id -> message
    this.pending = new Map();     // client_id -> {client_id, text, failed}
    this.items = new Map();       // "id:<id>" or "client:<client_id>" -> <li>
    this.retryTimer = null;
    const $ = (id) => document.getElementById(id);
    this.el = {
      toggle: $("chat-toggle"), unread: $("chat-unread"), body: $("chat-body"),
      list: $("chat-messages"), empty: $("chat-empty"), announcer: $("chat-announcer"),
      form: $("chat-form"), input: $("chat-input"), send: $("chat-send"), note: $("chat-note"),
      error: $("chat-error"),
    };
    this.restorePending();
    this.wire();
    this.render();
  }

  wire() {
    const { el, signaling } = this;
    signaling.addEventListener("welcome", (event) => this.setAdmitted(event.detail.state === "admitted"));
    signaling.addEventListener("admitted", () => this.setAdmitted(true));
    signaling.addEventListener("removed", () => this.setAdmitted(false));
    signaling.addEventListener("ended", () => this.close());
    signaling.addEventListener("connection", (event) => {
      if (event.detail.status === "closed") this.close();
    });
    signaling.addEventListener("chat", (event) => this.onChat(event.detail));
    signaling.addEventListener("chat-history", (event) => this.onHistory(event.detail));
    signaling.addEventListener("error", (event) => this.onError(event.detail));
    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    el.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    el.toggle.addEventListener("click", () => this.setOpen(!this.section.classList.contains("open")));
  }

  // --- sending ---------------------------------------------------------------------

  submit() {
    const text = this.el.input.value.trim();
    this.el.error.hidden = true;
    if (!this.admitted || !text) return;
    if (text.length > MAX_CHARACTERS) {
      this.showError(REFUSALS.text_too_long);
      return;
    }
    const message = { client_id: newClientId(), text, failed: null };
    this.pending.set(message.client_id, message);
    this.savePending();
    this.el.input.value = "";
    this.transmit(message);
    this.render();
  }

  transmit(message) {
    // While the socket is away the message waits here, not in the socket's queue: it is
    // sent again, once, when the room takes us back.
    if (!this.admitted || !this.signaling.isUp) return;
    this.signaling.send({ type: "chat", client_id: message.client_id, text: message.text });
  }

  resendPending() {
    for (const message of this.pending.values()) {
      if (!message.failed) this.transmit(message);
    }
  }

  // --- receiving -------------------------------------------------------------------

  onChat(message) {
    const known = this.confirmed.has(message.id);
    this.confirm(message);
    if (known) return;
    this.render();
    if (!message.mine) {
      this.el.announcer.textContent = `${message.from.name} wrote: ${message.text}`;
      if (!this.isShown()) {
        this.unread += 1;
        this.renderUnread();
      }
    }
  }

  onHistory(detail) {
    for (const message of detail.messages || []) this.confirm(message);
    this.render();
    // The room has taken us (back) in: whatever it has not got yet goes again.
    this.resendPending();
  }

  confirm(message) {
    this.confirmed.set(message.id, message);
    if (this.pending.delete(message.client_id)) {
      this.items.delete(`client:${message.client_id}`);
      this.savePending();
    }
  }

  onError(error) {
    if (!error.client_id) return;
    const message = this.pending.get(error.client_id);
    if (!message) return;
    if (error.code === "rate_limited" || error.code === "not_admitted") {
      // Sent again later: after a pause, or when let in.
      clearTimeout(this.retryTimer);
      if (error.code === "rate_limited") {
        this.retryTimer = setTimeout(() => this.resendPending(), RETRY_MS);
      }
      return;
    }
    message.failed = REFUSALS[error.code] || error.message || "It could not be sent.";
    this.items.delete(`client:${message.client_id}`);
    this.pending.delete(message.client_id);
    this.savePending();
    this.showError(`Not sent: ${message.failed}`);
    if (!this.el.input.value) this.el.input.value = message.text;
    this.render();
  }

  setAdmitted(admitted) {
    this.admitted = admitted;
    this.render();
  }

  close() {
    this.admitted = false;
    this.closed = true;
    this.render();
  }

  // --- the panel on a phone ------------------------------------------------------------

  isShown() {
    return this.el.body.offsetParent !== null && document.visibilityState !== "hidden";
  }

  setOpen(open) {
    this.section.classList.toggle("open", open);
    this.el.toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      this.unread = 0;
      this.renderUnread();
      this.scrollToEnd();
      if (!this.el.input.disabled) this.el.input.focus();
    }
  }

  renderUnread() {
    const { unread } = this.el;
    unread.hidden = this.unread === 0;
    unread.textContent = this.unread === 0 ? "" : String(this.unread);
    this.el.toggle.setAttribute("aria-label",
      this.unread === 0 ? "Chat" : `Chat, ${this.unread} unread`);
  }

  // --- rendering -------------------------------------------------------------------------

  render() {
    const { el } = this;
    const ordered = [...this.confirmed.values()].sort((a, b) =>
      (a.sent_at < b.sent_at ? -1 : a.sent_at > b.sent_at ? 1 : a.id - b.id));
    const nodes = ordered.map((m) => this.item(`id:${m.id}`, m, null));
    for (const m of this.pending.values()) nodes.push(this.item(`client:${m.client_id}`, m, "Sending…"));
    const atEnd = el.list.scrollHeight - el.list.scrollTop - el.list.clientHeight < 40;
    el.list.replaceChildren(...nodes);
    el.empty.hidden = nodes.length > 0;
    if (atEnd) this.scrollToEnd();
    const open = this.admitted && !this.closed;
    el.input.disabled = !open;
    el.send.disabled = !open;
    el.note.hidden = open || this.closed;
    if (this.closed) el.input.placeholder = "The chat is closed.";
  }

  item(key, message, status) {
    let li = this.items.get(key);
    if (li) return li;
    li = document.createElement("li");
    const mine = status !== null || message.mine;
    li.className = `chat-message ${mine ? "mine" : "theirs"}${status ? " pending" : ""}`;
    li.dataset.testid = "chat-message";
    li.dataset.clientId = message.client_id;
    const meta = document.createElement("p");
    meta.className = "chat-meta";
    const name = document.createElement("span");
    name.className = "chat-name";
    name.textContent = mine ? "You" : message.from.name;
    meta.append(name);
    if (!mine) {
      const role = document.createElement("span");
      role.className = "chat-role";
      role.textContent = ` (${ROLE_LABELS[message.from.role] || message.from.role})`;
      meta.append(role);
    }
    meta.append(" ");
    if (status) {
      const state = document.createElement("span");
      state.className = "chat-status";
      state.textContent = status;
      meta.append(state);
    } else {
      const time = document.createElement("time");
      time.dateTime = message.sent_at;
      time.textContent = moment(new Date(message.sent_at), this.zone);
      meta.append(time);
    }
    const text = document.createElement("p");
    text.className = "chat-text";
    text.dir = "auto";
    text.textContent = message.text;
    li.append(meta, text);
    this.items.set(key, li);
    return li;
  }

  scrollToEnd() {
    this.el.list.scrollTop = this.el.list.scrollHeight;
  }

  showError(text) {
    this.el.error.textContent = text;
    this.el.error.hidden = false;
  }

  // --- what is not sent yet survives a reload ----------------------------------------------

  savePending() {
    try {
      const kept = [...this.pending.values()].map(({ client_id, text }) => ({ client_id, text }));
      if (kept.length) window.sessionStorage.setItem(this.storageKey, JSON.stringify(kept));
      else window.sessionStorage.removeItem(this.storageKey);
    } catch {
      // no storage: kept for this page's life only
    }
  }

  restorePending() {
    try {
      const kept = JSON.parse(window.sessionStorage.getItem(this.storageKey) || "[]");
      for (const { client_id: clientId, text } of kept) {
        if (typeof clientId === "string" && typeof text === "string") {
          this.pending.set(clientId, { client_id: clientId, text, failed: null });
        }
      }
    } catch {
      // nothing usable kept
    }
  }
}

export function mountVisitChat(signaling) {
  const section = document.getElementById("visit-chat");
  return section ? new VisitChat(section, signaling) : null;
}
