// Small helpers every panel uses: building DOM nodes, a colour per task, number formatting.
//
// Rules of this module: pure functions, no state, no network. Text always goes in through
// textContent (never innerHTML), so a line a task prints can never become markup.

/**
 * Create an element: el("li", {class: "run", dataset: {run: "r3"}}, "text", child).
 * Attributes named on* are not supported on purpose: listeners are added by the caller.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) {
        if (data !== undefined && data !== null) node.dataset[name] = String(data);
      }
    }
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The golden angle spreads consecutive task ids around the colour wheel, so neighbouring lanes
// (tasks spawned one after another get consecutive ids) never look alike.
const GOLDEN_ANGLE = 137.508;
const colourCache = new Map();
// Lane ids grow without bound over a server's life; the cache is only a shortcut.
const MAX_CACHED_COLOURS = 4096;

/** The colour of a task, the same in the timeline, the console and the echo table. */
export function taskColour(task) {
  let colour = colourCache.get(task);
  if (colour === undefined) {
    if (!task) return "hsl(0 0% 70%)"; // task 0: the server itself, neutral grey
    const hue = (task * GOLDEN_ANGLE + 200) % 360;
    // 70% lightness keeps every hue readable (contrast > 4.5) on the dark background.
    colour = `hsl(${hue.toFixed(1)} 75% 70%)`;
    if (colourCache.size >= MAX_CACHED_COLOURS) colourCache.clear();
    colourCache.set(task, colour);
  }
  return colour;
}

/** 1536 -> "1.5 KiB". */
export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let value = n;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return i === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[i]}`;
}

/** Seconds -> "120 µs", "3.4 ms", "1.25 s", "2 min 5 s". */
export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.abs(seconds);
  if (s < 1e-3) return `${Math.round(seconds * 1e6)} µs`;
  if (s < 1) return `${(seconds * 1e3).toFixed(s < 0.01 ? 2 : 1)} ms`;
  if (s < 120) return `${seconds.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** 12345.6 -> "12,346"; small numbers keep one decimal. */
export function fmtRate(n) {
  if (!Number.isFinite(n)) return "?";
  return n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(1);
}

/** A parameter value as the form and the runs list show it. */
export function fmtValue(value) {
  if (value === null || value === undefined) return "auto";
  return String(value);
}

/** Feed time (seconds since the server started) as a console timestamp: "12.345". */
export function fmtFeedTime(t) {
  return Number.isFinite(t) ? t.toFixed(3).padStart(8, " ") : "       ?";
}

/**
 * A run's summary value with its unit, read from the key's suffix (spawn_ms, bytes_per_task).
 * Unknown keys are shown as they came: the server decides what a summary holds.
 */
export function fmtSummaryValue(key, value) {
  if (typeof value !== "number") return String(value);
  if (key.endsWith("_ms")) return `${value.toLocaleString("en")} ms`;
  if (key.startsWith("bytes")) return fmtBytes(value);
  return value.toLocaleString("en");
}

/** Run every queued callback once per animation frame, however often it is queued. */
export function frameScheduler(callback) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      callback();
    });
  };
}
