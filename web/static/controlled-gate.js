// The controlled-substance part of the sign confirmation: a sign or its check refused
// with 409 controlled_substance_requirements (server/controlled.py) keeps the dialog
// open and lists each thing still needed, from the server's `missing`.

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
