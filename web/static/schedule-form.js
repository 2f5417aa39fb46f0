// The scheduling pages (web/pages/scheduling.py): as the date and time are typed on
// the clinic's clock, show the same moment on the patient's clock, both zones named,
// in the format the server renders ("13:30 EST" today, "Tue 8 Dec, 13:30 EST" on
// another day). Choosing an intake sets its usual length unless one was typed.

function partsIn(instant, zone, options) {
  const parts = {};
  for (const part of new Intl.DateTimeFormat("en-US", { timeZone: zone, ...options })
    .formatToParts(instant)) {
    parts[part.type] = part.value;
  }
  return parts;
}

// Minutes the zone's clock is ahead of UTC at the instant.
function offsetMinutes(instant, zone) {
  const p = partsIn(instant, zone, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  });
  const asUtc = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day),
    Number(p.hour), Number(p.minute));
  return Math.round((asUtc - Math.floor(instant.getTime() / 60000) * 60000) / 60000);
}

// The instant the zone's clocks show dateText timeText; null when not a time, or one
// the clocks skip (the server refuses those too).
export function wallClock(dateText, timeText, zone) {
  const d = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dateText || "");
  const t = /^(\d{2}):(\d{2})/.exec(timeText || "");
  if (!d || !t) return null;
  const naive = Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]), Number(t[1]),
    Number(t[2]));
  let instant = new Date(naive - offsetMinutes(new Date(naive), zone) * 60000);
  instant = new Date(naive - offsetMinutes(instant, zone) * 60000);
  const back = partsIn(instant, zone, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return `${back.hour}:${back.minute}` === `${t[1]}:${t[2]}` ? instant : null;
}

function zoneName(zone) {
  return zone.replaceAll("_", " ");
}

export function moment(instant, zone, now = new Date()) {
  const p = partsIn(instant, zone, {
    weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23",
  });
  const abbreviation = partsIn(instant, zone, { timeZoneName: "short" }).timeZoneName;
  const today = partsIn(now, zone, { day: "numeric", month: "short", year: "numeric" });
  const clock = `${p.hour}:${p.minute} ${abbreviation}`;
  if (p.day === today.day && p.month === today.month && p.year === today.year) return clock;
  const year = p.year === today.year ? "" : ` ${p.year}`;
  return `${p.weekday} ${p.day} ${p.month}${year}, ${clock}`;
}

function line(label, instant, zone) {
  const fragment = document.createDocumentFragment();
  const strong = document.createElement("strong");
  strong.textContent = moment(instant, zone);
  fragment.append(`${label}: `, strong, ` (${zoneName(zone)})`);
  return fragment;
}

function wire(form) {
  const preview = form.querySelector("[data-clinic-zone]");
  const date = form.querySelector("[name=visit_date]");
  const time = form.querySelector("[name=visit_time]");
  const duration = form.querySelector("[name=duration_minutes]");
  const patient = form.querySelector("select[name=patient_id]");
  if (!preview || !date || !time) return;
  const clinicZone = preview.dataset.clinicZone;
  const clinicLine = preview.querySelector("[data-preview=clinic]");
  const patientLine = preview.querySelector("[data-preview=patient]");

  const patientZone = () => {
    if (!patient) return preview.dataset.patientZone || "";
    const chosen = patient.selectedOptions[0];
    return (chosen && chosen.dataset.zone) || "";
  };

  const update = () => {
    const instant = wallClock(date.value, time.value, clinicZone);
    const zone = patientZone();
    if (!instant) {
      clinicLine.textContent = date.value && time.value
        ? `That time does not exist on that day in ${zoneName(clinicZone)}.` : "";
      patientLine.textContent = "";
      return;
    }
    clinicLine.replaceChildren(line("Clinic", instant, clinicZone));
    if (zone) {
      patientLine.replaceChildren(line("The patient", instant, zone));
      patientLine.querySelector("strong").dataset.testid = "patient-time";
    } else {
      patientLine.textContent = "Choose the patient to see the time on their clock.";
    }
  };

  for (const input of [date, time, patient]) {
    if (input) input.addEventListener("input", update);
    if (input) input.addEventListener("change", update);
  }
  let typed = false;
  if (duration) duration.addEventListener("input", () => { typed = true; });
  for (const kind of form.querySelectorAll("input[name=kind]")) {
    kind.addEventListener("change", () => {
      if (duration && !typed && kind.checked) duration.value = kind.dataset.minutes;
    });
  }
}

for (const form of document.querySelectorAll("[data-schedule-form]")) wire(form);
