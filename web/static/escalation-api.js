// Sending the escalation forms to the JSON API, and showing what went wrong next to
// the field it concerns, in plain words.

const NETWORK_MESSAGE = "Could not reach Mendwell. Check the connection and try again.";

// The API's messages name fields and codes for programs; people get these instead.
const FIELD_MESSAGES = {
  outcome: "Choose what happened on the call.",
  text: "Write what happened.",
  note: "Write a resolution note: what was arranged and why.",
  reason: "Say why no action is needed.",
  disposition: "Choose the outcome.",
  assignee_id: "Choose a prescriber or coordinator on this patient's care team.",
  patient_id: "Choose a patient.",
  level: "Choose a level.",
};

export function csrfToken() {
  return document.body.dataset.csrf || "";
}

// Resolves to { ok, status, data, error: { code, message, field, status? } }.
export async function send(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken(),
        Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, data: null, error: { message: NETWORK_MESSAGE } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) return { ok: true, status: response.status, data, error: null };
  const error = (data && data.error) || { message: `The server answered ${response.status}.` };
  return { ok: false, status: response.status, data, error };
}

export function statusLabels(root) {
  try {
    return JSON.parse(root.dataset.statusLabels || "{}");
  } catch {
    return {};
  }
}

// What to tell a person about a failed request.
export function plainMessage(result, labels = {}, messages = {}) {
  const { status, error } = result;

  if (status === 0) return error.message;
  if (status === 401) return "You have been signed out. Reload the page and sign in again.";
  if (status === 403 && error.code === "csrf_failed") {
    return "This page has expired. Reload it and try again.";
  }
  if (status === 403) return "You are not allowed to do this for this patient.";
  if (status === 404) return "This escalation no longer exists.";
  if (status === 409 && error.status) {
    const state = labels[error.status] || error.status;
    return `Not possible now: this escalation is "${state}". Someone may have just acted on ` +
      "it; the page now shows its current state.";
  }
  if (status === 422 && error.field && messages[error.field]) return messages[error.field];
  if (status === 422 && error.field && FIELD_MESSAGES[error.field]) {
    // The server's own words when they are already plain ("Write a resolution note.").
    return /must be|is required|not a known field|:/.test(error.message || "")
      ? FIELD_MESSAGES[error.field] : error.message;
  }
  if (status === 429) return "Too many requests: wait a moment and try again.";
  return error.message || "Something went wrong. Try again.";
}

export function clearErrors(form) {
  form.querySelectorAll("[data-error-for]").forEach((element) => {
    element.textContent = "";
    element.hidden = true;
  });
  form.querySelectorAll("[aria-invalid]").forEach((field) => field.removeAttribute("aria-invalid"));
}

// Shows `message` next to the field named `field` (or under the form), and moves focus
// to the field so a keyboard or screen reader user lands where the problem is.
export function showError(form, field, message) {
  const slot = (field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`)) ||
    form.querySelector('[data-error-for="form"]');
  if (!slot) return;
  slot.textContent = message;
  slot.hidden = false;
  const input = field && form.elements.namedItem(field);
  const target = input instanceof RadioNodeList ? input[0] : input;
  if (target && typeof target.focus === "function") {
    target.setAttribute("aria-invalid", "true");
    target.focus();
  } else {
    slot.setAttribute("tabindex", "-1");
    slot.focus();
  }
}

// The form's fields as an object: empty fields left out, ids as numbers.
export function formBody(form, numeric = []) {
  const body = {};
  new FormData(form).forEach((value, key) => {
    const text = String(value).trim();
    if (text === "") return;
    body[key] = numeric.includes(key) ? Number(text) : text;
  });
  return body;
}

// The required fields left empty (by name), in the form's order; fields inside a
// hidden part of the form do not count.
function missingFields(form) {
  const data = new FormData(form);
  const names = [];
  for (const field of form.elements) {
    if (!field.required || !field.name || names.includes(field.name)) continue;
    if (field.closest("[hidden]")) continue;
    if (String(data.get(field.name) || "").trim() === "") names.push(field.name);
  }
  return names;
}

// Wires a form: on submit, `request(form)` returns { method, url, body }; the result
// goes to `done(result)` when it worked, else its message is shown at its field.
export function handleForm(form, { request, done, labels = {}, messages = {},
  onConflict = () => {} }) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector('[type="submit"]');
    if (button && button.disabled) return;
    clearErrors(form);
    // Every empty required field at once, in plain words, before asking the server
    // (which checks again, and answers one field at a time).
    const missing = missingFields(form);
    if (missing.length) {
      const words = { ...FIELD_MESSAGES, ...messages };
      missing.slice().reverse().forEach((name) => {
        showError(form, name, words[name] || "Fill this in.");
      });
      return;
    }
    const { method, url, body } = request(form);
    const idle = button ? button.textContent : "";
    if (button) {
      button.disabled = true;
      button.textContent = "Sending…";
    }
    const result = await send(method, url, body);
    if (button) {
      button.disabled = false;
      button.textContent = idle;
    }
    if (result.ok) {
      await done(result);
      return;
    }
    // A 409 that names a field is a rule the request did not meet yet (an emergency
    // closes once the patient was reached): shown at that field, like a 422. A 409
    // with a status is a state someone else changed: the page catches up.
    const fieldRule = result.status === 422 || (result.status === 409 && !result.error.status);
    const field = fieldRule ? result.error.field : null;
    const message = plainMessage(result, labels, messages);
    showError(form, field, message);
    if (result.status === 409 && result.error.status) onConflict(result, message);
  });
}
