// A point in time as its reader reads it: the browser's twin of the server's `moment`
// filter (web/rendering.py), so a time a script writes into the page reads like the
// times the server rendered around it: "13:30 EST" today, "Tue 8 Dec, 13:30 EST" on
// another day, "Tue 8 Dec 2026, 13:30 EST" in another year; 24-hour clock, the zone
// named. The zone is the page's (`<body data-time-zone>`: the patient's own for
// patients, the clinic's for staff), never the browser's, and the zone's abbreviations
// come from the server (`data-zone-names`, offset in minutes to name) because the
// browser names many zones only "GMT+1". tests/test_time_format.py holds the two to
// the same output.

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
  "Nov", "Dec"];
const formats = new Map();

function formatter(zone) {
  let found = formats.get(zone);
  if (!found) {
    found = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric",
      month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit",
      hourCycle: "h23", timeZoneName: "longOffset" });
    formats.set(zone, found);
  }
  return found;
}

function validZone(zone) {
  try {
    formatter(zone);
    return zone;
  } catch {
    return "UTC"; // as the server's filter does with a zone it does not know
  }
}

// The instant's wall clock in the zone, and the zone's offset then (minutes east).
function wallClock(at, zone) {
  const parts = {};
  for (const part of formatter(zone).formatToParts(at)) parts[part.type] = part.value;
  const offset = /GMT([+-])(\d{2}):?(\d{2})?/.exec(parts.timeZoneName || "");
  const minutes = offset
    ? (offset[1] === "-" ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3] || 0)) : 0;
  const year = Number(parts.year);
  const month = Number(parts.month);
  const day = Number(parts.day);
  return { year, month, day, hour: parts.hour, minute: parts.minute, offset: minutes,
    weekday: new Date(Date.UTC(year, month - 1, day)).getUTCDay() };
}

// "UTC+5:30" for an offset the server has no name for (its own rule for zones whose
// abbreviation is only numeric, such as "+04").
function offsetName(minutes) {
  if (minutes === 0) return "UTC";
  const sign = minutes < 0 ? "-" : "+";
  const whole = Math.abs(minutes);
  const rest = whole % 60;
  return `UTC${sign}${Math.floor(whole / 60)}${rest ? `:${String(rest).padStart(2, "0")}` : ""}`;
}

// The page's time zone and its names, as base.html declares them.
export function pageZone() {
  const body = typeof document === "undefined" ? null : document.body;
  let names = {};
  try {
    names = JSON.parse((body && body.dataset.zoneNames) || "{}");
  } catch {
    names = {};
  }
  return { zone: (body && body.dataset.timeZone) || "UTC", names };
}

// `value`: an ISO 8601 string (or a Date); `now`: what "today" is measured from.
// "" for nothing or a value that is not a time.
export function moment(value, { zone, names, now } = {}) {
  const at = value instanceof Date ? value : new Date(value || "");
  if (!value || Number.isNaN(at.getTime())) return "";
  const page = zone === undefined ? pageZone() : { zone, names: names || {} };
  const tz = validZone(page.zone);
  const local = wallClock(at, tz);
  const today = wallClock(now === undefined ? new Date() : new Date(now), tz);
  const name = page.names[String(local.offset)] || offsetName(local.offset);
  const clock = `${local.hour}:${local.minute} ${name}`;
  if (local.year === today.year && local.month === today.month && local.day === today.day) {
    return clock;
  }
  const day = `${WEEKDAYS[local.weekday]} ${local.day} ${MONTHS[local.month - 1]}`;
  return `${local.year === today.year ? day : `${day} ${local.year}`}, ${clock}`;
}
