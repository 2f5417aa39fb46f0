// The pre-visit check-in. The page arrives with every question rendered by the server
// and the saved draft already filled in; this module runs the flow:
// - one question per screen on a phone, one part per screen on a wide window, with
//   back and next that never lose an answer (the answers live in the form itself);
// - the C-SSRS screener right after PHQ-9 item 9 when that is at or above the rules'
//   threshold (1), with its skip
//   logic (CLINICAL.md); once shown it stays, so an answer given is never dropped;
// - a draft saved after every answer (debounced) and when the page is hidden, so
//   nothing typed is lost and the server triages risky answers at once;
// - the crisis resources (988, 911) decided here, from the answer itself, with the
//   same rules as the server's triage (CLINICAL.md invariant 9: crisis help never waits
//   for the network). The rules come with the page (data-triage, from the reviewed
//   escalation/triage_rules.toml); the server's answer only adds to what is shown:
//   it may raise the level, it never hides help already on screen;
// - "Where are you right now?" next, before any other question, once the answers are
//   urgent or an emergency and the location was not confirmed today (invariant 2); it
//   is sent at once to the emergency-info endpoint, and retried in the background if
//   the network is down while the patient carries on;
// - the emergency information (where, callback, contact) only in the completion, never
//   in drafts: a draft carrying it is validated strictly, and a half-typed address must
//   not cost the patient their answers. The state chosen is the exception: a choice
//   from a list, saved with the draft like any answer (it confirms nothing alone);
// - the state is required to confirm where the patient is, except on the crisis path
//   (the server's rule, server.checkins.require_state): there the address and callback
//   go without it, so a missing state never holds up help.

import { moment } from "./moment.js";

