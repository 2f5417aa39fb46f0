// Merging after a version conflict: never a silent overwrite.
//
// Per section, against the version both sides started from (when known):
// - changed on one side only: that side's text is taken (nothing of the other side is
//   lost, it did not touch the section);
// - changed on both sides: both texts side by side, and a merged text (prefilled, to
//   be checked and edited) that is what gets saved.
// Medication changes and the follow-up interval, when both sides changed them: a choice.

import { moment } from "./moment.js";
import { RISK_JUDGEMENTS, RISK_JUDGEMENT_LABELS, SECTIONS, SECTION_LABELS, rowText, sameBody }
  from "./note-editor.js";

const JUDGEMENT = "safety_risk_judgement";

function joinTexts(first, second) {
  if (!first) return second;
  if (!second) return first;
  return first.endsWith("\n") || second.startsWith("\n") ? first + second
    : `${first}\n${second.trimStart()}`;
}

// A starting point for the merged text: theirs, then what only mine added.
export function prefill(base, mine, theirs) {
  if (mine.includes(theirs)) return mine;
  if (theirs.includes(mine)) return theirs;
  if (base && mine.startsWith(base) && theirs.startsWith(base)) {
    return base + joinTexts(theirs.slice(base.length), mine.slice(base.length));
  }
  return joinTexts(theirs, mine);
}

function changed(base, key, side) {
  // Without the common version every difference is a conflict (the safe reading).
  if (!base) return true;
  return !sameBody(base[key], side[key]);
}

// What merges by itself and what the person must decide.
export function threeWay(base, mine, theirs) {
  const sections = {};
  const conflicts = [];
  for (const key of SECTIONS) {
    const m = mine.sections[key];
    const t = theirs.sections[key];
    if (m === t) sections[key] = m;
    else if (base && base.sections[key] === t) sections[key] = m;
    else if (base && base.sections[key] === m) sections[key] = t;
    else conflicts.push(key);
  }
  const pick = (key) => {
    if (sameBody(mine[key], theirs[key])) return "same";
    if (base && !changed(base, key, theirs)) return "mine";
    if (base && !changed(base, key, mine)) return "theirs";
    return "ask";
  };
  return { sections, conflicts, meds: pick("medication_changes"),
    followUp: pick("follow_up_days") };
}

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter(Boolean));
  return node;
}

function who(note) {
  const name = note.updated_by && note.updated_by.name ? note.updated_by.name : "someone";
  return { name, time: moment(note.updated_at) };
}

function rowsText(rows) {
  return rows.length ? rows.map(rowText).join("\n") : "No medication changes.";
}

// The risk judgement is one of a list, never a merged text: a choice between the two,
// the higher of them preselected (the safer reading until the person decides).
function judgementChoice(id, mine, theirs) {
  const select = element("select", { id, "data-merge": JUDGEMENT, "data-testid": "merge-text" });
  select.append(new Option("Choose your risk judgement", ""));
  for (const value of RISK_JUDGEMENTS) select.append(new Option(RISK_JUDGEMENT_LABELS[value], value));
  for (const value of [mine, theirs]) {
    if (value && !RISK_JUDGEMENTS.includes(value) &&
        ![...select.options].some((option) => option.value === value)) {
      select.append(new Option(`Written before: ${value}`, value));
    }
  }
  const rank = (value) => RISK_JUDGEMENTS.indexOf(value);
  select.value = rank(mine) >= rank(theirs) ? mine : theirs;
  return select;
}

