// The coordinator's escalation queue, live: rows come and change as escalation events
// arrive on `/ws/events` (the server renders them: `/coordinator?part=queue`), clocks
// tick every second, Acknowledge is one click, `emergency` sounds an alarm and shows a
// browser notification. Also: the clinic measures' period, and raising by hand.

import { formatDuration, ServerClock, startTicking, tick } from "./escalation-clock.js";
import { alarm, alertTitle, connectEvents, isEmergencyAlert, notify, setUpAlertsButton }
  from "./escalation-alerts.js";
import { formBody, handleForm, plainMessage, send, statusLabels } from "./escalation-api.js";

const section = document.querySelector(".queue-section");
const announcer = document.getElementById("queue-announcer");
const alertRegion = document.getElementById("queue-alert");
const liveStatus = document.getElementById("live-status");
const clock = new ServerClock();
const NEW_ROW_MS = 20_000;
const MEASURES_DELAY_MS = 3000;

function queueList() {
  return document.querySelector("[data-queue-list]");
}

function rows() {
  return [...document.querySelectorAll('[data-testid="escalation-row"]')];
}

function rowById(id) {
  return document.querySelector(
    `[data-testid="escalation-row"][data-escalation-id="${CSS.escape(String(id))}"]`);
}

function announce(region, text) {
  if (!region) return;
  region.textContent = "";
  // Set in a later task so the same words are read again.
  window.setTimeout(() => { region.textContent = text; }, 50);
}

function describe(row) {
  const level = row.querySelector('[data-testid="escalation-level"]');
  return `${level ? level.textContent.trim() : ""} escalation: ${row.dataset.patient}`;
}

function sound(escalationId, why) {
  if (!alarm(why === "call_dropped" ? `${escalationId}-dropped` : escalationId)) return;
  notify(alertTitle(why), "An emergency escalation needs your attention now.",
    `/escalations/${escalationId}`, `escalation-${escalationId}`);
}

// --- reloading the rows ---------------------------------------------------------------

// Where the keyboard focus was, so that a refresh arriving while someone tabs through
// the queue does not throw them back to the top of the page.
function focusedSpot() {
  const active = document.activeElement;
  const row = active && active.closest && active.closest('[data-testid="escalation-row"]');
  if (!row) return null;
  const action = active.dataset.action ? `[data-action="${active.dataset.action}"]`
    : active.getAttribute("href") ? `[href="${CSS.escape(active.getAttribute("href"))}"]` : null;
  return { id: row.dataset.escalationId, action };
}

function restoreFocus(spot) {
  if (!spot) return;
  const row = rowById(spot.id);
  if (!row) return;
  const target = (spot.action && row.querySelector(spot.action)) || row.querySelector("a, button");
  if (target) target.focus({ preventScroll: true });
}

async function load() {
  let response;
  try {
    response = await fetch("/coordinator?part=queue", {
      credentials: "same-origin",
      headers: { Accept: "text/html", "X-Mendwell-Background": "1" } });
  } catch {
    return false;
  }
  if (!response.ok) return false;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
    .querySelector("[data-queue-list]");
  const current = queueList();
  if (!fresh || !current) {
    // Sent to the sign-in page: the session has ended.
    if (response.redirected && liveStatus) {
      liveStatus.dataset.live = "down";
      liveStatus.textContent = "Signed out: reload the page to sign in again.";
    }
    return false;
  }
  const before = new Set(rows().map((row) => row.dataset.escalationId));
  const spot = focusedSpot();
  current.replaceWith(document.adoptNode(fresh));
  clock.sync(fresh.dataset.serverNow);
  tick(fresh, clock.now());
  restoreFocus(spot);
  for (const row of rows()) {
    if (before.has(row.dataset.escalationId)) continue;
    row.classList.add("is-new");
    window.setTimeout(() => {
      const still = rowById(row.dataset.escalationId);
      if (still) still.classList.remove("is-new");
    }, NEW_ROW_MS);
    if (row.dataset.level === "emergency") {
      announce(alertRegion, `New ${describe(row)}. Acknowledge it now.`);
      sound(row.dataset.escalationId, "raised");
    } else {
      announce(announcer, `New ${describe(row)}.`);
    }
  }
  return true;
}

// One request at a time; events that arrive meanwhile ask for one more load after it,
// so a burst of events costs two loads, and the last one sees every change.
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
        await load();
      } while (pending);
    } finally {
      running = null;
    }
  })();
  return running;
}

// Kept from the last load that had them, for rows re-rendered by it.
const rowErrors = new Map();

function showRowError(id, message) {
  const row = rowById(id);
  const slot = row && row.querySelector("[data-row-error]");
  if (!slot) return;
  slot.textContent = message;
  slot.hidden = false;
}

