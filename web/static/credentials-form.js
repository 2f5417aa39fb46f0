// The licences and DEA registrations form (web/templates/credentials.html): "Add another
// state" adds a blank row here, without the round trip the page makes without
// JavaScript, and a row added here can be taken away again. Saving stays a plain post.

const form = document.getElementById("credentials-form");
const rows = document.getElementById("credential-rows");
const template = document.getElementById("credential-row-template");
let added = 0;

function addRow() {
  added += 1;
  const fresh = template.content.firstElementChild.cloneNode(true);
  fresh.removeAttribute("data-template");
  // The template's ids say "new"; each added row gets its own.
  for (const element of fresh.querySelectorAll("[id], [for], [aria-describedby]")) {
    for (const name of ["id", "for", "aria-describedby"]) {
      const value = element.getAttribute(name);
      if (value) element.setAttribute(name, value.replaceAll("cred-new-", `cred-added${added}-`));
    }
  }
  const remove = fresh.querySelector("[data-new-row-remove]");
  if (remove) remove.hidden = false;
  rows.append(fresh);
  fresh.querySelector("select").focus();
}

if (form && rows && template) {
  form.querySelector('[name="add"]').addEventListener("click", (event) => {
    event.preventDefault();
    addRow();
  });
  rows.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove-row]");
    if (!button) return;
    const row = button.closest(".credential-row");
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    const focus = next ? next.querySelector("select") : form.querySelector('[name="add"]');
    if (focus) focus.focus();
  });
  // The legend names the state chosen, so a screen reader's list of groups reads well.
  rows.addEventListener("change", (event) => {
    if (event.target.name !== "state") return;
    const legend = event.target.closest(".credential-row").querySelector("legend");
    const chosen = event.target.selectedOptions[0];
    legend.textContent = event.target.value && chosen
      ? chosen.textContent.replace(/ \([A-Z]{2}\)$/, "") : "New state";
  });
}
