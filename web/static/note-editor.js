// The structured note's form: its content as one object, and back.
//
// content = { sections: {key: text}, medication_changes: [row...], follow_up_days }
// Rows keep whatever was typed (a row without a drug yet included); `normalize` turns
// content into the body the server stores, so "is this saved?" is one comparison.

// The vocabularies come from the server, where they are defined once
// (web/pages/vocabulary.py); re-exported for the modules that take them from here.
import { ACTION_WORDS, RISK_JUDGEMENT_LABELS, RISK_JUDGEMENTS, SECTION_LABELS, SECTIONS }
  from "./vocabulary.js";

export { ACTION_WORDS, RISK_JUDGEMENT_LABELS, RISK_JUDGEMENTS, SECTION_LABELS, SECTIONS };

const ROW_FIELDS = ["action", "drug", "dose", "unit", "route", "frequency", "reason", "replaces",
  "days_supply"];

function text(value) {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
}

// One row as the server stores it: trimmed, empty fields left out, `replaces` only for
// a switch; null for a row that has no drug yet (it is not sent until it has one).
export function normalizeRow(row) {
  const drug = text(row.drug).trim();
  if (!drug) return null;
  const out = {};
  for (const field of ROW_FIELDS) {
    if (field === "replaces" && row.action !== "switch") continue;
    const value = field === "drug" ? drug : text(row[field]).trim();
    // A whole number, as the server answers it, so "saved?" compares like with like.
    if (value && field === "days_supply") out[field] = /^\d+$/.test(value) ? Number(value) : value;
    else if (value) out[field] = value;
  }
  if (!out.action) out.action = "start";
  return out;
}

export function normalize(content) {
  const sections = {};
  for (const key of SECTIONS) sections[key] = text((content.sections || {})[key]);
  const rows = (content.medication_changes || []).map(normalizeRow).filter(Boolean);
  const days = Number(content.follow_up_days);
  return {
    sections,
    medication_changes: rows,
    follow_up_days: Number.isInteger(days) && days >= 1 && days <= 365 ? days : null,
  };
}

// Rows with something typed but no drug yet: not sent, but kept in this browser.
export function hasDraftRows(content) {
  return (content.medication_changes || []).some((row) => !text(row.drug).trim() &&
    ROW_FIELDS.some((field) => field !== "action" && text(row[field]).trim()));
}

export function bodyOf(note) {
  return normalize({ sections: note.sections, medication_changes: note.medication_changes,
    follow_up_days: note.follow_up_days });
}

