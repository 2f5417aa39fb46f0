// The note panel beside the video (web/templates/_note_panel.html).
//
// It runs on its own: plain fetches and the live-events socket, nothing of the video
// call's signaling, so it keeps working while the call reconnects (and after the visit
// has ended, when the note is often finished). What it does:
// - saves the note as it is typed, never losing a word (note-autosave.js), with merges
//   after a conflict (note-merge.js);
// - signs it, adds addenda, schedules the next visit;
// - keeps the safety part (emergency mode, escalations, reasons) and the medication list
//   current by fetching them again (`?part=`) when an event says they changed;
// - raises escalations by hand; alerts the coordinator when the call drops during an
//   emergency (the `mendwell:patient-call` event from visit-room.js);
// - lets the panel be resized (panel-resize.js) and registers the offline page
//   (offline-worker.js) that keeps the note writable across a reload while the
//   server is down.

import { connectEvents } from "./escalation-alerts.js";
import { formBody, handleForm } from "./escalation-api.js";
import { NoteAutosave, request } from "./note-autosave.js";
import { NoteEditor, SECTION_LABELS, SECTIONS, bodyOf } from "./note-editor.js";
import { MergeView } from "./note-merge.js";
import { NoteStore, rememberUser } from "./note-store.js";
import { setUpResize } from "./panel-resize.js";

const OK_MESSAGE_MS = 6000;
const ALERT_RETRY_MS = [1000, 2000, 4000, 8000];

const $ = (id) => document.getElementById(id);

// The note as the server rendered it (`data-note`, the JSON of GET .../note).
function readNote(root) {
  try {
    return JSON.parse(root.dataset.note);
  } catch {
    return null;
  }
}

function formatWhen(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  return at.toLocaleString([], { weekday: "short", day: "numeric", month: "short",
    hour: "2-digit", minute: "2-digit" });
}

class NotePanel {
  constructor(root, note) {
    this.root = root;
    this.visitId = root.dataset.visitId;
    this.patientId = Number(root.dataset.patientId);
    this.userId = root.dataset.userId;
    this.canWrite = root.dataset.canWrite === "1";
    this.url = `/api/v1/visits/${this.visitId}/note`;
    this.el = {
      state: $("note-save-state"), message: $("note-message"), announcer: $("note-announcer"),
      conflict: $("note-conflict"), signedLine: $("note-signed-line"), sign: $("note-sign"),
      nextVisit: $("next-visit"), result: $("note-action-result"), addenda: $("addenda"),
      addendaList: $("addenda-list"), addendaEmpty: $("addenda-empty"),
      addendumForm: $("addendum-form"), addendumText: $("addendum-text"),
      addendumError: $("addendum-error"), live: $("panel-live"), callDrop: $("call-drop-alert"),
    };
    this.editor = new NoteEditor($("note-editor"));
    this.store = NoteStore.forVisit(this.visitId, this.userId);
    if (this.canWrite) rememberUser(this.userId);
    this.autosave = new NoteAutosave({ visitId: this.visitId, note, editor: this.editor,
      store: this.store, canWrite: this.canWrite });
    this.merge = new MergeView(this.el.conflict, { onSave: (merged) => this.saveMerged(merged) });
    this.okTimer = null;
    this.loading = new Map();
    this.callDrop = { reported: false, escalationId: null };
    if (!this.canWrite) this.editor.setReadOnly(true);
    this.wire();
    this.showState(this.autosave.state);
    if (note.status === "signed") this.showSigned(note, null);
    this.autosave.restore();
  }

  wire() {
    const { autosave, el } = this;
    autosave.addEventListener("state", (event) => this.showState(event.detail.state));
    autosave.addEventListener("message", (event) => this.say(event.detail.text, event.detail.kind));
    autosave.addEventListener("conflict", (event) => this.onConflict(event.detail));
    autosave.addEventListener("signed", (event) => this.showSigned(event.detail.note,
      event.detail.unsaved));
    // The events socket gives up when the session ends; signed in again, it comes back.
    autosave.addEventListener("signed-in", () => {
      if (this.live && this.live.stopped) this.live.start();
    });
    autosave.addEventListener("refused", (event) => {
      this.editor.clearErrors();
      const { field, message } = event.detail;
      this.editor.markField(field, message);
      this.say(`Not saved: ${message} Your text is kept in this browser.`, "warning");
    });
    if (el.sign) el.sign.addEventListener("click", () => this.sign());
    if (el.nextVisit) el.nextVisit.addEventListener("click", () => this.scheduleNext());
    if (el.addendumForm) {
      el.addendumForm.addEventListener("submit", (event) => {
        event.preventDefault();
        this.addAddendum();
      });
    }
    setUpResize($("panel-handle"));
    this.setUpRaise();
    this.connectLive();
    window.addEventListener("mendwell:patient-call", (event) => this.onPatientCall(event.detail));
    if (this.canWrite && "serviceWorker" in navigator) {
      navigator.serviceWorker.register("/visits/offline-worker.js", { scope: "/visits/" })
        .catch(() => {}); // no offline page: the copy in this browser still keeps every word
    }
  }

