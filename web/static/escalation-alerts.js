// What makes an escalation impossible to miss on a coordinator's screen: the live
// events socket, an alarm sound and a browser notification for `emergency`, and the
// button that turns sound and notifications on (browsers only allow both after a tap,
// so they are never asked for on page load).

import { chime, unlock, unlockOnFirstGesture } from "./alert-sound.js";
import { ReconnectingSocket, socketUrl } from "./reconnecting-socket.js";

const ALARM_REPEAT_MS = 450;
// One escalation raised at `emergency` arrives as two events (raised, and the alert to
// the coordinators): one alarm for both. Re-alerts come minutes apart and sound again.
const SAME_ALARM_MS = 10_000;
const lastAlarm = new Map();

function notificationsOn() {
  return "Notification" in window && Notification.permission === "granted";
}

export function setUpAlertsButton(button) {
  unlockOnFirstGesture();
  if (!button) return;
  const show = () => {
    const on = notificationsOn();
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Sound and alerts on" : "Turn on sound and alerts";
    if ("Notification" in window && Notification.permission === "denied") {
      button.textContent = "Sound on (notifications blocked in the browser settings)";
    }
  };
  button.addEventListener("click", async () => {
    unlock();
    chime(); // so the person hears what an alert sounds like
    if ("Notification" in window && Notification.permission === "default") {
      try {
        await Notification.requestPermission();
      } catch {
        // older Safari: callback form only; notifications stay off
      }
    }
    show();
  });
  show();
}

// Three quick chimes: an emergency, not a patient arriving in the waiting room.
// `key`: the escalation's id (or the id and what happened, for a new kind of alert).
export function alarm(key) {
  const name = String(key);
  const now = Date.now();
  if (now - (lastAlarm.get(name) || 0) < SAME_ALARM_MS) return false;
  lastAlarm.set(name, now);
  [0, 1, 2].forEach((index) => window.setTimeout(chime, index * ALARM_REPEAT_MS));
  return true;
}

// No clinical content: the notification says that something needs attention, as the
// emails do; the screen behind it has the details.
export function notify(title, body, url, tag) {
  if (!notificationsOn()) return;
  try {
    const note = new Notification(title, { body, tag, requireInteraction: true });
    note.addEventListener("click", () => {
      window.focus();
      if (url) window.location.assign(url);
      note.close();
    });
  } catch {
    // Some mobile browsers only notify from a service worker; the sound still plays.
  }
}

// What a notification says, by the alert's `why` (escalation/notify.py).
export function alertTitle(why) {
  if (why === "realert" || why === "backup") return "Emergency still not acknowledged";
  if (why === "call_dropped") return "Emergency: the video call dropped";
  return "Emergency escalation";
}

export function isEmergencyAlert(message) {
  return message.level === "emergency" &&
    (message.type === "escalation.raised" || message.type === "escalation.alert");
}

// The live events socket, reconnecting with backoff (reconnecting-socket.js), with its
// state shown in `statusElement`. `onSubscribed` runs each time the server confirms the
// subscription, the first time included: anything that changed between rendering the
// page (or losing the socket) and that moment came without an event, so the page
// reloads what it shows.
export function connectEvents({ statusElement, onMessage, onSubscribed }) {
  const socket = new ReconnectingSocket(socketUrl("/ws/events"));
  const setStatus = (state, text) => {
    if (!statusElement) return;
    statusElement.dataset.live = state;
    statusElement.textContent = text;
  };
  socket.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type === "subscribed") {
      socket.markHealthy();
      setStatus("up", "Live");
      onSubscribed();
      return;
    }
    onMessage(message);
  });
  socket.addEventListener("down", () => {
    setStatus("down", "Live updates paused, reconnecting…");
  });
  socket.addEventListener("final", () => {
    setStatus("down", "Live updates stopped: reload the page or sign in again.");
  });
  socket.start();
  return socket;
}
