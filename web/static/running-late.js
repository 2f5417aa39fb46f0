// The patient's notice that the prescriber is running late (set from the prescriber's
// day view). The server renders it when the visit page opens; this keeps it current
// from the events patient-room-events.js hands it (`visit.running_late`), and takes it
// away once the patient is let in or the visit is over. The box is a polite live
// region: a change is read out.

const box = document.getElementById("running-late");
const room = document.querySelector(".visit-room[data-visit-id]");
// The visit has not started: a notice about its start still means something.
const BEFORE_START = ["scheduled", "checked_in", "waiting"];

function show(minutes) {
  if (!minutes) {
    box.replaceChildren();
    return;
  }
  const text = document.createElement("p");
  text.className = "running-late-text";
  text.textContent = `${box.dataset.prescriber} is running about ${minutes} minutes late. ` +
    "Please keep this page open.";
  box.replaceChildren(text);
}

// After a gap in the event stream a notice may have come or gone: read the visit again.
async function reload(visitId) {
  try {
    const response = await fetch(`/api/v1/visits/${encodeURIComponent(visitId)}`, {
      credentials: "same-origin", headers: { "X-Mendwell-Background": "1" } });
    if (!response.ok) return;
    const visit = await response.json();
    show(BEFORE_START.includes(visit.status) ? visit.late_minutes : 0);
  } catch {
    // offline for a moment: the next reconnect reads it again
  }
}

// After a gap in the event stream: read the notice again.
export function onSubscribed() {
  if (box && room) reload(room.dataset.visitId);
}

export function onEvent(message) {
  if (!box || !room || String(message.visit_id) !== room.dataset.visitId) return;
  if (message.type === "visit.running_late") show(message.minutes);
  else if (message.type === "visit.admitted" || message.type === "visit.ended") show(0);
}
