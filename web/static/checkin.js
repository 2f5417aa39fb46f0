// The pre-visit check-in. The page arrives with every question rendered by the server
// and the saved draft already filled in; this module runs the flow:
// - one question per screen on a phone, one part per screen on a wide window, with
//   back and next that never lose an answer (the answers live in the form itself);
// - the C-SSRS screener right after PHQ-9 item 9 when that is above 0, with its skip
//   logic (CLINICAL.md); once shown it stays, so an answer given is never dropped;
// - a draft saved after every answer (debounced) and when the page is hidden, so
//   nothing typed is lost and the server triages risky answers at once;
// - the crisis resources as soon as the server says the answers are urgent or an
//   emergency, kept on screen while the patient carries on.

const SAVE_DELAY_MS = 300;
const RETRY_MS = 5000;
const SESSION_REFRESH_MS = 60_000;
const LEVELS = ["none", "review", "step_up", "urgent", "emergency"];
const CRISIS_LEVELS = new Set(["urgent", "emergency"]);
const ITEM9 = "responses.phq9.answers.8";

const form = document.getElementById("checkin-form");
if (form) start(form);

function start(form) {
  const url = `/api/v1/visits/${form.dataset.visitId}/checkin`;
  const csrf = document.body.dataset.csrf || "";
  const wide = window.matchMedia("(min-width: 48rem)");
  const back = document.getElementById("checkin-back");
  const next = document.getElementById("checkin-next");
  const progressText = document.getElementById("progress-text");
  const progressBar = document.getElementById("progress-bar");
  const saveState = document.getElementById("save-state");
  const formError = document.getElementById("form-error");
  const crisis = document.getElementById("crisis-resources");
  const crisisStrip = document.getElementById("crisis-strip");
  const done = document.getElementById("checkin-done");
  const questions = [...form.querySelectorAll(".q")];

  let cssrsTriggered = form.dataset.cssrsShown === "1";
  let current = null;           // the first question of the screen on show
  let dirty = false;            // answers changed since the last save was sent
  let saveTimer = null;
  let inFlight = false;
  let submitted = false;
  let lastSessionRefresh = Date.now();
  // The emergency information goes into the draft only once the patient has worked on
  // it here: last visit's address must not be stored as "where I am" unconfirmed.
  const touched = new Set([...form.querySelectorAll(".q[data-group]:not([data-prefilled])")]
    .map((q) => q.dataset.group));

  // --- reading the form -----------------------------------------------------------

  const named = (name) => `[name="${CSS.escape(name)}"]`;
  const checkedValue = (name) => form.querySelector(`input${named(name)}:checked`)?.value ?? null;
  const checkedValues = (name) =>
    [...form.querySelectorAll(`input${named(name)}:checked`)].map((input) => input.value);
  const text = (name) => (form.querySelector(named(name))?.value ?? "").trim();

  function parseAnswer(raw) {
    if (raw === null) return null;
    if (raw === "true") return true;
    if (raw === "false") return false;
    return Number(raw);
  }

  function cssrsNeeded() {
    const item9 = checkedValue(ITEM9);
    if (item9 !== null && Number(item9) > 0) cssrsTriggered = true;
    return cssrsTriggered;
  }

  function condition(spec, equal) {
    const at = spec.lastIndexOf("=");
    const actual = checkedValue(spec.slice(0, at));
    const value = spec.slice(at + 1);
    return equal ? actual === value : actual !== null && actual !== value;
  }

  function askedBySkipLogic(q) {
    if (q.dataset.askedIf && !condition(q.dataset.askedIf, true)) return false;
    if (q.dataset.askedUnless && !condition(q.dataset.askedUnless, false)) return false;
    return true;
  }

  function isAsked(q) {
    const part = q.closest(".part");
    if (part.dataset.adaptive === "cssrs" && !cssrsNeeded()) return false;
    return askedBySkipLogic(q);
  }

  // --- the body, exactly as the API documents it ----------------------------------

  function responses() {
    const out = {};
    for (const q of questions) {
      const name = q.dataset.field;
      if (!name.startsWith("responses.")) continue;
      const [, instrument, kind, key] = name.split(".");
      if (instrument === "cssrs" && !cssrsNeeded()) continue;
      const value = parseAnswer(checkedValue(name));
      const response = (out[instrument] ??= { answers: instrument === "cssrs" ? {} : [] });
      if (kind === "difficulty") {
        if (value !== null) response.difficulty = value;
      } else if (instrument === "cssrs") {
        // Unasked questions are sent as null: an answer left over from before q2 or q6
        // changed to "no" was not given to a question the patient saw.
        response.answers[key] = askedBySkipLogic(q) ? value : null;
      } else {
        response.answers[Number(key)] = value;
      }
    }
    for (const [instrument, response] of Object.entries(out)) {
      const given = Object.values(response.answers).some((v) => v !== null) ||
        response.difficulty !== undefined;
      if (!given) delete out[instrument];
    }
    return out;
  }

  function sideEffects() {
    return checkedValues("side_effects.effect").map((effect) => {
      const item = { effect, severity: checkedValue(`side_effects.${effect}.severity`) };
      const details = text(`side_effects.${effect}.details`);
      if (details) item.details = details;
      return item;
    });
  }

  function missedDoses() {
    const days = checkedValue("missed_doses.days_missed");
    if (days === null) return null;
    const missed = { days_missed: Number(days), reasons: [] };
    if (days !== "0") {
      missed.reasons = checkedValues("missed_doses.reasons");
      const details = text("missed_doses.details");
      if (details) missed.details = details;
    }
    return missed;
  }

  function hours() {
    const raw = text("sleep.hours");
    const value = Number(raw);
    return raw !== "" && Number.isFinite(value) ? value : null;
  }

  function sleep() {
    const found = { hours: hours(), quality: checkedValue("sleep.quality") };
    return found.hours === null && found.quality === null ? null : found;
  }

  function substanceUse() {
    const cravings = checkedValue("substance_use.cravings");
    const used = parseAnswer(checkedValue("substance_use.used_since_last_visit"));
    if (cravings === null && used === null) return null;
    const use = { cravings: cravings === null ? null : Number(cravings),
                  used_since_last_visit: used };
    if (used === true) {
      use.substances = checkedValues("substance_use.substances");
      const details = text("substance_use.details");
      if (details) use.details = details;
    }
    return use;
  }

  function sex() {
    if (!form.querySelector(named("sex"))) return form.dataset.prefillSex || null;
    return checkedValue("sex") || null;
  }

  function body(final) {
    const data = { responses: responses(), sex: sex() };
    if (final || touched.has("location.address")) {
      const address = text("location.address");
      const phone = text("callback_phone");
      if (address) data.location = { address };
      if (phone) data.callback_phone = phone;
    }
    if (final || touched.has("emergency_contact")) {
      const name = text("emergency_contact.name");
      const phone = text("emergency_contact.phone");
      if (name && phone) data.emergency_contact = { name, phone };
    }
    data.side_effects = sideEffects();
    const missed = missedDoses();
    if (missed) data.missed_doses = missed;
    const slept = sleep();
    if (slept) data.sleep = slept;
    const use = substanceUse();
    if (use) data.substance_use = use;
    return data;
  }

  // --- checking a screen ------------------------------------------------------------

  function labelOf(q, value) {
    const input = q.querySelector(`input[value="${CSS.escape(value)}"]`);
    return input?.closest("label")?.textContent.trim() ?? value;
  }

  function problem(q) {
    const required = q.dataset.required === "1";
    switch (q.dataset.kind) {
      case "choice":
        return required && !q.querySelector("input:checked") ? "Please choose an answer." : null;
      case "number": {
        const raw = text("sleep.hours");
        const value = Number(raw);
        if (raw === "") return required ? "Please enter a number of hours. A rough guess is fine." : null;
        if (!Number.isFinite(value) || value < 0 || value > 24) {
          return "Please enter a number of hours from 0 to 24.";
        }
        return null;
      }
      case "side-effects":
        for (const effect of checkedValues("side_effects.effect")) {
          if (effect === "other" && !text("side_effects.other.details")) {
            return "Please tell us what the other side effect is.";
          }
          if (!checkedValue(`side_effects.${effect}.severity`)) {
            return `Please choose how bad it is: ${labelOf(q, effect)}.`;
          }
        }
        return null;
      case "emergency":
        for (const input of q.querySelectorAll("input[type=text], input[type=tel], textarea")) {
          const least = input.minLength > 0 ? input.minLength : 1;
          if (input.value.trim().length < least) return `Please fill in ${input.dataset.label}.`;
        }
        return q.querySelector("input[data-confirm]").checked ? null
          : "Please tick the box to confirm that this is right.";
      default:
        return null;
    }
  }

  function showError(q, message) {
    const error = q.querySelector(".field-error");
    error.textContent = message || "";
    error.hidden = !message;
    if (message) {
      q.setAttribute("aria-invalid", "true");
      q.setAttribute("aria-describedby", error.id);
    } else {
      q.removeAttribute("aria-invalid");
      q.removeAttribute("aria-describedby");
    }
  }

  // --- screens ----------------------------------------------------------------------

  function screens() {
    const asked = questions.filter(isAsked);
    if (!wide.matches) return asked.map((q) => [q]);
    const out = [];
    for (const q of asked) {
      const last = out[out.length - 1];
      if (last && last[0].closest(".part") === q.closest(".part")) last.push(q);
      else out.push([q]);
    }
    return out;
  }

  function position() {
    const list = screens();
    let index = list.findIndex((screen) => screen.includes(current));
    if (index < 0) {
      // The question on show is no longer asked: stay at the nearest one before it.
      const at = questions.indexOf(current);
      index = 0;
      list.forEach((screen, i) => { if (questions.indexOf(screen[0]) <= at) index = i; });
    }
    return { list, index };
  }

  function render({ focus = false } = {}) {
    const { list, index } = position();
    const screen = list[index];
    current = screen[0];
    for (const part of form.querySelectorAll(".part")) {
      part.hidden = !screen.some((q) => part.contains(q));
    }
    for (const q of questions) q.hidden = !screen.includes(q);
    back.hidden = index === 0;
    next.textContent = index === list.length - 1 ? "Send my check-in" : "Next";
    const unit = wide.matches ? "Part" : "Question";
    progressText.textContent = `${unit} ${index + 1} of ${list.length}`;
    progressBar.max = list.length;
    progressBar.value = index + 1;
    if (focus) {
      const target = wide.matches || screen[0] === screen[0].closest(".part").querySelector(".q")
        ? screen[0].closest(".part").querySelector("h2") : screen[0];
      // The top of the form, not of the page: when the crisis resources are open above
      // it, the question is still the first thing in view (and the footer keeps the
      // crisis numbers one tap away).
      form.scrollIntoView({ block: "start" });
      target.focus({ preventScroll: true });
    }
  }

  function goNext() {
    const { list, index } = position();
    let first = null;
    for (const q of list[index]) {
      const message = problem(q);
      showError(q, message);
      first ??= message ? q : null;
    }
    if (first) {
      first.focus();
      return;
    }
    if (index === list.length - 1) {
      submit();
      return;
    }
    current = list[index + 1][0];
    render({ focus: true });
  }

  function goBack() {
    const { list, index } = position();
    if (index === 0) return;
    current = list[index - 1][0];
    render({ focus: true });
  }

  // --- saving the draft -------------------------------------------------------------

  function setSaveState(state, message) {
    saveState.dataset.state = state;
    saveState.textContent = message;
  }

  function send(method, target, data, { keepalive = false } = {}) {
    return fetch(target, {
      method, keepalive, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(data),
    });
  }

  function scheduleSave(immediate) {
    if (submitted) return;
    dirty = true;
    setSaveState("saving", "Saving…");
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveDraft, immediate ? 0 : SAVE_DELAY_MS);
  }

  async function saveDraft() {
    clearTimeout(saveTimer);
    // One save at a time, so an older draft never lands after a newer one; the save
    // in flight checks `dirty` again when it ends.
    if (!dirty || inFlight || submitted) return;
    dirty = false;
    inFlight = true;
    try {
      const response = await send("PUT", `${url}/draft`, body(false));
      const data = await response.json().catch(() => ({}));
      if (response.ok) {
        // Answers given while this save was on its way are not saved yet.
        if (dirty) setSaveState("saving", "Saving…");
        else setSaveState("saved", "Your answers are saved.");
        onTriage(data);
        refreshSession();
      } else if (response.status === 409 && data.error?.code === "checkin_completed") {
        window.location.reload();
      } else if (response.status === 401) {
        setSaveState("error", "You have been signed out. Sign in again to carry on; your saved answers are kept.");
      } else {
        dirty = true;
        setSaveState("error", data.error?.message || "Your latest answers are not saved yet.");
      }
    } catch {
      dirty = true;
      setSaveState("offline", "Not saved yet: check your connection. We will keep trying.");
      saveTimer = setTimeout(saveDraft, RETRY_MS);
    } finally {
      inFlight = false;
    }
    if (dirty && saveState.dataset.state !== "offline") {
      saveTimer = setTimeout(saveDraft, SAVE_DELAY_MS);
    }
  }

  function saveOnLeave() {
    // The page may be gone before a normal request finishes; keepalive lets this one
    // outlive it. Sent even while another save is in flight: it carries the newest.
    if (submitted || (!dirty && !inFlight)) return;
    clearTimeout(saveTimer);
    dirty = false;
    send("PUT", `${url}/draft`, body(false), { keepalive: true }).catch(() => { dirty = true; });
  }

  async function refreshSession() {
    // Saving is activity; tell the idle-logoff timer so it does not warn mid check-in.
    if (Date.now() - lastSessionRefresh < SESSION_REFRESH_MS) return;
    lastSessionRefresh = Date.now();
    try {
      const response = await fetch("/api/v1/session", { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      window.dispatchEvent(new CustomEvent("mendwell:session-active",
        { detail: { idleExpiresAt: data.idle_expires_at } }));
    } catch {
      // The next save tries again.
    }
  }

  // --- triage results: the adaptive flow and the crisis resources -------------------

  function showCrisis(level) {
    const was = crisis.dataset.level || "none";
    if (LEVELS.indexOf(level) > LEVELS.indexOf(was)) crisis.dataset.level = level;
    if (crisis.hidden) {
      crisis.hidden = false;
      crisisStrip.hidden = false;
      crisis.scrollIntoView({ block: "start" });
    }
  }

  function onTriage(data) {
    if (Array.isArray(data.requires) && data.requires.includes("cssrs") && !cssrsTriggered) {
      cssrsTriggered = true;
      render();
    }
    if (data.crisis === true || CRISIS_LEVELS.has(data.level)) showCrisis(data.level);
  }

  // --- completing -------------------------------------------------------------------

  function questionFor(field) {
    let best = null;
    let length = -1;
    for (const q of questions) {
      const names = [q.dataset.field, ...(q.querySelector("[name='callback_phone']") ? ["callback_phone"] : [])];
      for (const name of names) {
        if ((field === name || field.startsWith(`${name}.`)) && name.length > length) {
          best = q;
          length = name.length;
        }
      }
    }
    return best;
  }

  async function submit() {
    clearTimeout(saveTimer);
    formError.hidden = true;
    next.disabled = true;
    next.textContent = "Sending…";
    let response;
    let data = {};
    try {
      response = await send("POST", url, body(true));
      data = await response.json().catch(() => ({}));
    } catch {
      formError.textContent = "We could not send your check-in. Check your connection and try again. Your answers are kept.";
      formError.hidden = false;
      next.disabled = false;
      render();
      return;
    }
    next.disabled = false;
    if (response.status === 201) {
      submitted = true;
      if (CRISIS_LEVELS.has(data.level)) showCrisis(data.level);
      form.hidden = true;
      done.hidden = false;
      window.scrollTo(0, 0);
      done.querySelector("h2").focus({ preventScroll: true });
      return;
    }
    if (response.status === 409 && data.error?.code === "checkin_completed") {
      window.location.reload();
      return;
    }
    const field = data.error?.field;
    const q = field ? questionFor(field) : null;
    if (response.status === 422 && q) {
      current = q;
      render({ focus: true });
      showError(q, `Please check this answer. ${data.error.message}`);
      return;
    }
    render();
    formError.textContent = data.error?.message || "Something went wrong. Please try again.";
    formError.hidden = false;
  }

  // --- wiring -----------------------------------------------------------------------

  function onAnswer(event) {
    const target = event.target;
    if (!(target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement)) return;
    const name = target.name;
    if (name.startsWith("confirm.")) {
      touched.add(name === "confirm.location" ? "location.address" : "emergency_contact");
    } else if (name === "location.address" || name === "callback_phone") {
      touched.add("location.address");
    } else if (name.startsWith("emergency_contact.")) {
      touched.add("emergency_contact");
    }
    if (name === "side_effects.effect") {
      const severity = form.querySelector(`.severity[data-effect="${CSS.escape(target.value)}"]`);
      severity.hidden = !target.checked;
    }
    const q = target.closest(".q");
    if (q && q.getAttribute("aria-invalid") === "true" && !problem(q)) showError(q, null);
    if (event.type === "change") render();
    if (name.startsWith("confirm.")) return; // confirmations are not part of the body
    // Safety answers are saved at once, so the server can triage them without delay.
    scheduleSave(name === ITEM9 || name.startsWith("responses.cssrs."));
  }

  form.addEventListener("change", onAnswer);
  form.addEventListener("input", (event) => {
    if (event.target instanceof HTMLTextAreaElement ||
        (event.target instanceof HTMLInputElement && !["radio", "checkbox"].includes(event.target.type))) {
      onAnswer(event);
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    goNext();
  });
  back.addEventListener("click", goBack);
  wide.addEventListener("change", () => render());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") saveOnLeave();
  });
  window.addEventListener("pagehide", saveOnLeave);

  // Resume where the patient left off: the first question still to answer.
  current = questions.find((q) => isAsked(q) && problem(q) !== null) ??
    questions.filter(isAsked).at(-1);
  form.classList.add("is-live");
  render();
}
