// The controlled-substance part of the sign confirmation: a sign or its check refused
// with 409 controlled_substance_requirements (server/controlled.py) keeps the dialog
// open and lists each thing still needed, from the server's `missing`. A missing licence
// or DEA registration links to the prescriber's list of them (a new tab: the note and
// the call stay). The clinic's admins record them, not the prescriber the gate checks;
// when they do, the panel's controlled part follows the change live.

const CREDENTIAL_GAPS = new Set(["not_licensed_in_state", "no_dea_registration_in_state"]);

export function hideControlledGaps(dialog) {
  const box = dialog.querySelector("#sign-dialog-controlled");
  if (box) box.hidden = true;
}

// True when `result` was this refusal and the dialog now shows it.
export function showControlledGaps(dialog, result) {
  const { status, error } = result;
  if (status !== 409 || !error || error.code !== "controlled_substance_requirements") return false;
  const box = dialog.querySelector("#sign-dialog-controlled");
  const list = dialog.querySelector("#sign-dialog-controlled-list");
  if (!box || !list) return false;
  const missing = error.missing || [];
  list.replaceChildren(...missing.map((gap) => {
    const item = document.createElement("li");
    item.dataset.code = gap.code;
    item.textContent = gap.text;
    if (CREDENTIAL_GAPS.has(gap.code) && box.dataset.credentialsUrl) {
      const link = document.createElement("a");
      link.href = box.dataset.credentialsUrl;
      link.target = "_blank";
      link.rel = "noopener";
      link.dataset.testid = "gap-credentials-link";
      link.textContent = "See your licences and DEA registrations";
      const hint = document.createElement("span");
      hint.className = "visually-hidden";
      hint.textContent = " (opens in a new tab)";
      link.append(hint);
      item.append(" ", link, "; an admin records new ones.");
    }
    return item;
  }));
  dialog.querySelector("#sign-dialog-status").textContent = "This note cannot be signed yet.";
  dialog.querySelector("#sign-dialog-confirm").hidden = true;
  dialog.querySelector("#sign-dialog-ready").hidden = true;
  box.hidden = false;
  const cancel = dialog.querySelector("#sign-dialog-cancel");
  if (cancel) cancel.focus();
  if (!dialog.open) dialog.showModal();
  return true;
}