function dedupeRows(rows) {
  const seen = new Set();
  return rows.filter((row) => {
    const key = JSON.stringify(row);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// Shows the merge in `container`; `onSave(merged)` gets
// { sections, medication_changes, follow_up_days } once the person saves it (the last
// two undefined where this side's stay).
export class MergeView {
  constructor(container, { onSave }) {
    this.container = container;
    this.onSave = onSave;
    this.current = null;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("[data-pick]");
      if (!button || !this.current) return;
      const { base, mine, theirs } = this.current;
      const key = button.dataset.for;
      const area = container.querySelector(`[data-merge="${key}"]`);
      area.value = { theirs: theirs.sections[key], mine: mine.sections[key],
        both: prefill(base ? base.sections[key] : "", mine.sections[key],
          theirs.sections[key]) }[button.dataset.pick];
      area.focus();
    });
  }

  hide() {
    this.current = null;
    this.container.hidden = true;
    this.container.replaceChildren();
  }

  // Returns the merged content straight away when nothing needs a decision (the view
  // stays hidden), else null and the view is shown.
  show({ base, mine, theirs, note }) {
    const plan = threeWay(base, mine, theirs);
    // `undefined`: this side's rows (or interval) stay as the editor has them.
    const followChoice = plan.followUp === "theirs" ? theirs.follow_up_days : undefined;
    const medsChoice = plan.meds === "theirs" ? theirs.medication_changes : undefined;
    const automatic = plan.conflicts.length === 0 && plan.meds !== "ask" && plan.followUp !== "ask";
    if (automatic) {
      return { sections: plan.sections, medication_changes: medsChoice,
        follow_up_days: followChoice, taken: SECTIONS.filter((key) =>
          plan.sections[key] !== mine.sections[key]) };
    }
    const { name, time } = who(note);
    const parts = [];
    parts.push(element("h4", { id: "merge-title", tabindex: "-1",
      text: "This note was saved elsewhere while you were writing" }));
    parts.push(element("p", { text: `${name} saved version ${note.version}` +
      `${time ? ` at ${time}` : ""}. Nothing has been overwritten: compare the two texts, ` +
      "make the merged text say what it should, then save it." }));
    for (const key of plan.conflicts) {
      const label = SECTION_LABELS[key] || key;
      const id = `merge-${key}`;
      const area = key === JUDGEMENT
        ? judgementChoice(id, mine.sections[key], theirs.sections[key])
        : element("textarea", { id, "data-merge": key, "data-testid": "merge-text",
          rows: "5", maxlength: "20000" });
      if (key !== JUDGEMENT) {
        area.value = prefill(base ? base.sections[key] : "", mine.sections[key],
          theirs.sections[key]);
      }
      const pick = (which, text) => element("button", { type: "button", "data-pick": which,
        "data-for": key, text });
      parts.push(element("section", { className: "merge-section", "data-merge-section": key,
        "aria-labelledby": `${id}-title` },
      element("h5", { id: `${id}-title`, text: label }),
      element("div", { className: "merge-columns" },
        element("div", { className: "merge-side" },
          element("p", { className: "merge-label", text: `Saved by ${name}` }),
          element("div", { className: "merge-text", "data-side": "theirs",
            "data-testid": "merge-theirs", text: theirs.sections[key] || "(empty)" })),
        element("div", { className: "merge-side" },
          element("p", { className: "merge-label", text: "Yours, not saved yet" }),
          element("div", { className: "merge-text", "data-side": "mine",
            "data-testid": "merge-mine", text: mine.sections[key] || "(empty)" }))),
      element("label", { for: id, text: `Merged ${label.toLowerCase()}: this is what will be saved` }),
      area,
      element("div", { className: "merge-picks" }, pick("theirs", "Use theirs"),
        pick("mine", "Use mine"), key === JUDGEMENT ? null : pick("both", "Both"))));
    }
    if (plan.meds === "ask") {
      parts.push(this.choice("meds", "Medication changes", [
        ["both", `Both lists:\n${rowsText(dedupeRows([...theirs.medication_changes,
          ...mine.medication_changes]))}`],
        ["theirs", `Saved by ${name}:\n${rowsText(theirs.medication_changes)}`],
        ["mine", `Yours:\n${rowsText(mine.medication_changes)}`],
      ]));
    }
    if (plan.followUp === "ask") {
      const days = (value) => (value ? `${value} days` : "the default");
      parts.push(this.choice("follow", "Next visit in", [
        ["mine", `Yours: ${days(mine.follow_up_days)}`],
        ["theirs", `Saved by ${name}: ${days(theirs.follow_up_days)}`],
      ]));
    }
    const save = element("button", { type: "button", className: "primary",
      "data-testid": "merge-save", text: "Save the merged note" });
    parts.push(save);
    this.container.replaceChildren(...parts);
    this.container.hidden = false;
    this.current = { base, mine, theirs };
    save.addEventListener("click", () => {
      const sections = { ...plan.sections };
      for (const area of this.container.querySelectorAll("[data-merge]")) {
        sections[area.dataset.merge] = area.value;
      }
      let meds = medsChoice;
      const medsPick = this.picked("meds");
      if (medsPick === "theirs") meds = theirs.medication_changes;
      else if (medsPick === "mine") meds = undefined;
      else if (medsPick === "both") {
        meds = dedupeRows([...theirs.medication_changes, ...mine.medication_changes]);
      }
      let follow = followChoice;
      const followPick = this.picked("follow");
      if (followPick) follow = followPick === "theirs" ? theirs.follow_up_days : undefined;
      this.onSave({ sections, medication_changes: meds, follow_up_days: follow });
    });
    this.container.querySelector("#merge-title").focus();
    return null;
  }

  choice(name, legend, options) {
    return element("fieldset", { className: "merge-choice choice-group" },
      element("legend", { text: legend }),
      ...options.map(([value, text], index) => element("label", { className: "choice" },
        element("input", { type: "radio", name: `merge-${name}`, value,
          checked: index === 0 }),
        element("span", { className: "prewrap", text }))));
  }

  picked(name) {
    const input = this.container.querySelector(`input[name="merge-${name}"]:checked`);
    return input ? input.value : null;
  }
}
