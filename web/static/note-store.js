// The browser's copy of the note text the server has not confirmed yet, so that no word
// is lost to a dropped network, a server restart, an expired session or a reload.
//
// One localStorage key per visit and user: `mendwell.note.<visit>.<user>`. Inside it,
// one copy per tab (`copies[tabId]`), so two tabs of the same person never overwrite
// each other's unsaved text; a tab clears only its own copy, once the server has it.
// A copy: { base, baseBody, content, sent, at, alive }
//   base      the note version the edits were made on
//   baseBody  the note as it was at that version (for a three-way merge after a reload)
//   content   the editor's whole content (incomplete medication rows included)
//   sent      the body of a save whose answer never came (it may have been stored)
//   at/alive  when the copy was last written / when its tab last said it is open

const TAB_KEY = "mendwell.tab";
const USER_KEY = "mendwell.note-user";
const PREFIX = "mendwell.note.";
// A tab that has not refreshed its copy for this long is closed (or crashed): its
// copy is an orphan that the next page for this visit restores.
export const ORPHAN_AFTER_MS = 15_000;

let fallbackTab = null;

function randomId() {
  if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// The id of this tab, kept across reloads of the tab (sessionStorage is per tab).
export function tabId() {
  try {
    let id = window.sessionStorage.getItem(TAB_KEY);
    if (!id) {
      id = randomId();
      window.sessionStorage.setItem(TAB_KEY, id);
    }
    return id;
  } catch {
    fallbackTab = fallbackTab || randomId();
    return fallbackTab;
  }
}

export function noteKey(visitId, userId) {
  return `${PREFIX}${visitId}.${userId}`;
}

// The user this tab last wrote a note as (the offline page has no server to ask).
export function rememberUser(userId) {
  try {
    window.sessionStorage.setItem(USER_KEY, String(userId));
  } catch {
    // the offline page then looks for any copy of this visit
  }
}

export function rememberedUser() {
  try {
    return window.sessionStorage.getItem(USER_KEY);
  } catch {
    return null;
  }
}

// The keys of every copy kept for a visit (any user), for the offline page.
export function keysForVisit(visitId) {
  const keys = [];
  try {
    for (let i = 0; i < window.localStorage.length; i += 1) {
      const key = window.localStorage.key(i);
      if (key && key.startsWith(`${PREFIX}${visitId}.`)) keys.push(key);
    }
  } catch {
    // no storage
  }
  return keys;
}

export class NoteStore {
  constructor(key) {
    this.key = key;
    this.tab = tabId();
    this.ok = true;
  }

  static forVisit(visitId, userId) {
    return new NoteStore(noteKey(visitId, userId));
  }

  readAll() {
    try {
      const raw = window.localStorage.getItem(this.key);
      const data = raw ? JSON.parse(raw) : null;
      if (data && typeof data === "object" && data.copies && typeof data.copies === "object") {
        return data;
      }
    } catch {
      // unreadable: start afresh (never throw while someone is typing)
    }
    return { v: 1, copies: {} };
  }

  writeAll(data) {
    try {
      if (Object.keys(data.copies).length === 0) window.localStorage.removeItem(this.key);
      else window.localStorage.setItem(this.key, JSON.stringify(data));
      this.ok = true;
    } catch {
      // Full or disabled storage: the caller tells the person, the text is still on
      // the page.
      this.ok = false;
    }
    return this.ok;
  }

  own() {
    return this.readAll().copies[this.tab] || null;
  }

  // Writes this tab's copy (merged over what it had); returns whether it was stored.
  write(copy) {
    const data = this.readAll();
    const now = Date.now();
    data.copies[this.tab] = { ...(data.copies[this.tab] || {}), ...copy, at: now, alive: now };
    return this.writeAll(data);
  }

  clear() {
    const data = this.readAll();
    if (!(this.tab in data.copies)) return;
    delete data.copies[this.tab];
    this.writeAll(data);
  }

  // This tab is still open: its copy is not an orphan.
  heartbeat() {
    const data = this.readAll();
    const copy = data.copies[this.tab];
    if (!copy) return;
    copy.alive = Date.now();
    this.writeAll(data);
  }

  // Takes over the newest copy left by a tab that is gone; returns it (or null).
  adoptOrphan() {
    const data = this.readAll();
    const now = Date.now();
    const orphans = Object.entries(data.copies)
      .filter(([tab, copy]) => tab !== this.tab && now - (copy.alive || copy.at || 0) > ORPHAN_AFTER_MS)
      .sort(([, a], [, b]) => (b.at || 0) - (a.at || 0));
    if (orphans.length === 0) return null;
    const [tab, copy] = orphans[0];
    delete data.copies[tab];
    data.copies[this.tab] = { ...copy, alive: now };
    this.writeAll(data);
    return data.copies[this.tab];
  }
}
