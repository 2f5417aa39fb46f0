// The note panel beside the video (web/templates/_note_panel.html).
//
// It runs on its own: plain fetches and the live-events socket, nothing of the video
// call's signaling, so it keeps working while the call reconnects (and after the visit
// has ended, when the note is often finished). What it does:
// - saves the note as it is typed, never losing a word (note-autosave.js), with merges
//   after a conflict (note-merge.js);
// - signs it at the version it holds (the server refuses a sign of a version it no
//   longer has), adds addenda (with a safety assessment while a check-in after signing
//   asks for one), schedules the next visit;
// - shows the signing gate (why a safety assessment is required) and the open addendum
//   task as they change, from the note itself (`GET .../note`) when an event says so;
// - keeps its parts current (safety, medications, labs, trends, costs, controlled) by
//   fetching each again (`?part=`) when an event says it changed (`partsFor`);
// - raises escalations by hand; alerts the coordinator when the call drops during an
//   emergency (the `mendwell:patient-call` event from visit-room.js);
// - lets the panel be resized (panel-resize.js) and registers the offline page
//   (offline-worker.js) that keeps the note writable across a reload while the
//   server is down.

import { hideControlledGaps, showControlledGaps } from "./controlled-gate.js";
import { connectEvents } from "./escalation-alerts.js";
import { formBody, handleForm } from "./escalation-api.js";
import { NoteAutosave, request } from "./note-autosave.js";
import { NoteEditor, RISK_JUDGEMENT_LABELS, SECTION_LABELS, SECTIONS, bodyOf }
  from "./note-editor.js";
import { MergeView } from "./note-merge.js";
import { moment } from "./moment.js";
import { NoteStore, rememberUser } from "./note-store.js";
import { setUpResize } from "./panel-resize.js";
import { LEVELS } from "./vocabulary.js";

const OK_MESSAGE_MS = 6000;
// In a note's `safety_reasons`: the patient has an open escalation (server/notes.py).
const ESCALATION_OPEN = "escalation_open";
// Events after which the gate or the addendum task may have changed.
const NOTE_EVENTS = new Set(["note.addendum_needed", "note.addendum_task_done",
  "note.addendum_added"]);
const ALERT_RETRY_MS = [1000, 2000, 4000, 8000];
const PARTS = ["safety", "medications", "labs", "trends", "costs", "controlled"];

// The panel's parts (`?part=NAME`, web/pages/note_panel.py PARTS) an event changes,
// beyond the safety part and the gate (onEvent). Each event names its patient or visit;
// the recipients are the care team (and, for credentials, the prescriber).
function partsFor(type, message, { forVisit, forPatient, userId }) {
  if (type === "lab.added" && forPatient) return ["labs", "medications"];
  if (type === "pdmp.checked" && forVisit) return ["controlled"];
  if (type === "prescriber.credentials_updated" &&
      Number(message.prescriber_id) === userId) return ["controlled"];
  if (type === "checkin.emergency_info" && forVisit) return ["controlled"];
  // A completed check-in brings scores (the trend, the trial), FIBSER, side effects
  // and missed doses; the state the patient confirmed in it.
  if (type === "checkin.completed" && forPatient) {
    return forVisit ? ["trends", "costs", "controlled"] : ["trends", "costs"];
  }
  if (type === "note.signed" && forPatient && message.medications_changed) {
    return ["medications", "labs", "trends", "costs"];
  }
  // The track decides whether the BAM is asked; its scores are on the trend.
  if (type === "patient.substance_use_track" && forPatient) return ["trends", "costs"];
  return [];
}

const $ = (id) => document.getElementById(id);

// The note as the server rendered it (`data-note`, the JSON of GET .../note).
function readNote(root) {
  try {
    return JSON.parse(root.dataset.note);
  } catch {
    return null;
  }
}

function readVocabulary(element) {
  try {
    return JSON.parse(element.dataset.vocabulary);
  } catch {
    return { labels: {}, levels: {}, level_labels: {} };
  }
}

