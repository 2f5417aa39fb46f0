// Automatic logoff (HIPAA): warn before the idle timeout, let the person stay signed
// in, and leave the page once the server has ended the session.
const body = document.body;
const dialog = document.getElementById("idle-warning");
const countdown = document.getElementById("idle-countdown");
const stay = document.getElementById("idle-stay");
const warningMs = Number(body.dataset.idleWarning || 120) * 1000;
let expiresAt = Date.parse(body.dataset.idleExpires || "");
let timer = null;

function schedule() {
  clearTimeout(timer);
  if (!Number.isFinite(expiresAt)) return;
  const left = expiresAt - Date.now();
  if (left <= 0) {
    window.location.assign("/login?reason=idle");
  } else if (left <= warningMs) {
    if (!dialog.open) dialog.showModal();
    const seconds = Math.ceil(left / 1000);
    countdown.textContent = seconds > 90 ? `${Math.ceil(seconds / 60)} minutes` : `${seconds} seconds`;
    timer = setTimeout(schedule, 1000);
  } else {
    timer = setTimeout(schedule, Math.min(left - warningMs, 60_000));
  }
}

async function keepAlive() {
  const response = await fetch("/api/v1/session", { credentials: "same-origin" });
  if (!response.ok) {
    window.location.assign("/login?reason=idle");
    return;
  }
  const data = await response.json();
  expiresAt = Date.parse(data.idle_expires_at);
  if (dialog.open) dialog.close();
  schedule();
}

// Other modules report server activity (an autosave, say) so the warning moves too.
window.addEventListener("mendwell:session-active", (event) => {
  if (event.detail && event.detail.idleExpiresAt) {
    expiresAt = Date.parse(event.detail.idleExpiresAt);
    schedule();
  }
});
stay.addEventListener("click", keepAlive);
schedule();
