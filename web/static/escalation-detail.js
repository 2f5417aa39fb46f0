// One escalation's page: the actions (acknowledge, log a call, add a note, assign,
// resolve, raise) sent to the JSON API with errors shown at their field; the state and
// timeline reloaded (`?part=live`) whenever an event about this escalation arrives, so
// two coordinators on the same escalation see each other's steps.

import { ServerClock, startTicking, tick } from "./escalation-clock.js";
import { alarm, alertTitle, connectEvents, isEmergencyAlert, notify, setUpAlertsButton }
  from "./escalation-alerts.js";
import { formBody, handleForm, statusLabels } from "./escalation-api.js";

const page = document.querySelector("[data-escalation-page]");
const announcer = document.getElementById("detail-announcer");
const clock = new ServerClock();

function announce(text) {
  if (!announcer) return;
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

function part(name, root = page) {
  return root.querySelector(`[data-part="${name}"]`);
}

// Which actions the state allows (escalation/lifecycle.py): acknowledge while open;
// calls, notes and resolving once acknowledged; assigning until resolved.
function applyStatus() {
  const status = part("summary").dataset.status;
  page.querySelectorAll("[data-when]").forEach((element) => {
    element.hidden = !element.dataset.when.split(" ").includes(status);
  });
}

async function load(id) {
  let response;
  try {
    response = await fetch(`/escalations/${encodeURIComponent(id)}?part=live`, {
      credentials: "same-origin",
      headers: { Accept: "text/html", "X-Mendwell-Background": "1" } });
  } catch {
    return;
  }
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  fresh.querySelectorAll("[data-part]").forEach((next) => {
    const current = part(next.dataset.part);
    if (current) current.replaceWith(document.adoptNode(next));
  });
  clock.sync(part("summary").dataset.serverNow);
  tick(page, clock.now());
  applyStatus();
}

let running = null;
let pending = false;

// Resolves once the page shows the state as of (at least) this call, even when a load
// was already under way when it was made.
function refresh() {
  if (running) {
    pending = true;
    return running;
  }
  running = (async () => {
    try {
      do {
        pending = false;
        await load(page.dataset.escalationId);
      } while (pending);
    } finally {
      running = null;
    }
  })();
  return running;
}

function focusFirstField(formName) {
  const form = page.querySelector(`[data-form="${formName}"]`);
  const field = form && form.querySelector("select, textarea, input:not([type=hidden])");
  if (field && !form.closest("[hidden]")) field.focus();
}

const RAISE_MESSAGES = {
  reason: "Choose a reason.",
  text: 'Describe what is happening: it is needed when the reason is "Other".',
};

// Someone else acted first: show the current state, and say so where it can be seen
// (the form that was used may now be hidden).
async function conflict(result, message) {
  await refresh();
  const notice = page.querySelector("[data-conflict]");
  if (!notice) return;
  notice.textContent = message;
  notice.hidden = false;
  window.setTimeout(() => { notice.hidden = true; }, 15_000);
}

function setUpForms() {
  const id = encodeURIComponent(page.dataset.escalationId);
  const base = `/api/v1/escalations/${id}`;
  const labels = statusLabels(page);
  const wire = (name, request, doneText, after = () => {}) => {
    const form = page.querySelector(`[data-form="${name}"]`);
    if (!form) return;
    handleForm(form, {
      request, labels, onConflict: conflict,
      messages: name === "raise" ? RAISE_MESSAGES : {},
      done: async (result) => {
        form.reset();
        await refresh();
        announce(typeof doneText === "function" ? doneText(result) : doneText);
        after(result);
      },
    });
  };
  wire("acknowledge", () => ({ method: "POST", url: `${base}/acknowledge` }),
    "Acknowledged: it is yours now. Call the patient and log the call.",
    () => focusFirstField("contact"));
  wire("contact", (form) => ({ method: "POST", url: `${base}/events`,
    body: { kind: "contact_attempt", ...formBody(form) } }), "Call logged.");
  wire("note", (form) => ({ method: "POST", url: `${base}/events`,
    body: { kind: "note", text: "", ...formBody(form) } }), "Note added.");
  wire("assign", (form) => ({ method: "POST", url: `${base}/assign`,
    body: formBody(form, ["assignee_id"]) }), "Assigned.");
  wire("resolve", (form) => ({ method: "POST", url: `${base}/resolve`,
    body: { note: "", ...formBody(form) } }), "Resolved.", () => {
    const title = document.getElementById("esc-title");
    if (title) {
      title.setAttribute("tabindex", "-1");
      title.focus();
    }
  });
  wire("raise", (form) => ({ method: "POST", url: "/api/v1/escalations",
    body: formBody(form, ["patient_id", "visit_id"]) }), "Raised.", (result) => {
    // A resolved escalation is not raised again: a new one was opened.
    if (String(result.data.id) !== page.dataset.escalationId) {
      window.location.assign(`/escalations/${result.data.id}`);
    }
  });

  const resolve = page.querySelector('[data-form="resolve"]');
  if (resolve) {
    const disposition = resolve.elements.namedItem("disposition");
    const reasonField = resolve.querySelector("[data-reason-field]");
    const showReason = () => {
      reasonField.hidden = disposition.value !== "no_action_needed";
    };
    disposition.addEventListener("change", showReason);
    resolve.addEventListener("reset", () => window.setTimeout(showReason, 0));
    showReason();
  }
}

function alarmKey(message) {
  return message.why === "call_dropped" ? `${message.escalation_id}-dropped`
    : message.escalation_id;
}

function otherEmergency(message) {
  if (!alarm(alarmKey(message))) return;
  notify(alertTitle(message.why), "An emergency escalation needs your attention now.",
    `/escalations/${message.escalation_id}`, `escalation-${message.escalation_id}`);
  const banner = page.querySelector("[data-other-alert]");
  if (!banner) return;
  const link = document.createElement("a");
  link.href = `/escalations/${message.escalation_id}`;
  link.textContent = "Open it";
  banner.replaceChildren("Another emergency escalation needs attention now. ", link);
  banner.hidden = false;
}

if (page) {
  setUpAlertsButton(document.getElementById("alerts-button"));
  clock.sync(part("summary").dataset.serverNow);
  startTicking(page, clock);
  applyStatus();
  setUpForms();
  connectEvents({
    statusElement: document.getElementById("live-status"),
    onSubscribed: refresh,
    onMessage: (message) => {
      if (!message.type.startsWith("escalation.")) return;
      if (String(message.escalation_id) === page.dataset.escalationId) {
        if (isEmergencyAlert(message)) alarm(alarmKey(message));
        refresh();
      } else if (isEmergencyAlert(message)) {
        otherEmergency(message);
      }
    },
  });
}