// Put a part's fresh copy in place of the old one, keeping what the reader did to it:
// which of its disclosures were open, and focus (on the element of the same id, or the
// same link) so a keyboard or screen-reader user is not thrown to the top of the page.
function swapPart(old, fresh) {
  const opened = [...old.querySelectorAll("details")].map((d) => d.open);
  [...fresh.querySelectorAll("details")].forEach((d, i) => {
    if (i < opened.length) d.open = opened[i];
  });
  const focused = old.contains(document.activeElement) ? document.activeElement : null;
  old.replaceWith(fresh);
  if (!focused) return;
  const same = (focused.id && fresh.querySelector(`#${CSS.escape(focused.id)}`)) ||
    (focused.getAttribute("href") &&
     fresh.querySelector(`[href="${CSS.escape(focused.getAttribute("href"))}"]`));
  if (same) same.focus();
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
      gate: $("safety-assessment"), gateBadge: $("safety-required-badge"), gateWhy: $("safety-why"),
      gateNotRequired: $("safety-not-required"), task: $("addendum-task"),
      taskReasons: $("addendum-task-reasons"), addendumSafety: $("addendum-safety"),
      safetyAssessed: $("addendum-safety-assessed"), safetyJudgement: $("addendum-safety-judgement"),
      safetyPlan: $("addendum-safety-plan"), signDialog: $("sign-dialog"),
      signTitle: $("sign-dialog-title"), signStatus: $("sign-dialog-status"),
      signMissing: $("sign-dialog-missing"), signReasons: $("sign-dialog-reasons"),
      signSections: $("sign-dialog-sections"), signReady: $("sign-dialog-ready"),
      signConfirm: $("sign-dialog-confirm"), signFix: $("sign-dialog-fix"),
      signCancel: $("sign-dialog-cancel"), preview: $("summary-preview"),
      previewBody: $("summary-preview-body"),
    };
    this.vocabulary = readVocabulary(this.el.gate);
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
    this.wireSignDialog();
    if (el.preview) {
      el.preview.addEventListener("toggle", () => this.loadPreview());
      autosave.addEventListener("saved", () => this.loadPreview());
    }
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

  // Sign: save first, then the in-page confirmation, which asks the server's signing
  // gate (POST .../note/sign-check) before it offers Sign, so what is missing is listed
  // before any sign is tried. The sign itself goes through the gate again.
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
    const saved = await autosave.flush();
    el.sign.disabled = false;
    el.sign.textContent = idle;
    if (!saved) {
      this.say(autosave.offline
        ? "Cannot sign while Mendwell is not reachable. Your note is kept in this browser; " +
          "sign once it reads saved."
        : "The note is not saved yet, so it cannot be signed. Check the message above.",
      "warning");
      return;
    }
    this.openSignDialog();
    const result = await request("POST", `${this.url}/sign-check`,
      { version: autosave.base.version });
    if (!el.signDialog.open) return; // closed while asking
    if (result.ok) {
      this.showSignCheck(result.data);
      return;
    }
    if (showControlledGaps(el.signDialog, result)) return;
    this.closeSignDialog();
    if (!(await this.onSignRefused(result))) this.say(this.failure(result, "Not signed"), "warning");
  }

  openSignDialog() {
    const { el } = this;
    el.signStatus.textContent = "Checking the note…";
    hideControlledGaps(el.signDialog);
    el.signMissing.hidden = true;
    el.signReady.hidden = true;
    el.signConfirm.hidden = true;
    el.signFix.hidden = true;
    el.signConfirm.disabled = false;
    this.signMissing = [];
    if (!el.signDialog.open) el.signDialog.showModal();
    el.signTitle.focus();
  }

  // Focus goes back to the button that opened the dialog (or to the field to fix).
  closeSignDialog(focus = el => el.sign) {
    const { el } = this;
    if (el.signDialog.open) el.signDialog.close();
    const target = focus(el);
    if (target && !target.hidden) target.focus();
  }

  showSignCheck(check) {
    const { el } = this;
    if (check.ready) {
      el.signStatus.textContent = check.safety_required
        ? "The safety assessment is complete. Ready to sign." : "Ready to sign.";
      el.signReady.hidden = false;
      el.signConfirm.hidden = false;
      el.signConfirm.focus();
      return;
    }
    this.signMissing = check.missing || [];
    el.signStatus.textContent = "This note cannot be signed yet.";
    const why = (check.reasons || []).filter((code) => code !== ESCALATION_OPEN)
      .map((code) => this.reasonLabel(code));
    if ((check.reasons || []).includes(ESCALATION_OPEN)) why.unshift("An open escalation");
    el.signReasons.replaceChildren(...why.map((label) => {
      const item = document.createElement("li");
      item.textContent = label;
      return item;
    }));
    el.signSections.replaceChildren(...this.signMissing.map((key) => {
      const item = document.createElement("li");
      item.dataset.section = key;
      item.textContent = SECTION_LABELS[key];
      return item;
    }));
    el.signMissing.hidden = false;
    el.signFix.hidden = false;
    el.signFix.focus();
    this.signMissing.slice().reverse().forEach((key) => this.editor.markField(`sections.${key}`));
  }

  async confirmSign() {
    const { el, autosave } = this;
    el.signConfirm.disabled = true;
    el.signStatus.textContent = "Signing…";
    // Typed while the dialog was open (another tab cannot type here, but a pending save can
    // still be in flight): what is signed is what is saved.
    if (!(await autosave.flush())) {
      this.closeSignDialog();
      this.say("The note is not saved yet, so it cannot be signed. Check the message above.",
        "warning");
      return;
    }
    // The version this page holds, saved and shown: the server signs that one or none.
    const result = await request("POST", `${this.url}/sign`, { version: autosave.base.version });
    if (showControlledGaps(el.signDialog, result)) return;
    this.closeSignDialog();
    if (result.ok) {
      await autosave.signedElsewhere(result.data);
      for (const part of ["medications", "labs", "trends", "costs"]) this.refreshPart(part);
      this.say("Signed. The medication list is updated.", "ok");
      return;
    }
    if (!(await this.onSignRefused(result))) this.say(this.failure(result, "Not signed"), "warning");
  }

  // A sign or its check refused: true when handled.
  async onSignRefused(result) {
    const { error, status } = result;
    const { autosave } = this;
    if (status === 409 && error.code === "safety_assessment_required") {
      // Between the check and the sign, the gate changed (a check-in, an escalation).
      const missing = error.missing || [];
      missing.slice().reverse().forEach((key) => this.editor.markField(`sections.${key}`));
      const names = missing.map((key) => SECTION_LABELS[key].toLowerCase()).join(", ");
      const why = (error.reasons || []).filter((code) => code !== ESCALATION_OPEN)
        .map((code) => this.reasonLabel(code));
      if ((error.reasons || []).includes(ESCALATION_OPEN)) why.unshift("an open escalation");
      this.say(`A safety assessment is required before signing (${why.join("; ")}). ` +
        `Complete ${names}: what you assessed and the plan in words (at least 10 letters ` +
        "each) and your risk judgement.", "warning");
      this.refreshNote();
      return true;
    }
    if (status === 409 && error.code === "version_conflict" && error.current) {
      // Saved elsewhere after this page's last save: show it (or merge), then sign again.
      await autosave.onConflict(error.current);
      this.say("The note changed since you last saw it (saved in another tab or by " +
        "someone else). Check it, then sign again.", "warning");
      return true;
    }
    if (status === 409 && error.code === "note_signed") {
      await autosave.signedElsewhere();
      return true;
    }
    if (status === 422) {
      this.editor.markField(error.field, error.message);
      this.say(`Not signed: ${error.message}`, "warning");
      return true;
    }
    return false;
  }

  wireSignDialog() {
    const { el } = this;
    if (!el.signDialog) return;
    el.signConfirm.addEventListener("click", () => this.confirmSign());
    el.signCancel.addEventListener("click", () => this.closeSignDialog());
    el.signFix.addEventListener("click", () => {
      const first = this.signMissing[0];
      this.closeSignDialog(() => (first ? this.editor.field(first) : el.sign));
    });
    // Escape closes a modal dialog by itself ("cancel"); focus still goes back.
    el.signDialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      this.closeSignDialog();
    });
  }

  // --- the summary preview --------------------------------------------------------------

  // The after-visit summary as the patient will read it, rendered by the server from the
  // saved draft: loaded when opened, and again after each save while it is open.
  async loadPreview() {
    const { el } = this;
    if (!el.preview || !el.preview.open) return;
    const token = (this.previewToken || 0) + 1;
    this.previewToken = token;
    el.previewBody.setAttribute("aria-busy", "true");
    let html = null;
    try {
      const response = await fetch(el.preview.dataset.url, { credentials: "same-origin",
        cache: "no-store", headers: { Accept: "text/html" } });
      if (response.ok) html = await response.text();
    } catch {
      html = null;
    }
    if (token !== this.previewToken) return; // a later load is on its way
    el.previewBody.setAttribute("aria-busy", "false");
    if (html === null) {
      const line = document.createElement("p");
      line.className = "empty";
      line.textContent = "The preview could not be loaded; it comes back with the next save.";
      el.previewBody.replaceChildren(line);
      return;
    }
    // Rendered and escaped by the server (the summary page's own template).
    const parsed = new DOMParser().parseFromString(html, "text/html");
    el.previewBody.replaceChildren(...parsed.body.childNodes);
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
    el.signedLine.textContent = `Signed by ${by} on ${moment(note.signed_at)}. The note ` +
      "is locked; add an addendum for anything new.";
    el.signedLine.hidden = false;
    el.addenda.hidden = false;
    this.showGate(note);
    this.showTask(note);
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

  // The safety assessment typed into the addendum form, or null when none of it is.
  addendumSafety() {
    const { el } = this;
    if (!el.addendumSafety || el.addendumSafety.hidden) return null;
    const given = { assessed: el.safetyAssessed.value, risk_judgement: el.safetyJudgement.value,
      plan: el.safetyPlan.value };
    return Object.values(given).some((value) => value.trim()) ? given : null;
  }

  async addAddendum() {
    const { el } = this;
    const text = el.addendumText.value.trim();
    el.addendumError.hidden = true;
    this.editor.clearErrors();
    if (!text) {
      el.addendumError.textContent = "Write the addendum.";
      el.addendumError.hidden = false;
      el.addendumText.focus();
      return;
    }
    const safety = this.addendumSafety();
    const body = safety ? { text, safety_assessment: safety } : { text };
    const button = el.addendumForm.querySelector('[type="submit"]');
    button.disabled = true;
    const result = await request("POST", `${this.url}/addenda`, body);
    button.disabled = false;
    if (!result.ok) {
      el.addendumError.textContent = this.failure(result, "Not added");
      el.addendumError.hidden = false;
      const target = { text: el.addendumText, "safety_assessment.assessed": el.safetyAssessed,
        "safety_assessment.risk_judgement": el.safetyJudgement,
        "safety_assessment.plan": el.safetyPlan }[result.error.field];
      if (target) {
        target.setAttribute("aria-invalid", "true");
        target.focus();
      }
      return;
    }
    el.addendaList.append(this.addendumItem(result.data));
    el.addendaEmpty.hidden = true;
    el.addendumText.value = "";
    for (const field of [el.safetyAssessed, el.safetyJudgement, el.safetyPlan]) {
      if (field) field.value = "";
    }
    if (this.pendingUnsaved) {
      this.pendingUnsaved = false;
      this.store.clear();
    }
    if (result.data.closed_task_id) {
      this.showTask({ safety_addendum_task: null });
      this.say("Addendum with the safety assessment added. The task is done.", "ok");
    } else if (this.taskOpen) {
      this.say("Addendum added. The safety assessment the later check-in asks for is still " +
        "needed.", "warning");
    } else {
      this.say("Addendum added.", "ok");
    }
  }

  addendumItem(addendum) {
    const item = document.createElement("li");
    const meta = document.createElement("p");
    meta.className = "addendum-meta";
    meta.textContent = `${addendum.author.name}, ${moment(addendum.at)}`;
    const body = document.createElement("p");
    body.className = "addendum-text";
    body.textContent = addendum.text;
    item.append(meta, body);
    if (addendum.safety) {
      const list = document.createElement("dl");
      list.className = "addendum-safety";
      list.dataset.testid = "addendum-safety";
      for (const [term, value] of [["What was assessed", addendum.safety.assessed],
        ["Risk judgement", RISK_JUDGEMENT_LABELS[addendum.safety.risk_judgement] ||
          addendum.safety.risk_judgement], ["Safety plan", addendum.safety.plan]]) {
        const pair = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = term;
        const dd = document.createElement("dd");
        dd.textContent = value;
        pair.append(dt, dd);
        list.append(pair);
      }
      item.append(list);
    }
    return item;
  }

  // --- the signing gate and the addendum task -----------------------------------------

  reasonLabel(code) {
    return this.vocabulary.labels[code] || code.replaceAll("_", " ");
  }

  // Why the safety assessment is required, as the note says now (notes.safety_gate).
  showGate(note) {
    const { el } = this;
    if (!el.gate) return;
    const required = Boolean(note.safety_required) && note.status !== "signed";
    el.gate.dataset.required = required ? "1" : "0";
    el.gate.classList.toggle("is-required", required);
    el.gateBadge.hidden = !required;
    el.gateWhy.hidden = !required;
    el.gateNotRequired.hidden = required;
    for (const mark of el.gate.querySelectorAll(".required-mark")) mark.hidden = !required;
    for (const key of ["safety_assessed", "safety_risk_judgement", "safety_plan"]) {
      const field = el.gate.querySelector(`[data-section="${key}"]`);
      if (!field) continue;
      if (required) field.setAttribute("aria-required", "true");
      else field.removeAttribute("aria-required");
    }
    const reasons = note.safety_reasons || [];
    const cut = reasons.indexOf(ESCALATION_OPEN);
    const lines = (cut >= 0 ? reasons.slice(0, cut) : reasons).map((code) => ({ code,
      level: this.vocabulary.levels[code] || "review", label: this.reasonLabel(code) }));
    const escalation = note.safety_escalation;
    if (escalation) {
      const how = escalation.source === "manual" ? "raised by hand" : "from a check-in";
      const why = (escalation.reasons || []).map((code) => this.reasonLabel(code)).join("; ");
      lines.push({ code: ESCALATION_OPEN, level: escalation.level,
        label: `An open escalation (${how})${why ? `: ${why}` : ""}` });
    }
    lines.sort((a, b) => LEVELS.indexOf(b.level) - LEVELS.indexOf(a.level));
    const list = el.gateWhy.querySelector(".safety-reasons");
    list.replaceChildren(...lines.map((line) => {
      const item = document.createElement("li");
      item.dataset.reason = line.code;
      const badge = document.createElement("span");
      badge.className = `level-badge level-${line.level}`;
      badge.textContent = this.vocabulary.level_labels[line.level] || line.level;
      item.append(badge, document.createTextNode(` ${line.label}`));
      return item;
    }));
  }

  // A check-in after signing asks for an addendum with a safety assessment.
  showTask(note) {
    const { el } = this;
    const task = note.safety_addendum_task;
    this.taskOpen = Boolean(task);
    if (el.task) {
      el.task.hidden = !task;
      if (task) {
        el.taskReasons.textContent = (task.reasons || []).map((code) => this.reasonLabel(code))
          .join("; ");
      }
    }
    if (el.addendumSafety) el.addendumSafety.hidden = !task;
  }

  // The note's gate, task and addenda as the server has them now (a background read:
  // the autosave's own state is not touched).
  async refreshNote() {
    const result = await request("GET", this.url, undefined, { background: true });
    if (!result.ok) return;
    const note = result.data;
    this.showGate(note);
    if (note.status === "signed") {
      this.showTask(note);
      const shown = this.el.addendaList.children.length;
      if ((note.addenda || []).length > shown) {
        this.el.addendaList.replaceChildren(...note.addenda.map((a) => this.addendumItem(a)));
        this.el.addendaEmpty.hidden = true;
      }
    }
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
    el.result.textContent = `Next visit booked for ${moment(result.data.scheduled_at)} ` +
      `(in ${result.data.days} days). The invitation email is on its way.`;
  }

  // --- live parts -----------------------------------------------------------------------

  connectLive() {
    this.live = connectEvents({
      statusElement: this.el.live,
      onSubscribed: () => {
        // Whatever changed while the socket was down came without an event. (On the
        // first subscription the page is seconds old: the safety part alone, as ever.)
        const parts = this.subscribed ? PARTS : ["safety"];
        this.subscribed = true;
        for (const part of parts) this.refreshPart(part);
        this.refreshNote();
        this.autosave.remoteSaved(Number.MAX_SAFE_INTEGER);
      },
      onMessage: (message) => this.onEvent(message),
    });
  }

  onEvent(message) {
    const type = message.type || "";
    const forVisit = String(message.visit_id) === String(this.visitId);
    const forPatient = Number(message.patient_id) === this.patientId;
    if (forVisit && NOTE_EVENTS.has(type)) this.refreshNote();
    if (forVisit && type === "note.saved") this.autosave.remoteSaved(Number(message.version));
    if (forVisit && type === "note.signed") {
      if (this.canWrite) this.autosave.signedElsewhere();
      else this.autosave.reload();
    }
    if (forPatient && (type.startsWith("escalation.") || type.startsWith("checkin.") ||
        type === "lab.added")) {
      this.refreshPart("safety");
      // A new reason or escalation may make the safety assessment required (a lab
      // result may lift an overdue-lab reason).
      this.refreshNote();
    }
    for (const part of partsFor(type, message, { forVisit, forPatient,
      userId: Number(this.userId) })) {
      this.refreshPart(part);
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
        if (fresh && old) swapPart(old, fresh);
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
