// The handle between the video and the note panel: drag it, or focus it and use the
// arrow keys (Home and End for the narrowest and widest). The width is remembered in
// this browser. Only where the panel sits beside the video (64rem and wider).

const STORAGE_KEY = "mendwell.panel-width";
const STEP_PX = 32;
const MIN_PX = 288;
// The video keeps at least this much of the row.
const MIN_STAGE_PX = 360;

function stored() {
  try {
    const value = Number(window.localStorage.getItem(STORAGE_KEY));
    return Number.isFinite(value) && value > 0 ? value : null;
  } catch {
    return null;
  }
}

function store(width) {
  try {
    window.localStorage.setItem(STORAGE_KEY, String(Math.round(width)));
  } catch {
    // not remembered; still applied
  }
}

export function setUpResize(handle) {
  if (!handle) return;
  const layout = handle.closest(".room-layout");
  const panel = document.getElementById("side-panel");
  if (!layout || !panel) return;

  const maxWidth = () => Math.max(MIN_PX, layout.clientWidth - MIN_STAGE_PX - handle.offsetWidth);
  const apply = (width, remember = true) => {
    const clamped = Math.round(Math.min(maxWidth(), Math.max(MIN_PX, width)));
    // A custom property set through the CSSOM (not a style attribute: the CSP allows
    // stylesheets from 'self' only, and this is not one).
    layout.style.setProperty("--panel-width", `${clamped}px`);
    handle.setAttribute("aria-valuenow", String(clamped));
    handle.setAttribute("aria-valuemax", String(Math.round(maxWidth())));
    handle.setAttribute("aria-valuetext", `Note panel ${clamped} pixels wide`);
    if (remember) store(clamped);
    return clamped;
  };
  const current = () => panel.getBoundingClientRect().width;

  const initial = stored();
  if (initial) apply(initial, false);
  else handle.setAttribute("aria-valuenow", String(Math.round(current())));

  handle.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    handle.classList.add("is-dragging");
    const right = layout.getBoundingClientRect().right;
    const move = (moved) => apply(right - moved.clientX - handle.offsetWidth / 2);
    const stop = () => {
      handle.classList.remove("is-dragging");
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", stop);
      handle.removeEventListener("pointercancel", stop);
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", stop);
    handle.addEventListener("pointercancel", stop);
  });

  handle.addEventListener("keydown", (event) => {
    const width = current();
    const next = {
      ArrowLeft: width + STEP_PX, ArrowUp: width + STEP_PX,
      ArrowRight: width - STEP_PX, ArrowDown: width - STEP_PX,
      Home: MIN_PX, End: maxWidth(),
    }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    apply(next);
  });

  window.addEventListener("resize", () => {
    const width = stored();
    if (width) apply(width, false);
  });
}