  // --- what the person sees ---------------------------------------------------------

  showState(state) {
    const pill = this.el.state;
    if (pill.textContent !== state) pill.textContent = state;
    pill.dataset.state = state;
    if (state === "conflict") this.announce("Conflict: this note was saved elsewhere. Merge below.");
  }

  say(text, kind = "warning") {
    const box = this.el.message;
    clearTimeout(this.okTimer);
    if (!text) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.textContent = text;
    box.dataset.kind = kind;
    box.hidden = false;
    if (kind === "ok") this.okTimer = setTimeout(() => { box.hidden = true; }, OK_MESSAGE_MS);
  }

  announce(text) {
    this.el.announcer.textContent = "";
    setTimeout(() => { this.el.announcer.textContent = text; }, 50);
  }

  // --- conflicts ----------------------------------------------------------------------

  onConflict({ base, mine, theirs, note }) {
    const merged = this.merge.show({ base, mine, theirs, note });
    if (merged) {
      // Different parts changed on each side: both kept, nothing to decide.
      this.editor.setContent(merged);
      const names = merged.taken.map((key) => SECTION_LABELS[key]).join(", ");
      this.say(names ? `${note.updated_by ? note.updated_by.name : "Someone"} also changed ` +
        `${names}: their text is in the note now, and yours is kept.` : "", "ok");
      this.autosave.resolveConflict();
      return;
    }
    this.editor.lock([...this.el.conflict.querySelectorAll("[data-merge]")]
      .map((area) => area.dataset.merge));
    this.say("This note was saved elsewhere (another tab or person) while you were " +
      "writing. Both versions are shown below: merge them and save. Nothing is lost " +
      "meanwhile.", "warning");
  }

  saveMerged(merged) {
    this.editor.lock([]);
    this.editor.setContent(merged);
    this.merge.hide();
    this.say("", "ok");
    this.autosave.resolveConflict();
    this.announce("Saving the merged note.");
  }

  // --- signing, addenda, next visit ---------------------------------------------------

  async sign() {
    const { el, autosave } = this;
    this.editor.clearErrors();
    if (autosave.conflict) {
      this.say("Merge the two versions of the note first, then sign.", "warning");
      return;
    }
    el.sign.disabled = true;
    const idle = el.sign.textContent;
    el.sign.textContent = "Saving…";
    const done = () => {
      el.sign.disabled = false;
      el.sign.textContent = idle;
    };
    if (!(await autosave.flush())) {
      done();
      this.say(autosave.offline
        ? "Cannot sign while Mendwell is not reachable. Your note is kept in this browser; " +
          "sign once it reads saved."
        : "The note is not saved yet, so it cannot be signed. Check the message above.",
      "warning");
      return;
    }
    // eslint-disable-next-line no-alert
    if (!window.confirm("Sign and lock this note? Its medication changes update the " +
        "patient's medication list; later additions are addenda.")) {
      done();
      return;
    }
    if (!(await autosave.flush())) {
      done();
      return;
    }
    el.sign.textContent = "Signing…";
    const result = await request("POST", `${this.url}/sign`);
    done();
    if (result.ok) {
      await autosave.signedElsewhere(result.data);
      this.refreshPart("medications");
      this.say("Signed. The medication list is updated.", "ok");
      return;
    }
    const { error, status } = result;
    if (status === 409 && error.code === "safety_assessment_required") {
      const missing = error.missing || [];
      missing.slice().reverse().forEach((key) => this.editor.markField(`sections.${key}`));
      const names = missing.map((key) => SECTION_LABELS[key].toLowerCase()).join(", ");
      this.say(`A safety assessment is required before signing: the check-in had a reason ` +
        `to review. Fill in ${names}.`, "warning");
      return;
    }
    if (status === 409 && error.code === "note_signed") {
      await autosave.signedElsewhere();
      return;
    }
    if (status === 422) {
      this.editor.markField(error.field, error.message);
      this.say(`Not signed: ${error.message}`, "warning");
      return;
    }
    this.say(this.failure(result, "Not signed"), "warning");
  }