async function acknowledge(button) {
  const row = button.closest('[data-testid="escalation-row"]');
  const id = row.dataset.escalationId;
  button.disabled = true;
  button.textContent = "Acknowledging…";
  const result = await send("POST", `/api/v1/escalations/${encodeURIComponent(id)}/acknowledge`);
  if (result.ok) {
    announce(announcer, `Acknowledged: ${row.dataset.patient}. It is yours now.`);
    await refresh();
    const open = rowById(id) && rowById(id).querySelector('a[href^="/escalations/"]');
    if (open) open.focus({ preventScroll: true });
    return;
  }
  const message = plainMessage(result, statusLabels(section));
  if (result.status === 409) {
    rowErrors.set(id, message);
    await refresh();
  } else {
    button.disabled = false;
    button.textContent = "Acknowledge";
  }
  showRowError(id, rowErrors.get(id) || message);
  rowErrors.delete(id);
}

// --- clinic measures ------------------------------------------------------------------

function measureCell(cell, stats) {
  cell.replaceChildren();
  if (!stats.count) {
    const none = document.createElement("span");
    none.className = "hint";
    none.textContent = "none yet";
    cell.append(none);
    return;
  }
  const minutes = (value) => (value === null ? "—" : formatDuration(value * 60_000));
  [["measure", `median ${minutes(stats.median_minutes)}`],
    ["measure", `90th percentile ${minutes(stats.p90_minutes)}`],
    ["measure hint", `of ${stats.count}`]].forEach(([className, text]) => {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    cell.append(span);
  });
}

function renderMeasures(data, days) {
  document.querySelectorAll("[data-measures-days]").forEach((element) => {
    element.textContent = String(days);
  });
  document.querySelectorAll("[data-measures-body] tr[data-level]").forEach((row) => {
    const level = data.levels[row.dataset.level];
    if (!level) return;
    const cells = row.querySelectorAll("td");
    cells[0].textContent = String(level.raised);
    measureCell(cells[1], level.acknowledge);
    measureCell(cells[2], level.resolve);
  });
}

// Returns a function that reloads the measures quietly (after escalation events).
function setUpMeasures() {
  const form = document.querySelector("[data-measures-form]");
  if (!form) return () => {};
  const select = form.querySelector("select");
  const state = form.querySelector("[data-measures-state]");
  const show = async ({ quiet = false } = {}) => {
    const days = select.value;
    if (!quiet) state.textContent = "Loading…";
    const result = await send("GET", `/api/v1/escalations/measures?days=${encodeURIComponent(days)}`);
    if (!result.ok) {
      if (!quiet) state.textContent = plainMessage(result);
      return;
    }
    renderMeasures(result.data, days);
    if (quiet) return;
    state.textContent = `Showing the last ${days} days.`;
    const url = new URL(window.location.href);
    url.searchParams.set("days", days);
    window.history.replaceState(null, "", url);
  };
  select.addEventListener("change", () => show());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    show();
  });
  let timer = null;
  // The queue comes first: measures follow a few seconds after a burst of events.
  return () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => show({ quiet: true }), MEASURES_DELAY_MS);
  };
}

// --- raising by hand ------------------------------------------------------------------

function setUpRaise() {
  const form = document.querySelector('[data-form="raise"]');
  if (!form) return;
  const doneSlot = form.querySelector("[data-form-done]");
  handleForm(form, {
    request: (f) => ({ method: "POST", url: "/api/v1/escalations",
      body: formBody(f, ["patient_id", "visit_id"]) }),
    messages: { reason: "Choose a reason.", patient_id: "Choose a patient.",
      text: 'Describe what is happening: it is needed when the reason is "Other".' },
    labels: statusLabels(section),
    done: async (result) => {
      form.reset();
      const link = document.createElement("a");
      link.href = `/escalations/${result.data.id}`;
      link.textContent = "Open it";
      doneSlot.replaceChildren(`Raised for ${result.data.patient.name}: it is in the queue. `,
        link);
      await refresh();
    },
  });
  form.addEventListener("input", () => { doneSlot.textContent = ""; });
}

// --- start ----------------------------------------------------------------------------

if (section) {
  setUpAlertsButton(document.getElementById("alerts-button"));
  clock.sync(queueList() && queueList().dataset.serverNow);
  startTicking(section, clock, (ids) => {
    ids.forEach((id) => {
      const row = rowById(id);
      if (row) announce(row.dataset.level === "emergency" ? alertRegion : announcer,
        `Overdue: ${describe(row)}.`);
    });
  });
  section.addEventListener("click", (event) => {
    const button = event.target.closest('[data-action="acknowledge"]');
    if (button && !button.disabled) acknowledge(button);
  });
  const refreshMeasures = setUpMeasures();
  connectEvents({
    statusElement: liveStatus,
    onSubscribed: refresh,
    onMessage: (message) => {
      if (!message.type.startsWith("escalation.")) return;
      if (isEmergencyAlert(message)) sound(message.escalation_id, message.why);
      refresh();
      refreshMeasures();
    },
  });
  setUpRaise();
}
