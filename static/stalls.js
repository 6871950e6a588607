// The stall banner: while a step holds a Trio loop past the stall threshold, which task holds
// it and where (its stack, file:line and function per frame, innermost last).
//
// Rules of this module:
// * One banner per loop (keyed by run and, on a shared feed, instance: a loop runs one step
//   at a time, so one stall at most), replaced by each `stall` event (the watchdog repeats it
//   every second with a fresh stack) and removed by the `block` that closes it (the step
//   returned), the run's end, a reset, or a gap (the closing block may be in the hole; a
//   stall still going is reported again within a second).
// * Between reports the banner counts on by itself; with no report for STALE_AFTER_S it says
//   how long it has not heard, instead of pretending the stall still grows.
// * Text only through textContent: file names and function names are the program's.

import { el, fmtDuration } from "./util.js";

// The watchdog reports every second; three missed reports means something is wrong.
const STALE_AFTER_S = 3;
// Frames shown per banner (innermost ones); the rest are counted.
const MAX_FRAMES_SHOWN = 12;
// The counting-on timer.
const TICK_MS = 250;

/** The loop an event is about: its run, and on a shared feed its instance (run ids repeat). */
const loopKey = (e) => `${e.run || ""}@${e.inst || ""}`;

export class Stalls {
  /** @param {HTMLElement} list the banner list (#stalls) */
  constructor(list) {
    this.list = list;
    /** loopKey -> {item, stall, heardAt (performance.now() ms)} */
    this.banners = new Map();
    this.timer = null;
  }

  /** A `stall` event: show or refresh the banner of its loop. */
  onStall(e) {
    const key = loopKey(e);
    const old = this.banners.get(key);
    const fresh = this.render(e);
    let item = fresh;
    if (old) {
      // Updated in place: the banner is announced once (role="alert"), not every second.
      item = old.item;
      item.replaceChildren(...fresh.childNodes);
      Object.assign(item.dataset, fresh.dataset);
    } else {
      item.setAttribute("role", "alert");
      this.list.append(item);
    }
    this.banners.set(key, { item, stall: e, heardAt: performance.now() });
    if (this.timer === null) this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** A `block` event: the step returned; its stall (if shown) is over. */
  onBlock(e) {
    for (const [key, banner] of this.banners) {
      if (key === loopKey(e) || banner.stall.task === e.task) this.remove(key);
    }
  }

  /** The run ended: a stall of its loop is over whatever we heard. */
  onRunEnd(e) {
    this.remove(loopKey(e));
  }

  /** Forget every banner (a gap, a different server). */
  reset() {
    for (const key of [...this.banners.keys()]) this.remove(key);
  }

  remove(key) {
    const banner = this.banners.get(key);
    if (!banner) return;
    banner.item.remove();
    this.banners.delete(key);
    if (!this.banners.size && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  render(e) {
    const frames = Array.isArray(e.frames) ? e.frames : [];
    const shown = frames.slice(-MAX_FRAMES_SHOWN);
    const cut = frames.length - shown.length;
    const where = shown.length ? shown[shown.length - 1] : null;
    return el(
      "li",
      {
        class: "stall",
        dataset: {
          testid: "stall-banner",
          run: e.run || "",
          inst: e.inst || "",
          task: e.task || 0,
          state: "live",
        },
      },
      el(
        "p",
        { class: "stall-head" },
        el("strong", { dataset: { testid: "stall-task" } }, e.name || `task ${e.task}`),
        " has held the loop for ",
        el(
          "span",
          { class: "stall-seconds", dataset: { testid: "stall-seconds" } },
          fmtDuration(e.seconds ?? 0),
        ),
        e.run ? ` (run ${e.run})` : "",
        where ? " at " : "",
        where ? el("code", { dataset: { testid: "stall-where" } }, frameText(where)) : "",
        ": every other task waits.",
      ),
      el(
        "ol",
        { class: "frames", dataset: { testid: "stall-frames" }, start: cut + 1 },
        ...shown.map((frame) => el("li", {}, el("code", {}, frameText(frame)))),
      ),
      cut ? el("p", { class: "hint" }, `${cut} outer frames not shown`) : "",
    );
  }

  /** Count on between reports; say so when reports stop coming. */
  tick() {
    const now = performance.now();
    for (const { item, stall, heardAt } of this.banners.values()) {
      const quiet = (now - heardAt) / 1000;
      const stale = quiet > STALE_AFTER_S;
      const seconds = (stall.seconds ?? 0) + (stale ? 0 : quiet);
      const text = stale
        ? `${fmtDuration(stall.seconds ?? 0)} (last heard ${Math.round(quiet)} s ago)`
        : fmtDuration(seconds);
      const node = item.querySelector(".stall-seconds");
      if (node.textContent !== text) node.textContent = text;
      const state = stale ? "stale" : "live";
      if (item.dataset.state !== state) item.dataset.state = state;
    }
  }
}

/** "app.py:12 in worker" for {file, line, function}. */
export function frameText(frame) {
  return `${frame.file}:${frame.line} in ${frame.function}`;
}