  failure(result, what) {
    if (result.status === 0) return `${what}: Mendwell is not reachable. Try again.`;
    if (result.status === 401) return `${what}: you are signed out. Sign in again in another tab.`;
    return `${what}: ${result.error.message || `the server answered ${result.status}`}`;
  }

  showSigned(note, unsaved) {
    const { el } = this;
    this.editor.setContent(note);
    this.editor.lock([]);
    this.editor.setReadOnly(true);
    this.merge.hide();
    $("note-editor").dataset.status = "signed";
    if (el.sign) el.sign.hidden = true;
    const by = note.signed_by ? note.signed_by.name : "the prescriber";
    el.signedLine.textContent = `Signed by ${by} on ${formatWhen(note.signed_at)}. The note ` +
      "is locked; add an addendum for anything new.";
    el.signedLine.hidden = false;
    el.addenda.hidden = false;
    this.showState("saved");
    if (unsaved && this.canWrite) {
      // Words typed that the signed note does not have: offer them as an addendum.
      const signedBody = bodyOf(note);
      const lines = SECTIONS.filter((key) => unsaved.sections[key] !== signedBody.sections[key])
        .map((key) => `${SECTION_LABELS[key]}: ${unsaved.sections[key]}`);
      if (lines.length && el.addendumText) {
        el.addendumText.value = lines.join("\n\n");
        this.pendingUnsaved = true;
        this.say("The note was signed without some of what you wrote. It is in the addendum " +
          "box below: add it as an addendum (or edit it first).", "warning");
      } else {
        this.store.clear();
      }
    }
  }

  async addAddendum() {
    const { el } = this;
    const text = el.addendumText.value.trim();
    el.addendumError.hidden = true;
    if (!text) {
      el.addendumError.textContent = "Write the addendum.";
      el.addendumError.hidden = false;
      el.addendumText.focus();
      return;
    }
    const button = el.addendumForm.querySelector('[type="submit"]');
    button.disabled = true;
    const result = await request("POST", `${this.url}/addenda`, { text });
    button.disabled = false;
    if (!result.ok) {
      el.addendumError.textContent = this.failure(result, "Not added");
      el.addendumError.hidden = false;
      return;
    }
    const item = document.createElement("li");
    const meta = document.createElement("p");
    meta.className = "addendum-meta";
    meta.textContent = `${result.data.author.name}, ${formatWhen(result.data.at)}`;
    const body = document.createElement("p");
    body.className = "addendum-text";
    body.textContent = result.data.text;
    item.append(meta, body);
    el.addendaList.append(item);
    el.addendaEmpty.hidden = true;
    el.addendumText.value = "";
    if (this.pendingUnsaved) {
      this.pendingUnsaved = false;
      this.store.clear();
    }
    this.say("Addendum added.", "ok");
  }

  async scheduleNext() {
    const { el } = this;
    const input = $("follow-up-days");
    const days = Number(input && input.value);
    const body = Number.isInteger(days) && days >= 1 && days <= 365 ? { days } : {};
    el.nextVisit.disabled = true;
    const result = await request("POST", `/api/v1/visits/${this.visitId}/next-visit`, body);
    if (!result.ok) {
      el.nextVisit.disabled = false;
      el.result.textContent = this.failure(result, "Not scheduled");
      return;
    }
    el.nextVisit.textContent = "Next visit scheduled";
    el.result.textContent = `Next visit booked for ${formatWhen(result.data.scheduled_at)} ` +
      `(in ${result.data.days} days). The invitation email is on its way.`;
  }

  // --- live parts -----------------------------------------------------------------------

  connectLive() {
    this.live = connectEvents({
      statusElement: this.el.live,
      onSubscribed: () => {
        // Whatever changed while the socket was down came without an event.
        this.refreshPart("safety");
        this.autosave.remoteSaved(Number.MAX_SAFE_INTEGER);
      },
      onMessage: (message) => this.onEvent(message),
    });
  }

