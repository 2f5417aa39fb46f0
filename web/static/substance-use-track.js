// The patient page's substance-use track toggle: saved at once through
// PUT /api/v1/patients/{id}/substance-use-track. On a refusal or a network failure the
// box goes back to what the server holds, and the status line says so.

const form = document.getElementById("substance-use-track");
if (form) start(form);

function start(form) {
  const box = form.querySelector('input[name="on"]');
  const state = document.getElementById("substance-use-track-state");
  const url = `/api/v1/patients/${form.dataset.patientId}/substance-use-track`;
  form.addEventListener("submit", (event) => event.preventDefault());
  box.addEventListener("change", async () => {
    const on = box.checked;
    box.disabled = true;
    state.textContent = "Saving…";
    try {
      const response = await fetch(url, {
        method: "PUT",
        headers: { "Content-Type": "application/json",
                   "X-CSRF-Token": document.body.dataset.csrf || "" },
        body: JSON.stringify({ on }),
      });
      if (!response.ok) throw new Error(String(response.status));
      state.textContent = on ? "Saved: in the substance-use track." : "Saved: not in the track.";
    } catch {
      box.checked = !on;
      state.textContent = "Not saved. Please try again.";
    } finally {
      box.disabled = false;
    }
  });
}
