// Offers the device's own time zone on the time-zone page: one tap fills it in.
const hint = document.getElementById("device-zone");
const input = document.getElementById("timezone");
let zone = "";
try {
  zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
} catch {
  zone = ""; // an old browser: the person types or picks the zone
}
if (hint && input && zone && zone !== input.value) {
  const button = hint.querySelector("button");
  button.textContent = zone.replaceAll("_", " ");
  button.dataset.zone = zone;
  button.addEventListener("click", () => {
    input.value = zone;
    input.focus();
  });
  hint.hidden = false;
}
