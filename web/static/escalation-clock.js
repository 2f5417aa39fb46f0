// Live clocks on escalations: time waiting since raised, and time left to the
// acknowledgement deadline (or how long overdue). Counted from the server's clock: the
// page carries the server's "now" (data-server-now), so a wrong clock on the
// coordinator's computer cannot make a deadline look further away than it is.

// The same words as web/escalation_view.py duration_text(), so the server's first
// rendering and the live clock agree.
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  if (total < 60) return `${total} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${String(total % 60).padStart(2, "0")} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export class ServerClock {
  constructor() {
    this.offset = 0;
  }

  // `iso`: the server's time when it rendered (minus half a round trip is not worth it:
  // a few milliseconds on a clock shown in seconds).
  sync(iso) {
    const server = Date.parse(iso || "");
    if (Number.isFinite(server)) this.offset = server - Date.now();
  }

  now() {
    return Date.now() + this.offset;
  }
}

// Updates every clock under `root`; returns the ids of rows that just became overdue.
export function tick(root, now) {
  const overdueNow = [];
  root.querySelectorAll("[data-since]").forEach((element) => {
    const since = Date.parse(element.dataset.since);
    if (Number.isFinite(since)) element.textContent = formatDuration(now - since);
  });
  root.querySelectorAll("[data-due]").forEach((element) => {
    const due = Date.parse(element.dataset.due);
    if (!Number.isFinite(due)) return;
    const left = due - now;
    const overdue = left < 0;
    element.textContent = overdue
      ? `Overdue by ${formatDuration(-left)}`
      : `Acknowledge within ${formatDuration(left)}`;
    const row = element.closest("[data-escalation-id]");
    if (overdue && !element.classList.contains("overdue") && row) {
      overdueNow.push(row.dataset.escalationId);
    }
    element.classList.toggle("overdue", overdue);
    if (row && row.matches("[data-testid='escalation-row']")) {
      row.classList.toggle("is-overdue", overdue);
    }
  });
  return overdueNow;
}

export function startTicking(root, clock, onOverdue = () => {}) {
  const run = () => {
    const ids = tick(root, clock.now());
    if (ids.length) onOverdue(ids);
  };
  run();
  // Aligned to the next whole second, so every clock on the page moves together.
  window.setTimeout(() => {
    run();
    window.setInterval(run, 1000);
  }, 1000 - (clock.now() % 1000));
}
