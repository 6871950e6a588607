// The interleaved console: every line the scenario tasks print, in feed (seq) order, coloured
// by task, like the tutorial's printout where the greenlets' lines interleave.
//
// Rules of this module:
// * Lines are appended in seq order and never twice (a line at or below the newest seq shown
//   is ignored), so a reconnect's replay cannot duplicate one.
// * At most MAX_LINES lines are kept; the oldest go first.
// * New lines are added once per batch (one DOM write per 50 ms batch, not one per event).
// * It scrolls with the output only while the reader is at the bottom; scrolled up to read,
//   the view stays put.

import { el, fmtFeedTime, taskColour } from "./util.js";

// 2,000 lines: ~25 screens of history, a few hundred KB of DOM at most.
const MAX_LINES = 2_000;
// Runs offered in the filter; older ones drop out of the list (their lines stay).
const MAX_FILTER_RUNS = 30;
// "At the bottom" within this many pixels.
const STICK_PX = 24;

export class Console {
  /**
   * @param {HTMLElement} root the console section
   * @param {(task: number) => string} laneName the name of a task's lane
   */
  constructor(root, laneName) {
    this.log = root.querySelector("#console-log");
    this.filter = root.querySelector("#console-filter");
    this.clearButton = root.querySelector("#console-clear");
    this.laneName = laneName;
    this.pending = [];
    this.lastSeq = -1;
    this.runs = new Set();
    this.filter.addEventListener("change", () => this.applyFilter());
    this.clearButton.addEventListener("click", () => this.log.replaceChildren());
  }

  reset() {
    this.pending = [];
    this.lastSeq = -1;
    this.runs.clear();
    this.log.replaceChildren();
    this.filter.replaceChildren(el("option", { value: "" }, "all runs"));
  }

  /** A line a task printed (an `output` event). */
  output(e) {
    if (e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    const task = e.task || 0;
    const who = this.laneName(task) || (task ? `task ${task}` : "server");
    const line = el(
      "div",
      {
        // A watched program's stderr lines are marked (`stream`, issue 10); the text is as is.
        class: e.stream === "stderr" ? "line stderr" : "line",
        style: `--task-colour:${taskColour(task)}`,
        dataset: { testid: "console-line", seq: e.seq, run: e.run || "", task, stream: e.stream },
      },
      el("span", { class: "t" }, fmtFeedTime(e.t ?? 0)),
      el("span", { class: "who" }, `${e.run || ""} ${who}`),
      el("span", { class: "text" }, e.text),
    );
    this.add(line, e.run);
  }

  /** A note between the lines: a run started or ended. */
  note(e, text) {
    if (e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    const line = el(
      "div",
      { class: "line note", dataset: { testid: "console-note", seq: e.seq, run: e.run || "" } },
      el("span", { class: "t" }, fmtFeedTime(e.t ?? 0)),
      el("span", { class: "text" }, text),
    );
    this.add(line, e.run);
  }

  add(line, run) {
    if (run && !this.runs.has(run)) {
      this.runs.add(run);
      this.filter.append(el("option", { value: run }, run));
      if (this.runs.size > MAX_FILTER_RUNS) {
        const oldest = this.filter.options[1];
        if (oldest && oldest.value !== this.filter.value) {
          this.runs.delete(oldest.value);
          oldest.remove();
        }
      }
    }
    if (this.filter.value && run !== this.filter.value) line.hidden = true;
    this.pending.push(line);
  }

  /** Append the lines of one batch in a single DOM write. */
  flush() {
    if (!this.pending.length) return;
    const log = this.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
    const lines = this.pending.slice(-MAX_LINES);
    this.pending = [];
    log.append(...lines);
    let excess = log.childElementCount - MAX_LINES;
    while (excess > 0) {
      log.firstElementChild.remove();
      excess -= 1;
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  applyFilter() {
    const run = this.filter.value;
    for (const line of this.log.children) line.hidden = Boolean(run) && line.dataset.run !== run;
    this.log.scrollTop = this.log.scrollHeight;
  }
}
