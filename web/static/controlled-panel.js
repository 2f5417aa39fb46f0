// The note panel's PDMP form (web/templates/_panel_controlled.html): records a check
// for this visit (POST /api/v1/visits/{id}/pdmp-checks) and lists it, so the sign
// confirmation that follows finds it. The list is looked up when a check is recorded:
// the panel replaces it whenever a `pdmp.checked` event arrives (note-panel.js).
import { moment } from "./moment.js";
import { request } from "./note-autosave.js";

const form = document.getElementById("pdmp-form");
const problem = document.getElementById("pdmp-error");

function line(check) {
  const item = document.createElement("li");
  item.dataset.result = check.result;
  item.dataset.checkId = check.id;
  item.textContent = `PDMP ${check.state}: ${check.result}, ${moment(check.checked_at)} ` +
    `(${check.checked_by.name})` +
    (check.note ? `: ${check.note}` : "");
  return item;
}

if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    problem.hidden = true;
    const result = await request("POST", form.dataset.url, {
      state: data.get("state"), result: data.get("result"), note: data.get("note") || "" });
    button.disabled = false;
    if (!result.ok) {
      problem.textContent = (result.error && result.error.message) || "Not recorded; try again.";
      problem.hidden = false;
      return;
    }
    const list = document.getElementById("pdmp-checks");
    // The event may have brought the fresh list first.
    if (list && !list.querySelector(`[data-check-id="${result.data.id}"]`)) {
      list.prepend(line(result.data));
    }
    const empty = document.getElementById("pdmp-empty");
    if (empty) empty.hidden = true;
    form.querySelector("[name=note]").value = "";
  });
}
