// The prescriber's day, live: cards change as patients start waiting or visits change
// state (`/ws/events`), with a chime and a browser notification when someone starts to
// wait. Notifications are only asked for from a button, never on page load.
// A card's emergency or urgent badge links to its escalation and goes as soon as that
// escalation is resolved; the "Addendum needed" list at the top follows its tasks.
// What a card shows beyond its status (the wait, the check-in's level, flags and scores,
// Admit) comes from the server: the page is fetched again and each card that the server
// now renders differently is replaced (events carry ids and states, never scores).
// "Running late" posts to the API; the patient's waiting room shows it.
// "No-show" shows on a card once the visit's start has passed while the patient has not
// joined (the server renders it, and the clock here reveals it when the time comes); it
// asks in the card (never confirm(), which blocks the page and reads badly on a phone),
// posts to the API, and the card comes back from the server with the rebooking link.

import { chime, unlock, unlockOnFirstGesture } from "./alert-sound.js";
import { ReconnectingSocket, socketUrl } from "./reconnecting-socket.js";

const root = document.querySelector("[data-day-live]");
const announcer = document.getElementById("day-announcer");
const liveStatus = document.getElementById("live-status");
const alertsButton = document.getElementById("alerts-button");
const alertsHint = document.getElementById("alerts-hint");

function labels() {
  const list = document.querySelector("[data-status-labels]");
  try {
    return JSON.parse(list ? list.dataset.statusLabels : "{}");
  } catch {
    return {};
  }
}

function row(visitId) {
  return document.querySelector(`.visit[data-visit-id="${CSS.escape(String(visitId))}"]`);
}