export function sameBody(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function rowText(row) {
  const amount = [row.dose, row.unit].filter(Boolean).join(" ");
  const rest = [amount, row.route, row.frequency].filter(Boolean).join(", ");
  const replaces = row.action === "switch" && row.replaces ? ` (replacing ${row.replaces})` : "";
  const why = row.reason ? `: ${row.reason}` : "";
  return `${ACTION_WORDS[row.action] || row.action} ${row.drug}${replaces}${rest ? ` ${rest}` : ""}${why}`;
}

// Events: "input" (the person changed something), "leave" (focus left the form).
export class NoteEditor extends EventTarget {
  constructor(root) {
    super();
    this.root = root;
    this.form = root.querySelector("#note-form");
    this.rows = root.querySelector("#med-rows");
    this.rowsEmpty = root.querySelector("#med-empty");
    this.template = root.querySelector("#med-row-template");
    this.addButton = root.querySelector("#med-add");
    this.followUp = root.querySelector("#follow-up-days");
    this.followUpReset = root.querySelector("#follow-up-reset");
    this.followUpReason = root.querySelector("#follow-up-reason");
    this.followDefault = null;
    this.readOnly = false;
    this.locked = new Set();

    this.form.addEventListener("input", (event) => {
      if (event.target === this.followUp) {
        this.followUp.dataset.explicit = this.followUp.value === "" ? "0" : "1";
        this.showFollowUp();
      }
      const row = event.target.closest("[data-med-row]");
      if (row && event.target.dataset.field === "action") this.showRowAction(row);
      this.changed();
    });
    this.form.addEventListener("focusout", (event) => {
      if (!this.form.contains(event.relatedTarget)) this.emit("leave");
    });
    this.form.addEventListener("click", (event) => {
      const remove = event.target.closest('[data-action="remove-med"]');
      if (!remove || this.readOnly) return;
      const row = remove.closest("[data-med-row]");
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      this.showRowsEmpty();
      (next ? next.querySelector("select, input") : this.addButton).focus();
      this.changed();
    });
    if (this.addButton) {
      this.addButton.addEventListener("click", () => {
        const row = this.addRow({});
        row.querySelector('[data-field="action"]').focus();
        this.changed();
      });
    }
    if (this.followUpReset) {
      this.followUpReset.addEventListener("click", () => {
        this.followUp.dataset.explicit = "0";
        if (this.followDefault) this.followUp.value = String(this.followDefault.days);
        this.showFollowUp();
        this.followUp.focus();
        this.changed();
      });
    }
    for (const row of this.rows.querySelectorAll("[data-med-row]")) this.showRowAction(row);
  }

  emit(type) {
    this.dispatchEvent(new Event(type));
  }

  changed() {
    this.emit("input");
  }

  // A section's box: a textarea, or the risk judgement's <select>.
  field(key) {
    return this.form.querySelector(`[data-section="${key}"]`);
  }

  content() {
    const sections = {};
    for (const key of SECTIONS) {
      const area = this.field(key);
      sections[key] = area ? area.value : "";
    }
    const rows = [...this.rows.querySelectorAll("[data-med-row]")].map((row) => {
      const out = {};
      for (const field of ROW_FIELDS) {
        const input = row.querySelector(`[data-field="${field}"]`);
        out[field] = input ? input.value : "";
      }
      return out;
    });
    const explicit = this.followUp && this.followUp.dataset.explicit === "1";
    const days = explicit ? Number(this.followUp.value) : null;
    return { sections, medication_changes: rows,
      follow_up_days: Number.isInteger(days) && days >= 1 && days <= 365 ? days : null };
  }

  setSection(key, value) {
    const area = this.field(key);
    if (!area || area.value === value) return;
    if (area.tagName === "SELECT") {
      // A value the list does not have (written before the list existed) stays visible.
      if (value && ![...area.options].some((option) => option.value === value)) {
        area.append(new Option(`Written before: ${value}`, value));
      }
      area.value = value;
      return;
    }
    // Keep the caret where it was when the person is in this box.
    const focused = document.activeElement === area;
    const { selectionStart, selectionEnd } = area;
    area.value = value;
    if (focused) area.setSelectionRange(Math.min(selectionStart, value.length),
      Math.min(selectionEnd, value.length));
  }

  // Left out (undefined): the medication rows or the follow-up stay as they are (a
  // merge that keeps this side's rows keeps a half-typed row too).
  setContent(content) {
    for (const key of SECTIONS) this.setSection(key, text((content.sections || {})[key]));
    const wanted = content.medication_changes;
    const current = this.content().medication_changes;
    if (wanted !== undefined &&
        JSON.stringify(current) !== JSON.stringify(wanted.map((row) => fullRow(row)))) {
      this.rows.replaceChildren();
      for (const row of wanted) this.addRow(row);
      this.showRowsEmpty();
    }
    if (this.followUp && content.follow_up_days !== undefined) {
      if (content.follow_up_days) {
        this.followUp.value = String(content.follow_up_days);
        this.followUp.dataset.explicit = "1";
      } else {
        this.followUp.dataset.explicit = "0";
        if (this.followDefault) this.followUp.value = String(this.followDefault.days);
      }
      this.showFollowUp();
    }
  }

  addRow(row) {
    if (!this.template) return null;
    const fragment = this.template.content.cloneNode(true);
    const element = fragment.querySelector("[data-med-row]");
    for (const field of ROW_FIELDS) {
      const input = element.querySelector(`[data-field="${field}"]`);
      if (input && row[field] !== undefined && row[field] !== null) input.value = String(row[field]);
    }
    this.rows.append(element);
    this.showRowAction(element);
    this.showRowsEmpty();
    if (this.readOnly) element.disabled = true;
    return element;
  }

  showRowAction(row) {
    const action = row.querySelector('[data-field="action"]').value;
    row.dataset.action = action;
    for (const only of row.querySelectorAll("[data-only]")) only.hidden = only.dataset.only !== action;
  }

  showRowsEmpty() {
    if (this.rowsEmpty) this.rowsEmpty.hidden = this.rows.children.length > 0;
  }

  // The cadence default (server.followup) for this note as saved; shown while the
  // prescriber has not chosen an interval of their own.
  setFollowUpDefault(cadence) {
    if (!cadence) return;
    this.followDefault = cadence;
    if (this.followUp && this.followUp.dataset.explicit !== "1") {
      this.followUp.value = String(cadence.days);
    }
    this.showFollowUp();
  }

  showFollowUp() {
    if (!this.followUp || !this.followDefault) return;
    const explicit = this.followUp.dataset.explicit === "1";
    const base = `Default ${this.followDefault.days} days: ${this.followDefault.reason}`;
    const chosen = Number(this.followUp.value);
    this.followUpReason.textContent = explicit && chosen !== this.followDefault.days
      ? `You chose ${this.followUp.value || "?"} days. ${base}` : base;
    if (this.followUpReset) this.followUpReset.hidden = !explicit;
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    for (const area of this.form.querySelectorAll("[data-section]")) {
      setLocked(area, readOnly || this.locked.has(area.dataset.section));
    }
    for (const row of this.rows.querySelectorAll("[data-med-row]")) row.disabled = readOnly;
    if (this.followUp) this.followUp.readOnly = readOnly;
    for (const button of [this.addButton, this.followUpReset]) {
      if (button) button.hidden = readOnly || (button === this.followUpReset &&
        this.followUp.dataset.explicit !== "1");
    }
  }

  // While a section is being merged its box is read-only: the merge decides its text.
  lock(keys) {
    this.locked = new Set(keys);
    for (const key of SECTIONS) {
      const area = this.field(key);
      if (!area) continue;
      setLocked(area, this.readOnly || this.locked.has(key));
      area.closest(".note-field").classList.toggle("is-merging", this.locked.has(key));
    }
  }

  clearErrors() {
    for (const element of this.root.querySelectorAll("[aria-invalid]")) {
      element.removeAttribute("aria-invalid");
    }
    for (const slot of this.root.querySelectorAll("[data-row-error]")) {
      slot.hidden = true;
      slot.textContent = "";
    }
  }

  // Marks the field a server error names ("sections.plan", "medication_changes.0.dose")
  // and moves focus there; returns whether the field was found.
  markField(field, message) {
    if (!field) return false;
    let target = null;
    const section = /^sections\.(\w+)$/.exec(field);
    const row = /^medication_changes\.(\d+)\.(\w+)$/.exec(field);
    if (section) target = this.field(section[1]);
    if (row) {
      // The server counts only the rows it was sent (those with a drug).
      const rows = [...this.rows.querySelectorAll("[data-med-row]")]
        .filter((element) => element.querySelector('[data-field="drug"]').value.trim());
      const element = rows[Number(row[1])];
      if (element) {
        target = element.querySelector(`[data-field="${row[2]}"]`) ||
          element.querySelector('[data-field="drug"]');
        const slot = element.querySelector("[data-row-error]");
        if (slot && message) {
          slot.textContent = message;
          slot.hidden = false;
        }
      }
    }
    if (!target) return false;
    target.setAttribute("aria-invalid", "true");
    target.focus();
    return true;
  }
}

// A select cannot be read-only: it is disabled instead (its value is still read by
// content(), which does not go through the form's submission).
function setLocked(element, locked) {
  if (element.tagName === "SELECT") element.disabled = locked;
  else element.readOnly = locked;
}

function fullRow(row) {
  const out = {};
  for (const field of ROW_FIELDS) out[field] = text(row[field]);
  return out;
}
