// The patient's answer about a guest invited into their visit (42 CFR Part 2: the guest
// may be let in only once the patient agrees). "I agree" posts the consent to the API and
// stays in the room; "Not now" hides the question until the page is opened again. A guest
// invited while the patient waits brings the question in live (`visit.guest_invited`, from
// patient-room-events.js).

const room = document.querySelector(".visit-room[data-visit-id]");
const declined = new Set();

function holder() {
  return document.getElementById("guest-consent");
}

function say(text) {
  const status = holder()?.querySelector("[data-guest-consent-status]");
  if (!status) return;
  status.textContent = "";
  window.setTimeout(() => { status.textContent = text; }, 50);
}

function wire() {
  const box = holder();
  if (!box) return;
  for (const section of box.querySelectorAll("[data-guest-id]")) {
    if (declined.has(section.dataset.guestId)) section.hidden = true;
  }
  for (const form of box.querySelectorAll("[data-guest-consent-form]")) {
    const section = form.closest("[data-guest-id]");
    const guestId = section.dataset.guestId;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const response = await fetch(
          `/api/v1/visits/${encodeURIComponent(room.dataset.visitId)}/guests/` +
          `${encodeURIComponent(guestId)}/consent`,
          { method: "POST", credentials: "same-origin",
            headers: { "X-CSRF-Token": document.body.dataset.csrf } });
        if (!response.ok) throw new Error(`status ${response.status}`);
        const name = section.querySelector("h2").textContent.replace(/^.* invited /, "")
          .replace(/ to join your visit$/, "");
        section.replaceChildren(Object.assign(document.createElement("p"), {
          className: "notice",
          textContent: `You agreed. ${name} can join when your clinician lets them in.`,
        }));
        section.dataset.answered = "yes";
        say(`You agreed to ${name} joining.`);
      } catch {
        button.disabled = false;
        say("That did not go through. Check your connection and try again.");
      }
    });
    form.querySelector("[data-decline]").addEventListener("click", () => {
      declined.add(guestId);
      section.hidden = true;
      say("You said not now. Your visit goes ahead without them.");
    });
  }
}

async function reload() {
  if (!room || !holder()) return;
  try {
    const response = await fetch(
      `/visits/${encodeURIComponent(room.dataset.visitId)}?part=guest-consent`,
      { credentials: "same-origin", headers: { "X-Mendwell-Background": "1" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
      .getElementById("guest-consent");
    if (!fresh) return;
    // Keep the answers already shown in place; bring in new questions.
    const box = holder();
    const answered = new Set([...box.querySelectorAll('[data-answered="yes"]')]
      .map((s) => s.dataset.guestId));
    for (const section of fresh.querySelectorAll("[data-guest-id]")) {
      if (answered.has(section.dataset.guestId) ||
          box.querySelector(`[data-guest-id="${CSS.escape(section.dataset.guestId)}"]`)) {
        continue;
      }
      box.insertBefore(document.importNode(section, true),
        box.querySelector("[data-guest-consent-status]"));
    }
    wire();
  } catch {
    // offline for a moment: the next event or reconnect brings it
  }
}

export function onSubscribed() {
  reload();
}

export function onEvent(message) {
  if (!room || String(message.visit_id) !== room.dataset.visitId) return;
  if (message.type === "visit.guest_invited") reload();
}

wire();