function announce(text) {
  announcer.textContent = "";
  // A fresh text node each time so that the same words are read again.
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

function notificationsOn() {
  return "Notification" in window && Notification.permission === "granted";
}

// One button turns on both kinds of alert: it unlocks sound (browsers only allow it
// after a tap) and asks for notifications. Blocked notifications still leave sound.
function showAlertsButton(soundOn) {
  if (!alertsButton) return;
  const blocked = "Notification" in window && Notification.permission === "denied";
  if (notificationsOn() && soundOn) {
    alertsButton.textContent = "Alerts on";
    alertsButton.disabled = true;
  } else if (soundOn && (blocked || !("Notification" in window))) {
    alertsButton.textContent = "Sound alerts on";
    alertsButton.disabled = true;
  }
  if (alertsHint) {
    alertsHint.hidden = !blocked;
    alertsHint.textContent = "Notifications are blocked in this browser's settings, so " +
      "alerts are sound only while this page is open.";
  }
}

async function enableAlerts() {
  unlock();
  chime();
  if ("Notification" in window && Notification.permission === "default") {
    await Notification.requestPermission();
  }
  showAlertsButton(true);
}

function setStatus(visitId, status) {
  const li = row(visitId);
  if (!li) return null;
  const before = li.dataset.status;
  li.dataset.status = status;
  const badge = li.querySelector(".status");
  if (badge) {
    badge.className = `status status-${status}`;
    badge.textContent = labels()[status] || status;
  }
  li.classList.toggle("just-waiting", status === "waiting");
  return before;
}

function someoneWaiting(visitId) {
  const li = row(visitId);
  const name = li ? li.dataset.name : "A patient";
  const text = `${name} is in the waiting room.`;
  announce(text);
  chime();
  if (notificationsOn()) {
    const note = new Notification("Patient waiting", { body: text, tag: `visit-${visitId}` });
    note.addEventListener("click", () => {
      window.focus();
      window.location.assign(`/visits/${visitId}`);
    });
  }
}

// Each card as the server last rendered it: a card is replaced only when that changes,
// so an open "Running late" menu or a focused button elsewhere stays as it is.
const rendered = new Map();

function cards(container) {
  return [...container.querySelectorAll(".visit[data-visit-id]")];
}

function remember(container) {
  rendered.clear();
  for (const card of cards(container)) rendered.set(card.dataset.visitId, card.outerHTML);
}

function takeList(current, next) {
  const now = cards(current);
  const fresh = cards(next);
  const sameOrder = now.length === fresh.length &&
    now.every((card, index) => card.dataset.visitId === fresh[index].dataset.visitId);
  if (!sameOrder) {
    current.replaceChildren(...next.childNodes);
    remember(current);
    return;
  }
  fresh.forEach((card, index) => {
    const id = card.dataset.visitId;
    if (rendered.get(id) === card.outerHTML) return;
    rendered.set(id, card.outerHTML);
    now[index].replaceWith(document.importNode(card, true));
  });
  tickWaits();
}

// After a gap in the event stream, the page itself is the truth: fetch it again and
// take the cards from it (also picks up visits booked since the page was loaded).
async function refreshRows() {
  const response = await fetch(window.location.pathname, { credentials: "same-origin",
    headers: { Accept: "text/html", "X-Mendwell-Background": "1" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const list = document.querySelector("[data-day-list]");
  const nextList = fresh.querySelector("[data-day-list]");
  if (list && nextList) takeList(list, nextList);
  const addenda = document.querySelector("[data-addenda-due]");
  const nextAddenda = fresh.querySelector("[data-addenda-due]");
  if (addenda && nextAddenda) addenda.replaceChildren(...nextAddenda.childNodes);
}

// "Waiting 4 min", counting up from when the patient's stay in the waiting room began.
function waitText(since) {
  const minutes = Math.max(0, Math.floor((Date.now() - since) / 60000));
  if (minutes < 60) return `Waiting ${minutes} min`;
  return `Waiting ${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function revealNoShows() {
  for (const box of document.querySelectorAll("[data-no-show][hidden]")) {
    const from = Date.parse(box.dataset.from);
    if (Number.isFinite(from) && Date.now() >= from) box.hidden = false;
  }
}

function tickWaits() {
  revealNoShows();
  for (const span of document.querySelectorAll('[data-testid="wait-time"][data-since]')) {
    const since = Date.parse(span.dataset.since);
    if (!Number.isFinite(since)) continue;
    const text = waitText(since);
    if (span.textContent !== text) span.textContent = text;
  }
}

async function runningLate(button) {
  const card = button.closest(".visit[data-visit-id]");
  if (!card) return;
  const minutes = Number(button.dataset.lateMinutes);
  const name = card.dataset.name || "The patient";
  button.disabled = true;
  try {
    const response = await fetch(
      `/api/v1/visits/${encodeURIComponent(card.dataset.visitId)}/running-late`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json",
          "X-CSRF-Token": document.body.dataset.csrf || "" },
        body: JSON.stringify({ minutes }) });
    if (!response.ok) {
      let message = "The notice could not be sent.";
      try {
        message = (await response.json()).error.message || message;
      } catch {
        // keep the plain message
      }
      announce(message);
      return;
    }
    announce(minutes ? `${name} now sees that you are running about ${minutes} minutes late.`
      : `The running-late notice for ${name} is taken back.`);
    await refreshRows();
  } catch {
    announce("The notice could not be sent: check the connection and try again.");
  } finally {
    button.disabled = false;
  }
}

function askNoShow(button, open) {
  const box = button.closest("[data-no-show]");
  const ask = box.querySelector("[data-no-show-ask]");
  const confirmBox = box.querySelector(".no-show-confirm");
  confirmBox.hidden = !open;
  ask.setAttribute("aria-expanded", String(open));
  if (open) confirmBox.querySelector("[data-no-show-yes]").focus();
  else ask.focus();
}

async function noShow(button) {
  const card = button.closest(".visit[data-visit-id]");
  if (!card) return;
  const id = card.dataset.visitId;
  const name = card.dataset.name || "The patient";
  const error = card.querySelector("[data-no-show-error]");
  button.disabled = true;
  error.hidden = true;
  let message = "The no-show could not be recorded: check the connection and try again.";
  try {
    const response = await fetch(`/api/v1/visits/${encodeURIComponent(id)}/no-show`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json",
        "X-CSRF-Token": document.body.dataset.csrf || "" },
      body: "{}" });
    if (response.ok) {
      announce(`No-show recorded for ${name}.`);
      await refreshRows();
      row(id)?.querySelector('[data-testid="no-show-rebook"]')?.focus();
      return;
    }
    try {
      message = (await response.json()).error.message || message;
    } catch {
      // keep the plain message
    }
  } catch {
    // the network: keep the plain message
  }
  button.disabled = false;
  error.textContent = message;
  error.hidden = false;
}

// The escalation is resolved: its badge goes at once (no round trip), then the order
// of the day is read again (the patient no longer belongs at the top).
function escalationResolved(escalationId) {
  const badges = document.querySelectorAll(
    `[data-testid="safety-flag"][data-escalation-id="${CSS.escape(String(escalationId))}"]`);
  if (!badges.length) return;
  for (const badge of badges) badge.remove();
  announce("An escalation for one of today's patients was resolved.");
  refreshRows();
}

function addendumDone(taskId) {
  const item = document.querySelector(
    `[data-testid="addendum-due"][data-task-id="${CSS.escape(String(taskId))}"]`);
  if (item) item.remove();
  refreshRows();
}

// The status each event leaves a visit in (server/visits.py emits these).
const STATUS_OF = {
  "visit.waiting": () => "waiting",
  "visit.admitted": () => "in_progress",
  "visit.left_waiting": (message) => message.status,
  "visit.ended": (message) => message.status,
  "visit.status": (message) => message.status,
};

function onEvent(message) {
  if (message.type === "escalation.updated" && message.status === "resolved") {
    escalationResolved(message.escalation_id);
    return;
  }
  if (message.type === "note.addendum_needed") {
    refreshRows();
    announce("A check-in after a signed note needs an addendum with a safety assessment.");
    chime();
    return;
  }
  if (message.type === "note.addendum_task_done") {
    addendumDone(message.task_id);
    return;
  }
  if (message.type === "escalation.raised" && ["urgent", "emergency"].includes(message.level)) {
    // A worrying check-in moves its patient to the top of the day: re-read the order.
    refreshRows();
    announce(`Safety alert: ${message.level} escalation raised for one of today's patients.`);
    chime();
    return;
  }
  if (!message.visit_id) return;
  if (["visit.created", "visit.rescheduled", "escalation.raised", "visit.running_late",
    "checkin.completed", "checkin.triaged"].includes(message.type)) {
    // The card's check-in (level, flags, scores) is read from the server, never from
    // the event.
    refreshRows();
    return;
  }
  if (message.type === "visit.waiting_too_long") {
    const li = row(message.visit_id);
    announce(`${li ? li.dataset.name : "A patient"} has been waiting a long time.`);
    chime();
    return;
  }
  const statusOf = STATUS_OF[message.type];
  const status = statusOf && statusOf(message);
  if (!status) return;
  if (!row(message.visit_id)) {
    refreshRows().then(() => {
      if (status === "waiting") someoneWaiting(message.visit_id);
    });
    return;
  }
  const before = setStatus(message.visit_id, status);
  if (status === "waiting" && before !== "waiting") someoneWaiting(message.visit_id);
  // The wait time and Admit (or their going) come with the card from the server.
  if (before !== status) refreshRows();
}

if (root) {
  const list = document.querySelector("[data-day-list]");
  if (list) {
    remember(list);
    list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-late-minutes]");
      if (button) runningLate(button);
      const noShowButton = event.target.closest("button[data-no-show-ask], " +
        "button[data-no-show-no], button[data-no-show-yes]");
      if (!noShowButton) return;
      if (noShowButton.matches("[data-no-show-yes]")) noShow(noShowButton);
      else askNoShow(noShowButton, noShowButton.matches("[data-no-show-ask]") &&
        noShowButton.getAttribute("aria-expanded") !== "true");
    });
  }
  tickWaits();
  window.setInterval(tickWaits, 15_000);
  unlockOnFirstGesture();
  showAlertsButton(false);
  if (alertsButton) alertsButton.addEventListener("click", enableAlerts);
  const socket = new ReconnectingSocket(socketUrl("/ws/events"));
  socket.addEventListener("open", () => {
    socket.markHealthy();
    liveStatus.dataset.live = "up";
    liveStatus.textContent = "Live";
  });
  socket.addEventListener("down", () => {
    liveStatus.dataset.live = "down";
    liveStatus.textContent = "Live updates paused, reconnecting…";
  });
  socket.addEventListener("final", () => {
    liveStatus.dataset.live = "down";
    liveStatus.textContent = "Live updates stopped: reload the page or sign in again.";
  });
  socket.addEventListener("message", (event) => {
    // Events sent between rendering the page and subscribing were missed: catch up.
    if (event.detail.type === "subscribed") refreshRows();
    else onEvent(event.detail);
  });
  socket.start();
}
