// The offline page (offline-worker.js serves it for /visits/<id> when the server cannot
// be reached): the note text this browser keeps for the visit, editable, still kept in
// this browser on every keystroke; back to the visit room as soon as the server
// answers, where the text is restored and saved (note-autosave.js, restore()).

import { NoteStore, keysForVisit, rememberedUser } from "./note-store.js";
import { SECTIONS, SECTION_LABELS, normalizeRow, rowText } from "./note-editor.js";

const POLL_MS = 2000;
const match = /^\/visits\/(\d+)$/.exec(window.location.pathname);
const visitId = match ? match[1] : null;
const form = document.getElementById("offline-form");
const status = document.getElementById("offline-status");

function findCopy() {
  if (!visitId) return null;
  const user = rememberedUser();
  const stores = user ? [NoteStore.forVisit(visitId, user)] : [];
  for (const key of keysForVisit(visitId)) {
    if (!stores.some((store) => store.key === key)) stores.push(new NoteStore(key));
  }
  for (const store of stores) {
    const copy = store.own() || store.adoptOrphan();
    if (copy && copy.content) return { store, copy };
  }
  return null;
}

function show(found) {
  if (!found) {
    document.getElementById("offline-empty").hidden = false;
    return;
  }
  const { store, copy } = found;
  const content = copy.content;
  for (const key of SECTIONS) {
    const wrap = document.createElement("div");
    wrap.className = "note-field";
    const label = document.createElement("label");
    label.htmlFor = `offline-${key}`;
    label.textContent = SECTION_LABELS[key];
    const area = document.createElement("textarea");
    area.id = `offline-${key}`;
    area.dataset.section = key;
    area.rows = 3;
    area.maxLength = 20000;
    area.value = (content.sections || {})[key] || "";
    area.addEventListener("input", () => {
      content.sections = { ...(content.sections || {}), [key]: area.value };
      store.write({ content });
    });
    wrap.append(label, area);
    form.append(wrap);
  }
  const rows = (content.medication_changes || []).map(normalizeRow).filter(Boolean);
  if (rows.length) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "Medication changes (kept; editable again when the server is back): " +
      rows.map(rowText).join("; ");
    form.append(note);
  }
  setInterval(() => store.heartbeat(), 5000);
}

async function poll() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    // Any answer from the app itself will do (a proxy answers 502-504 for a stopped one).
    if (response.status < 502 || response.status > 504) {
      status.textContent = "The server is back: going back to the visit…";
      window.location.reload();
      return;
    }
  } catch {
    // still down
  }
  status.textContent = `Not reachable. Trying again every ${POLL_MS / 1000} seconds.`;
  setTimeout(poll, POLL_MS);
}

show(findCopy());
poll();