const SAVE_DELAY_MS = 300;
const RETRY_MS = 5000;
// How long sending the check-in waits for a draft already on its way (submit()).
const DRAFT_WAIT_MS = 5000;
const SESSION_REFRESH_MS = 60_000;
const ITEM9 = "responses.phq9.answers.8";
const CSSRS_KEYS = ["q1", "q2", "q3", "q4", "q5", "q6", "q6_recent"];

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
  const crisisAlerted = document.getElementById("crisis-alerted");
  const crisisUnsent = document.getElementById("crisis-unsent");
  const done = document.getElementById("checkin-done");
  const questions = [...form.querySelectorAll(".q")];
  const wherePart = document.getElementById("part-where");
  const whereTitle = document.getElementById("part-where-title");
  const whereQ = document.getElementById("emergency-location");
  const whereHome = { parent: whereQ.parentElement, before: whereQ.nextElementSibling };
  const whereState = document.getElementById("where-state");

  // The reviewed triage rules, as the server applies them (web/pages/checkin.py).
  const rules = JSON.parse(form.dataset.triage);
  const LEVELS = rules.levels;
  const CRISIS_LEVELS = new Set(rules.crisis_levels);
  const rank = (level) => Math.max(0, LEVELS.indexOf(level));
  const addressMin = Number(form.dataset.addressMin);
  const nameMin = Number(form.dataset.contactNameMin);
  const stateMissing = form.dataset.stateMissing;

  let cssrsTriggered = form.dataset.cssrsShown === "1";
  let current = null;           // the first question of the screen on show
  let dirty = false;            // answers changed since the last save was sent
  let saveTimer = null;
  let inFlight = false;
  let draftSettled = Promise.resolve();  // resolves when the draft on its way is answered
  let submitted = false;
  let lastSessionRefresh = Date.now();
  // Whether the server has seen a crisis level for this visit (it alerts the care team
  // when it does); until then the help on show is the device's decision alone.
  let serverCrisis = CRISIS_LEVELS.has(form.dataset.crisisLevel);
  // "Where are you right now?": when it was confirmed (today, or on this page); whether
  // it was asked on this page already, or is due as the next screen; the detour on show
  // (and the question it returns to); a retry still to come; what the server confirmed.
  let whereConfirmedAt = form.dataset.whereConfirmedAt || null;
  let whereAsked = false;
  let whereDue = false;
  let detour = null;            // { returnTo: question }
  let whereRetry = null;        // the retry's timer, while a confirmation is undelivered
  let whereSent = null;         // the values the server confirmed last, to spot edits

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

  function item9Positive() {
    const item9 = checkedValue(ITEM9);
    return item9 !== null && Number(item9) >= rules.item9_threshold;
  }

  function cssrsNeeded() {
    if (item9Positive()) cssrsTriggered = true;
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
      } else {
        // Unasked questions are sent as null: an answer left over from before q2 or q6
        // changed to "no" (C-SSRS), or q1 to "Never" (AUDIT-C), was not given to a
        // question the patient saw.
        response.answers[instrument === "cssrs" ? key : Number(key)] =
          askedBySkipLogic(q) ? value : null;
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

  function place() {
    const state = text("location.state");
    return state ? { address: text("location.address"), state }
      : { address: text("location.address") };
  }

  function whereValues() {
    return { location: place(), callback_phone: text("callback_phone") };
  }

  function body(final) {
    const data = { responses: responses(), sex: sex() };
    // Emergency information only with the completion: in a draft it would be checked
    // strictly, and it is confirmed on its own (confirmWhere) when it is urgent. The
    // state alone is kept with the draft: it confirms nothing there.
    if (!final && text("location.state")) data.location = { state: text("location.state") };
    if (final) {
      const address = text("location.address");
      const phone = text("callback_phone");
      if (address) data.location = place();
      if (phone) data.callback_phone = phone;
      const name = text("emergency_contact.name");
      const contactPhone = text("emergency_contact.phone");
      if (name && contactPhone) data.emergency_contact = { name, phone: contactPhone };
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

  // Emergency information, checked here as the server checks it (invariant 8) so a
  // patient hears at once what is missing; the server's word is final (a 422 names
  // the field and shows next to it).
  const letters = (value) => (value.match(/\p{L}/gu) || []).length;
  const CHECKS = {
    address: (value) => (value.length >= addressMin && letters(value) > 0 ? null
      : `Please give the full address where you are, at least ${addressMin} characters with the street or place name.`),
    phone: (value) => (/\d/.test(value) ? null : "Please enter a phone number with its digits."),
    name: (value) => (letters(value) >= nameMin ? null : "Please give your emergency contact's name."),
    state: (value) => (value ? null : stateMissing),
  };
  // The crisis path: help is on screen (decided here or by the server).
  const inCrisis = () => !crisis.hidden;

  // What is wrong with a question's answer: [input or null (the question itself), message].
  function problems(q) {
    const required = q.dataset.required === "1";
    const one = (message) => (message ? [[null, message]] : []);
    switch (q.dataset.kind) {
      case "choice":
        return one(required && !q.querySelector("input:checked") ? "Please choose an answer." : null);
      case "number": {
        const raw = text("sleep.hours");
        const value = Number(raw);
        if (raw === "") return one(required ? "Please enter a number of hours. A rough guess is fine." : null);
        if (!Number.isFinite(value) || value < 0 || value > 24) {
          return one("Please enter a number of hours from 0 to 24.");
        }
        return [];
      }
      case "side-effects":
        for (const effect of checkedValues("side_effects.effect")) {
          if (effect === "other" && !text("side_effects.other.details")) {
            return one("Please tell us what the other side effect is.");
          }
          if (!checkedValue(`side_effects.${effect}.severity`)) {
            return one(`Please choose how bad it is: ${labelOf(q, effect)}.`);
          }
        }
        return [];
      case "emergency": {
        const found = [];
        for (const input of q.querySelectorAll("[data-check]")) {
          if (input.dataset.check === "state" && inCrisis()) continue;
          const message = CHECKS[input.dataset.check](input.value.trim());
          if (message) found.push([input, message]);
        }
        if (!q.querySelector("input[data-confirm]").checked) {
          found.push([null, "Please tick the box to confirm that this is right."]);
        }
        return found;
      }
      default:
        return [];
    }
  }

  const problem = (q) => problems(q)[0]?.[1] ?? null;

  function describe(element, errorId, on) {
    const ids = (element.getAttribute("aria-describedby") || "").split(" ")
      .filter((id) => id && id !== errorId);
    if (on) ids.push(errorId);
    if (ids.length) element.setAttribute("aria-describedby", ids.join(" "));
    else element.removeAttribute("aria-describedby");
    if (on) element.setAttribute("aria-invalid", "true");
    else element.removeAttribute("aria-invalid");
  }

  function errorOf(q, input) {
    return document.getElementById(`${(input ?? q).id}-error`);
  }

  function showFieldError(q, input, message) {
    const error = errorOf(q, input);
    error.textContent = message || "";
    error.hidden = !message;
    describe(input ?? q, error.id, Boolean(message));
  }

  // Show exactly these problems on the question (clearing the others).
  function showProblems(q, found) {
    const inputs = [null, ...q.querySelectorAll("[data-check]")];
    for (const input of inputs) {
      const message = found.find(([where]) => where === input)?.[1] ?? null;
      showFieldError(q, input, message);
    }
  }

  function showError(q, message) {
    showProblems(q, message ? [[null, message]] : []);
  }

  // While the patient fixes a problem, take its message away as soon as it is fixed
  // (new problems wait for the next "Next").
  function recheck(q) {
    const found = problems(q);
    for (const input of [null, ...q.querySelectorAll("[data-check]")]) {
      const error = errorOf(q, input);
      if (!error.hidden && !found.some(([where]) => where === input)) showFieldError(q, input, null);
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

  function focusOn(target) {
    // The top of the form, not of the page: when the crisis resources are open above
    // it, the question is still the first thing in view (and the footer keeps the
    // crisis numbers one tap away).
    form.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
  }

  function render({ focus = false } = {}) {
    if (detour) {
      renderWhere({ focus });
      return;
    }
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
      focusOn(target);
    }
  }

  function goNext() {
    if (detour) {
      confirmWhere();
      return;
    }
    const { list, index } = position();
    let first = null;
    for (const q of list[index]) {
      const found = problems(q);
      showProblems(q, found);
      first ??= found.length ? (found[0][0] ?? q) : null;
    }
    if (first) {
      first.focus();
      return;
    }
    if (index === list.length - 1) {
      submit();
      return;
    }
    const following = list[index + 1][0];
    if (whereDue) {
      askWhere(following);
      return;
    }
    current = following;
    render({ focus: true });
  }

  function goBack() {
    const { list, index } = position();
    if (detour || index === 0) return;
    current = list[index - 1][0];
    render({ focus: true });
  }

  // --- "Where are you right now?" first (invariant 2) -------------------------------

  function renderWhere({ focus }) {
    for (const part of form.querySelectorAll(".part")) part.hidden = part !== wherePart;
    for (const q of questions) q.hidden = q !== whereQ;
    back.hidden = true;
    next.textContent = "Confirm and carry on";
    progressText.textContent = "First, where you are";
    if (focus) focusOn(whereTitle);
  }

  function setWhereState(state, message) {
    whereState.dataset.state = state;
    whereState.textContent = message;
  }

  // Called whenever the answers (the device's rules or the server) reach a crisis level.
  function whereNeeded() {
    if (whereConfirmedAt || whereAsked || submitted) return;
    // Already answered on this page (the patient is past it, box ticked): send it now
    // rather than asking it twice.
    const answered = questions.indexOf(current) > questions.indexOf(whereQ) &&
      problems(whereQ).length === 0;
    if (answered) {
      whereAsked = true;
      sendWhere(whereValues());
      return;
    }
    whereDue = true;
  }

  function askWhere(returnTo, { focus = true } = {}) {
    whereDue = false;
    whereAsked = true;
    detour = { returnTo };
    wherePart.append(whereQ);
    render({ focus });
  }

  function endDetour() {
    const { returnTo } = detour;
    detour = null;
    whereHome.parent.insertBefore(whereQ, whereHome.before);
    if (returnTo) current = returnTo;
    render({ focus: true });
  }

  async function confirmWhere() {
    const found = problems(whereQ);
    showProblems(whereQ, found);
    if (found.length) {
      (found[0][0] ?? whereQ).focus();
      return;
    }
    next.disabled = true;
    next.textContent = "Sending…";
    const outcome = await sendWhere(whereValues());
    next.disabled = false;
    if (outcome === "invalid") {
      render();
      whereQ.querySelector("[aria-invalid='true']")?.focus();
      return;
    }
    endDetour();
  }

  // PUT the location and callback to the emergency-info endpoint. "saved"; "invalid"
  // (the server's message is on the field); "later" (not delivered: kept and retried
  // in the background while the patient carries on).
  async function sendWhere(values) {
    clearTimeout(whereRetry);
    whereRetry = null;
    setWhereState("sending", "Sending where you are…");
    let response;
    let data = {};
    try {
      response = await send("PUT", `${url}/emergency-info`, values);
      data = await response.json().catch(() => ({}));
    } catch {
      response = null;
    }
    if (response?.ok) {
      whereConfirmedAt = data.confirmed_at || new Date().toISOString();
      whereSent = JSON.stringify(values);
      whereQ.querySelector("input[data-confirm]").checked = true;
      setWhereState("confirmed", `You confirmed this today at ${moment(whereConfirmedAt)}. You can still change it.`);
      return "saved";
    }
    if (response?.status === 422) {
      const field = data.error?.field;
      const input = ["callback_phone", "location.state"].includes(field)
        ? form.querySelector(named(field)) : form.querySelector(named("location.address"));
      showFieldError(whereQ, input, plainWords(data.error?.message) ||
        "Please check this answer.");
      whereQ.querySelector("input[data-confirm]").checked = false;
      setWhereState("invalid", "Please check where you are and your number.");
      return "invalid";
    }
    if (response?.status === 401) {
      setWhereState("error", "You have been signed out. Sign in again to send where you are.");
      return "later";
    }
    if (response && response.status < 500) {
      // Refused for good (the visit is over, say): trying again would not help. The
      // completion, if it can still be sent, carries the place all the same.
      setWhereState("error", data.error?.message || "We could not take where you are.");
      return "later";
    }
    setWhereState("offline", "Not sent yet: check your connection. We will keep trying. If you need help now, call or text 988, or call 911.");
    whereRetry = setTimeout(retryWhere, RETRY_MS);
    return "later";
  }

  function whereReady() {
    return whereQ.querySelector("input[data-confirm]").checked && problems(whereQ).length === 0;
  }

  function retryWhere() {
    // What the patient confirms now: if they changed it (and so untick the box), it
    // waits until they tick it again or send the check-in.
    whereRetry = null;
    if (!submitted && whereReady()) sendWhere(whereValues());
  }

  function plainWords(message) {
    // "callback_phone: Value error, enter a phone number with its digits." -> "Enter a
    // phone number with its digits."
    if (!message) return "";
    let found = message;
    const at = found.indexOf(": ");
    if (at > 0 && !found.slice(0, at).includes(" ")) found = found.slice(at + 2);
    found = found.replace(/^Value error, /, "").trim();
    return found.charAt(0).toUpperCase() + found.slice(1);
  }

  function whereEdited() {
    // Changed after it was confirmed (or while it waits to be sent): it is no longer
    // what the patient confirmed, so they tick the box again.
    if (detour || (!whereConfirmedAt && whereRetry === null)) return;
    if (whereSent !== null && whereSent === JSON.stringify(whereValues())) return;
    const box = whereQ.querySelector("input[data-confirm]");
    if (box.checked) {
      box.checked = false;
      setWhereState("edited", "You changed this: tick the box again to confirm it.");
    }
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
    let settle;
    draftSettled = new Promise((resolve) => { settle = resolve; });
    try {
      const response = await send("PUT", `${url}/draft`, body(false));
      const data = await response.json().catch(() => ({}));
      if (submitted) return;  // the completion carried every answer
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
        notSent();
      } else {
        // The server could not keep it (a 500, a proxy's 502): try again, not at once.
        dirty = true;
        setSaveState("error", data.error?.message || "Your latest answers are not saved yet. We will keep trying.");
        notSent();
        saveTimer = setTimeout(saveDraft, RETRY_MS);
      }
    } catch {
      dirty = true;
      setSaveState("offline", "Not saved yet: check your connection. We will keep trying.");
      notSent();
      saveTimer = setTimeout(saveDraft, RETRY_MS);
    } finally {
      inFlight = false;
      settle();
    }
    if (dirty && saveState.dataset.state === "saving") {
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

  // The C-SSRS answers as the patient gave them: a question the skip logic does not
  // ask counts as unanswered (null), as in the body.
  function cssrsAnswers() {
    const answers = {};
    for (const key of CSSRS_KEYS) {
      const q = form.querySelector(`.q[data-field="responses.cssrs.answers.${key}"]`);
      answers[key] = q && askedBySkipLogic(q)
        ? parseAnswer(checkedValue(`responses.cssrs.answers.${key}`)) : null;
    }
    return answers;
  }

  function cssrsComplete(a) {
    const asked = ["q1", "q2", "q6", ...(a.q2 ? ["q3", "q4", "q5"] : []),
                   ...(a.q6 ? ["q6_recent"] : [])];
    return asked.every((key) => a[key] !== null);
  }

  // CLINICAL.md, C-SSRS risk: the highest endorsed answer decides. A question not
  // answered yet counts as "no", so this is the least the finished screener can show
  // (the server triages drafts the same way): a "yes" to intent is high risk at once,
  // and past behaviour whose recency is not answered yet is at least moderate.
  function cssrsRisk(a) {
    if (a.q4 === true || a.q5 === true || (a.q6 === true && a.q6_recent === true)) return "high";
    if (a.q3 === true || a.q6 === true) return "moderate";
    if (a.q1 === true || a.q2 === true) return "low";
    return null;
  }

  // The safety reasons the answers on the page show, with the triage table's codes;
  // their levels come from the rules the page was given.
  function deviceReasons() {
    const reasons = [];
    const screened = cssrsNeeded() ? cssrsAnswers() : null;
    const risk = screened ? cssrsRisk(screened) : null;
    if (risk) reasons.push(`cssrs_${risk}`);
    if (item9Positive()) {
      // Item 9 without a finished screener: the risk is unknown, which is urgent.
      reasons.push(screened && cssrsComplete(screened) ? "phq9_item9_positive"
        : "phq9_item9_unassessed");
    }
    return reasons;
  }

  function deviceLevel() {
    let level = LEVELS[0];
    for (const reason of deviceReasons()) {
      const found = rules.reason_levels[reason];
      if (found && rank(found) > rank(level)) level = found;
    }
    return level;
  }

  function showCrisis(level, { fromServer = false } = {}) {
    const was = crisis.dataset.level || LEVELS[0];
    if (rank(level) > rank(was)) crisis.dataset.level = level;
    if (fromServer) {
      serverCrisis = true;
      crisisAlerted.hidden = false;
      crisisUnsent.hidden = true;
    }
    if (crisis.hidden) {
      crisis.hidden = false;
      crisisStrip.hidden = false;
      crisis.scrollIntoView({ block: "start" });
    }
    whereNeeded();
  }

  // A save failed: if help is on show from the device alone, say the care team has not
  // heard yet, so nobody waits for a call that is not coming.
  function notSent() {
    if (!crisis.hidden && !serverCrisis) crisisUnsent.hidden = false;
  }

  function triageHere() {
    const level = deviceLevel();
    if (CRISIS_LEVELS.has(level)) showCrisis(level);
  }

  function onTriage(data) {
    if (Array.isArray(data.requires) && data.requires.includes("cssrs") && !cssrsTriggered) {
      cssrsTriggered = true;
      render();
    }
    if (data.crisis === true || CRISIS_LEVELS.has(data.level)) {
      showCrisis(CRISIS_LEVELS.has(data.level) ? data.level : crisis.dataset.level,
                 { fromServer: true });
    }
  }

  // --- completing -------------------------------------------------------------------

  function questionFor(field) {
    let best = null;
    let length = -1;
    for (const q of questions) {
      const names = [q.dataset.field,
        ...["callback_phone", "location.state"].filter((name) => q.querySelector(named(name)))];
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
    // A draft still on its way lands first: after the completion it would be refused
    // (409) and reload the page over the "sent" screen. Not for long: a draft stuck on a
    // dead connection must not hold the check-in back.
    await Promise.race([draftSettled,
      new Promise((resolve) => { setTimeout(resolve, DRAFT_WAIT_MS); })]);
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
      clearTimeout(whereRetry);
      if (CRISIS_LEVELS.has(data.level)) showCrisis(data.level, { fromServer: true });
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
      const input = form.querySelector(`[data-check]${named(field)}`);
      if (input) {
        showFieldError(q, input, plainWords(data.error.message));
        input.focus();
      } else {
        showError(q, `Please check this answer. ${data.error.message}`);
      }
      return;
    }
    render();
    formError.textContent = data.error?.message || "Something went wrong. Please try again.";
    formError.hidden = false;
  }

  // --- wiring -----------------------------------------------------------------------

  function onAnswer(event) {
    const target = event.target;
    if (!(target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
          target instanceof HTMLSelectElement)) return;
    const name = target.name;
    if (name === "side_effects.effect") {
      const severity = form.querySelector(`.severity[data-effect="${CSS.escape(target.value)}"]`);
      severity.hidden = !target.checked;
    }
    const q = target.closest(".q");
    if (q) recheck(q);
    if (event.type === "change") render();
    if (["location.address", "location.state", "callback_phone"].includes(name)) whereEdited();
    // Ticked again after a change, on the crisis path: the new place goes at once.
    if (name === "confirm.location" && target.checked && whereAsked && !detour && whereReady()) {
      sendWhere(whereValues());
    }
    // The state is kept with the draft (see body()); the rest of the emergency
    // information and the confirmations are not part of a draft.
    if (name === "location.state") {
      scheduleSave(false);
      return;
    }
    if (name.startsWith("confirm.") || target.closest("[data-kind='emergency']")) return;
    // Help first, from the answer itself: before any request, which may never return.
    if (name === ITEM9 || name.startsWith("responses.cssrs.")) triageHere();
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
  // The answers already given (a resumed draft) and the visit's risk decide at once:
  // with a crisis and no location confirmed today, that question comes first.
  if (serverCrisis) showCrisis(form.dataset.crisisLevel, { fromServer: true });
  triageHere();
  if (whereDue) askWhere(current, { focus: false });
  else render();
}
