// Autosave that never loses a word.
//
// - Every change is written to this browser at once (note-store.js), before anything
//   is sent: a crash, a reload or a dead server between keystroke and save loses
//   nothing.
// - A save goes ~400 ms after typing stops, when focus leaves the note and when the
//   page is hidden. One save at a time; each sends the `version` it was based on.
// - The server refuses a stale version (409 version_conflict, with the current note):
//   the panel shows both texts and the prescriber merges (note-merge.js). A conflict
//   that is only our own earlier save, whose answer was lost, is recognised as such.
// - Unreachable server, 5xx or an expired session: the text stays in the browser, the
//   state reads `offline` and saving is retried with backoff; after a reload the copy
//   is put back into the editor and saved.
// - The local copy is cleared only once the server holds exactly what the editor holds.
//
// State (data-testid="note-save-state"): saved | saving | offline | conflict.

import { bodyOf, hasDraftRows, normalize, sameBody } from "./note-editor.js";

const DEBOUNCE_MS = 400;
const RETRY_MS = [1000, 2000, 4000, 8000];
const HEARTBEAT_MS = 5000;
const SESSION_TOUCH_MS = 60_000;
// Browsers refuse keepalive requests over 64 KiB.
const KEEPALIVE_LIMIT = 60_000;

export function csrfToken() {
  return document.body.dataset.csrf || "";
}