  onEvent(message) {
    const type = message.type || "";
    const forVisit = String(message.visit_id) === String(this.visitId);
    if (forVisit && type === "note.saved") this.autosave.remoteSaved(Number(message.version));
    if (forVisit && type === "note.signed") {
      if (this.canWrite) this.autosave.signedElsewhere();
      else this.autosave.reload();
      this.refreshPart("medications");
    }
    if (message.patient_id === this.patientId &&
        (type.startsWith("escalation.") || type.startsWith("checkin."))) {
      this.refreshPart("safety");
    }
  }

  async refreshPart(name) {
    if (this.loading.get(name)) {
      this.loading.set(name, "again");
      return;
    }
    this.loading.set(name, "yes");
    try {
      const response = await fetch(`/visits/${this.visitId}?part=${name}`, {
        credentials: "same-origin", cache: "no-store",
        headers: { Accept: "text/html", "X-Mendwell-Background": "1" } });
      if (response.ok) {
        const template = document.createElement("template");
        template.innerHTML = await response.text();
        const fresh = template.content.querySelector(`[data-part="${name}"]`);
        const old = this.root.querySelector(`[data-part="${name}"]`);
        if (fresh && old) old.replaceWith(fresh);
      }
    } catch {
      // offline: the next event or reconnection loads it again
    } finally {
      const again = this.loading.get(name) === "again";
      this.loading.delete(name);
      if (again) this.refreshPart(name);
    }
  }

  setUpRaise() {
    const form = this.root.querySelector('form[data-form="raise"]');
    if (!form) return;
    const done = form.querySelector("[data-form-done]");
    handleForm(form, {
      request: (f) => ({ method: "POST", url: "/api/v1/escalations",
        body: formBody(f, ["patient_id", "visit_id"]) }),
      done: async (result) => {
        form.reset();
        done.textContent = `Raised: ${result.data.level} escalation ${result.data.id}. The ` +
          "coordinators are alerted.";
        await this.refreshPart("safety");
      },
    });
    form.addEventListener("input", () => { done.textContent = ""; });
  }

  // --- the call drops during an emergency --------------------------------------------

  onPatientCall({ state, name }) {
    const banner = this.el.callDrop;
    if (!banner) return;
    if (state === "connected") {
      if (this.callDrop.reported) {
        this.callDrop.reported = false;
        this.showCallDrop(`The call with ${name || "the patient"} is back.`, null, "ok");
      }
      return;
    }
    if (state !== "lost" && state !== "failed") return;
    const emergency = this.root.querySelector('[data-open-escalation][data-level="emergency"]');
    if (!emergency || this.callDrop.reported) return;
    this.callDrop.reported = true;
    this.reportDrop(emergency.dataset.escalationId, name || "the patient", 0);
  }

  showCallDrop(text, extra, kind = "alert") {
    const banner = this.el.callDrop;
    const callback = this.root.querySelector('[data-testid="emergency-callback"]');
    const parts = [document.createTextNode(text)];
    if (kind === "alert") {
      parts.push(document.createTextNode(" Call them back now"));
      if (callback) {
        const link = document.createElement("a");
        link.href = callback.getAttribute("href");
        link.textContent = callback.textContent;
        parts.push(document.createTextNode(" on "), link);
      }
      parts.push(document.createTextNode(". "));
    }
    if (extra) parts.push(document.createTextNode(extra));
    banner.replaceChildren(...parts);
    banner.dataset.kind = kind;
    banner.hidden = false;
  }

  async reportDrop(escalationId, name, attempt) {
    const lost = `The call with ${name} dropped during an emergency.`;
    if (attempt === 0) this.showCallDrop(lost, "Alerting the coordinator…");
    const result = await request("POST", `/api/v1/escalations/${escalationId}/call-dropped`,
      { visit_id: Number(this.visitId) });
    if (result.ok) {
      this.showCallDrop(lost, "The coordinator has been alerted with the callback number.");
      return;
    }
    if (result.status === 0 || result.status >= 500) {
      this.showCallDrop(lost, "Mendwell is not reachable, so the coordinator could not be " +
        "alerted yet (trying again): call the coordinator yourself too.");
      const delay = ALERT_RETRY_MS[Math.min(attempt, ALERT_RETRY_MS.length - 1)];
      setTimeout(() => this.reportDrop(escalationId, name, attempt + 1), delay);
      return;
    }
    this.showCallDrop(lost, `The coordinator could not be alerted automatically ` +
      `(${result.error.message || result.status}): call the coordinator.`);
  }
}

const root = document.getElementById("note-panel");
const note = root && readNote(root);
if (root && note) {
  window.mendwellNotePanel = new NotePanel(root, note);
}