// `background`: the page refreshing itself, which is not the person being active (the
// idle logoff must still come to a screen left open; server/middleware.py).
async function request(method, url, body, { keepalive = false, background = false } = {}) {
  let response;
  const headers = { "Content-Type": "application/json", Accept: "application/json",
    "X-CSRF-Token": csrfToken() };
  if (background) headers["X-Mendwell-Background"] = "1";
  try {
    response = await fetch(url, {
      method, credentials: "same-origin", keepalive, cache: "no-store", headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, data: null, error: {} };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data,
    error: (data && data.error) || {}, retryAfter: Number(response.headers.get("Retry-After")) };
}

export { request };

// A fresh CSRF token after the person signed in again (in another tab): the session
// is new, so the token this page was rendered with is refused.
async function refreshSession() {
  const result = await request("GET", "/api/v1/session", undefined, { background: true });
  if (result.ok && result.data && result.data.csrf_token) {
    document.body.dataset.csrf = result.data.csrf_token;
    window.dispatchEvent(new CustomEvent("mendwell:session-active", {
      detail: { idleExpiresAt: result.data.idle_expires_at } }));
  }
  return result;
}

// Events: "state" (detail: {state}), "message" (detail: {text, kind}), "saved"
// (detail: {note}), "conflict" (detail: {base, mine, theirs, note}), "signed"
// (detail: {note, unsaved}), "refused" (detail: {field, message}), "signed-in" (a
// save went through again after the session had ended).
export class NoteAutosave extends EventTarget {
  constructor({ visitId, note, editor, store, canWrite }) {
    super();
    this.url = `/api/v1/visits/${visitId}/note`;
    this.editor = editor;
    this.store = store;
    this.canWrite = canWrite;
    this.signed = note.status === "signed";
    this.adopt(note);
    this.state = "saved";
    this.offline = false;
    this.signedOut = false;
    this.conflict = null;
    this.inflight = null;
    this.lostSends = [];
    this.timer = null;
    this.retryTimer = null;
    this.attempt = 0;
    this.lastTouch = 0;

    if (!canWrite || this.signed) return;
    editor.addEventListener("input", () => this.edited());
    editor.addEventListener("leave", () => this.saveSoon(0));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.save({ keepalive: true });
      else if (this.offline) this.retryNow();
    });
    window.addEventListener("online", () => this.retryNow());
    setInterval(() => this.store.heartbeat(), HEARTBEAT_MS);
  }

  // The server's note becomes what our edits are based on.
  adopt(note) {
    this.note = note;
    this.base = { version: note.version, body: bodyOf(note) };
    this.editor.setFollowUpDefault(note.follow_up_default);
  }

  get dirty() {
    return !sameBody(normalize(this.editor.content()), this.base.body);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  message(text, kind = "warning") {
    this.emit("message", { text, kind });
  }

  // Keeps what the editor holds in this browser, with what it is based on.
  keepLocal(extra = {}) {
    const stored = this.store.write({ base: this.base.version, baseBody: this.base.body,
      content: this.editor.content(), ...extra });
    if (!stored) {
      this.message("This browser cannot keep a copy of the note (storage is full or " +
        "blocked). Do not close the page until the note reads saved.");
    }
  }

  edited() {
    if (this.signed) return;
    this.keepLocal();
    if (this.conflict) return; // the merge decides; the copy keeps every word meanwhile
    if (this.offline) return; // the retry timer sends it; the state stays `offline`
    this.setState("saving");
    this.saveSoon(DEBOUNCE_MS);
  }

  saveSoon(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.save(), delay);
  }

  retryNow() {
    if (!this.offline) return;
    clearTimeout(this.retryTimer);
    this.save();
  }

  scheduleRetry(afterMs) {
    clearTimeout(this.retryTimer);
    const base = afterMs || RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.retryTimer = setTimeout(() => this.save(), delay);
  }

  // Resolves once nothing is being sent and the server holds the editor's content
  // (true), or it cannot now (false: offline, conflict, refused).
  async flush() {
    clearTimeout(this.timer);
    for (let round = 0; round < 5; round += 1) {
      if (this.inflight) await this.inflight.done;
      if (this.conflict || this.signed) return false;
      if (!this.dirty) return true;
      const sent = await this.save();
      if (!sent) return false;
    }
    return !this.dirty;
  }

  async save({ keepalive = false } = {}) {
    clearTimeout(this.timer);
    if (!this.canWrite || this.signed || this.conflict) return false;
    if (this.inflight) {
      this.again = true;
      return this.inflight.done;
    }
    const content = this.editor.content();
    const body = normalize(content);
    if (sameBody(body, this.base.body)) {
      // Nothing to send: the server already holds exactly this.
      this.clearLocal();
      if (this.offline) this.backOnline({ quiet: true });
      this.setState("saved");
      return true;
    }
    const version = this.base.version;
    this.keepLocal({ sent: body });
    if (!this.offline) this.setState("saving");
    let finish;
    this.inflight = { body, version, done: new Promise((resolve) => { finish = resolve; }) };
    const payload = { version, ...body };
    const bytes = JSON.stringify(payload).length;
    const result = await request("PUT", this.url, payload,
      { keepalive: keepalive && bytes < KEEPALIVE_LIMIT });
    this.inflight = null;
    const outcome = await this.handle(result, body);
    finish(outcome);
    if (this.again && !this.offline && !this.conflict && !this.signed) {
      this.again = false;
      if (this.dirty) this.saveSoon(0);
    }
    return outcome;
  }

  async handle(result, sentBody) {
    const { status, error } = result;
    if (!(status === 403 && error.code === "csrf_failed")) this.csrfRetried = false;
    if (result.ok) {
      this.lostSends = [];
      this.adopt(result.data);
      this.afterSaved();
      this.emit("saved", { note: result.data });
      this.touchSession();
      return true;
    }
    if (status === 0 || status >= 500 || status === 429) {
      // Unknown outcome: the server may have stored it before the line went dead.
      this.lostSends.push(sentBody);
      this.goOffline("Mendwell is not reachable. Your note is kept in this browser and " +
        "will be saved as soon as the server answers. Keep writing.",
        status === 429 ? result.retryAfter * 1000 : 0);
      return false;
    }
    if (status === 401) {
      this.signedOut = true;
      this.goOffline("You are signed out, so the note cannot be saved. Sign in again in " +
        "another tab: everything you write here is kept in this browser and saved once " +
        "you are signed in.");
      return false;
    }
    if (status === 403 && error.code === "csrf_failed" && !this.csrfRetried) {
      this.csrfRetried = true;
      const session = await refreshSession();
      if (session.status === 401) return this.handle({ ...result, status: 401 }, sentBody);
      if (!session.ok) {
        this.lostSends.push(sentBody);
        this.goOffline("Mendwell is not reachable. Your note is kept in this browser.");
        return false;
      }
      return this.save();
    }
    if (status === 409 && error.code === "version_conflict" && error.current) {
      return this.onConflict(error.current);
    }
    if (status === 409 && error.code === "note_signed") {
      await this.signedElsewhere();
      return false;
    }
    // 403, 413, 422: the server refuses this content; nothing to retry until it changes.
    this.setState(this.offline ? "offline" : "saving");
    this.emit("refused", { field: error.field, message: error.message ||
      `The note could not be saved (${status}).` });
    return false;
  }

  afterSaved() {
    if (this.offline) this.backOnline();
    if (this.dirty) {
      // Typed while the save was on its way: keep that on the new version, send it next.
      this.keepLocal({ sent: null });
      this.setState("saving");
      this.saveSoon(DEBOUNCE_MS);
    } else {
      this.clearLocal();
      this.setState("saved");
    }
  }

  // The server holds what the editor holds: the browser's copy can go (unless a
  // medication row is half typed: that is not sent until it names a drug).
  clearLocal() {
    if (hasDraftRows(this.editor.content())) this.keepLocal({ sent: null });
    else this.store.clear();
  }

  goOffline(text, retryAfterMs = 0) {
    const first = !this.offline;
    this.offline = true;
    this.setState("offline");
    if (first || this.signedOut) this.message(text, "offline");
    this.scheduleRetry(retryAfterMs);
  }

  backOnline({ quiet = false } = {}) {
    const wasSignedOut = this.signedOut;
    this.offline = false;
    this.signedOut = false;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    if (wasSignedOut) this.emit("signed-in", {});
    if (quiet) this.message("", "ok");
    else {
      this.message(wasSignedOut ? "Signed in again: your note is saved." :
        "Mendwell is back: everything you wrote is saved.", "ok");
    }
  }

  // 409 version_conflict: the server has a newer version than ours.
  async onConflict(current) {
    const theirs = bodyOf(current);
    const mine = normalize(this.editor.content());
    const ours = this.lostSends.some((sent) => sameBody(sent, theirs));
    if (ours || sameBody(theirs, mine)) {
      // Our own earlier save landed (its answer was lost), or the server already holds
      // exactly our text: carry on from that version.
      this.lostSends = [];
      this.adopt(current);
      if (this.offline) this.backOnline();
      if (this.dirty) return this.save();
      this.clearLocal();
      this.setState("saved");
      return true;
    }
    this.enterConflict(current, this.base.body);
    return false;
  }

  enterConflict(current, baseBody) {
    if (this.offline) {
      this.offline = false;
      this.signedOut = false;
      clearTimeout(this.retryTimer);
    }
    this.conflict = { current, baseBody };
    this.keepLocal();
    this.setState("conflict");
    this.emit("conflict", { base: baseBody, mine: normalize(this.editor.content()),
      theirs: bodyOf(current), note: current });
  }

  // The merge is done: the editor holds the merged note, based on the current version.
  resolveConflict() {
    if (!this.conflict) return;
    this.adopt(this.conflict.current);
    this.conflict = null;
    this.lostSends = [];
    this.keepLocal();
    this.setState("saving");
    this.save();
  }

  // The note was signed (here, in another tab, or by another prescriber).
  async signedElsewhere(note = null) {
    let signedNote = note;
    if (!signedNote) {
      const result = await request("GET", this.url, undefined, { background: true });
      if (!result.ok) return;
      signedNote = result.data;
    }
    if (signedNote.status !== "signed") return;
    const mine = normalize(this.editor.content());
    const unsaved = !sameBody(mine, bodyOf(signedNote));
    this.signed = true;
    this.conflict = null;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    this.offline = false;
    this.adopt(signedNote);
    if (!unsaved) this.store.clear();
    this.setState("saved");
    this.emit("signed", { note: signedNote, unsaved: unsaved ? mine : null });
  }

  // Another tab or person saved a newer version while this one has nothing unsaved:
  // show it (a tab with unsaved edits gets the conflict on its next save instead).
  async remoteSaved(version) {
    if (!this.canWrite) {
      await this.reload();
      return;
    }
    if (version <= this.base.version || this.inflight || this.conflict || this.signed ||
        this.dirty) return;
    const result = await request("GET", this.url, undefined, { background: true });
    if (!result.ok || this.inflight || this.conflict || this.dirty) return;
    if (result.data.status === "signed") {
      await this.signedElsewhere(result.data);
      return;
    }
    if (result.data.version <= this.base.version) return;
    this.adopt(result.data);
    this.editor.setContent(result.data);
    this.emit("saved", { note: result.data });
  }

  // Read-only viewers (coordinators) follow the saved note.
  async reload() {
    const result = await request("GET", this.url, undefined, { background: true });
    if (!result.ok) return;
    this.adopt(result.data);
    this.editor.setContent(result.data);
    if (result.data.status === "signed" && !this.signed) {
      this.signed = true;
      this.emit("signed", { note: result.data, unsaved: null });
    }
    this.emit("saved", { note: result.data });
  }

  // After a reload: put back what this browser kept and was not saved.
  restore() {
    if (!this.canWrite) return;
    const copy = this.store.own() || this.store.adoptOrphan();
    if (!copy || !copy.content) return;
    const local = normalize(copy.content);
    if (sameBody(local, this.base.body)) {
      if (hasDraftRows(copy.content) && !this.signed) this.editor.setContent(copy.content);
      else this.store.clear();
      return;
    }
    if (this.signed) {
      this.emit("signed", { note: this.note, unsaved: local });
      return;
    }
    this.editor.setContent(copy.content);
    this.message("Your unsaved text was restored from this browser; saving it now.", "ok");
    const serverVersion = this.base.version;
    if (copy.base === serverVersion || copy.base > serverVersion ||
        (copy.sent && sameBody(copy.sent, this.base.body))) {
      // Made on this version (or ours was the save that made it): save on top of it.
      this.keepLocal();
      this.setState("saving");
      this.save();
      return;
    }
    // Someone saved since this copy was made: merge.
    this.enterConflict(this.note, copy.baseBody || null);
  }

  touchSession() {
    const now = Date.now();
    if (now - this.lastTouch < SESSION_TOUCH_MS) return;
    this.lastTouch = now;
    refreshSession();
  }
}
