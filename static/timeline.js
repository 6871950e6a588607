// The timeline: one lane per task, grouped by run as its nursery tree, with the scheduler's
// steps drawn as bars (a Gantt chart of the Trio scheduler), output marks, and blocks.
//
// Rules of this module:
// * Model and drawing are separate: events only change the model (cheap, no DOM); a frame
//   draws what is in view. Lane labels are real DOM (readable, testable); the marks are on a
//   canvas, because thousands of DOM nodes per second would be the slowest part of the page.
// * Times are feed times (seconds since the server started); an event's mark goes where its
//   `t` says, not where it arrived: a `step` carries the time its window *started*.
// * Memory is bounded (see MAX_MARKS, HISTORY_SECONDS, MAX_LANES, MAX_GROUPS); the oldest
//   history goes first, and the scrub bar shows how far back the page still remembers.
// * What was drawn is counted and published as data-* attributes (data-bars, data-blocks),
//   so tests and curious people can check the drawing without reading pixels.

import { el, fmtDuration, fmtSummaryValue, taskColour } from "./util.js";

// Bounded history: at most 20,000 marks (step bars + output marks + blocks) and at most the
// last 10 minutes, whichever is smaller; beyond that the oldest marks are forgotten. 20,000
// marks are ~2 MB of small objects and still draw in a few ms when all are in view.
const MAX_MARKS = 20_000;
const HISTORY_SECONDS = 600;
// Lanes kept at most (scenario tasks + echo connections); more are counted, not drawn.
const MAX_LANES = 5_000;
// Run groups kept: the server keeps 8 recent runs (and at most 4 run at once).
const MAX_GROUPS = 16;
// Echo connections drawn as lanes at most; the rest are one summary row.
const MAX_ECHO_LANES = 50;
// Scenarios whose tasks run in a quiet nursery (not traced): their group shows the summary.
const SUMMARY_ONLY = new Set(["many-tasks"]);

const ROW_H = 18; // px, also in style.css (--row-h): labels and canvas rows must line up
const MIN_BAR_PX = 1.5; // a 20 µs step is still visible
const FRAME_MIN_MS = 30; // following live: ~30 redraws a second is smooth enough
const LAYOUT_MIN_MS = 100; // label rows are rebuilt at most 10 times a second
const PRUNE_EVERY_MS = 1000;
// Window widths offered, in seconds.
export const SPANS = [1, 2, 5, 10, 30, 60, 120, 300, 600];
const DEFAULT_SPAN = 5;
// While following, "now" sits this far (as a fraction of the window) from the right edge.
const LIVE_MARGIN = 0.04;
const TICK_STEPS = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
];
const MIN_TICK_PX = 80;

const STATE_COLOURS = {
  running: "rgba(110, 170, 255, 0.22)",
  done: "rgba(120, 200, 140, 0.14)",
  cancelled: "rgba(240, 190, 90, 0.18)",
  timeout: "rgba(255, 110, 110, 0.18)",
  error: "rgba(255, 110, 110, 0.18)",
};
const BLOCK_BAND = "rgba(255, 90, 90, 0.16)";
const BLOCK_EDGE = "rgba(255, 120, 120, 0.55)";
const BLOCK_MARK = "#ff6b6b";

class Lane {
  constructor(task, run, name, parent, start) {
    this.task = task;
    this.run = run;
    this.name = name;
    this.parent = parent;
    this.start = start;
    this.end = null;
    /** Step windows, sorted by t: {t, dur, busy, count}. */
    this.steps = [];
    /** Output times, sorted. */
    this.outputs = [];
    /** Longest step kept, so that a search by t can reach back to a long step still in view. */
    this.maxDur = 0;
    this.detail = "";
  }
}

/** Echo connections' group: "echo" for this instance, "echo@host/pid/worker" for another. */
const isEchoId = (id) => id === "echo" || id.startsWith("echo@");

class Group {
  constructor(id) {
    this.id = id;
    /** On a shared feed: the instance whose run (or echo connections) this is; "" for ours. */
    this.inst = id.includes("@") ? id.slice(id.indexOf("@") + 1) : "";
    this.echo = isEchoId(id);
    this.scenario = this.echo ? "echo" : "";
    this.params = {};
    this.state = this.echo ? "running" : "";
    this.start = null;
    this.end = null;
    this.summary = {};
    this.error = "";
    /** Lane ids in spawn order. */
    this.lanes = [];
    this.drawn = { bars: -1, blocks: -1 };
  }
}

/** Insert *item* into *list* sorted by key(item); items arrive nearly sorted, so scan back. */
function insertSorted(list, item, key) {
  const k = key(item);
  let i = list.length;
  while (i > 0 && key(list[i - 1]) > k) i -= 1;
  if (i === list.length) list.push(item);
  else list.splice(i, 0, item);
}

/** First index in sorted *list* whose key is >= k. */
function lowerBound(list, k, key) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(list[mid]) < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const FINAL_STATES = new Set(["done", "cancelled", "timeout", "error"]);
/** The run has ended (known from run_end, or from hello.runs for a run seen only there). */
const isOver = (group) => FINAL_STATES.has(group.state);
/** The latest time known of a run; -Infinity for one known only from hello.runs. */
const lastTime = (group) => group.end ?? group.start ?? -Infinity;

const stepT = (s) => s.t;
const blockT = (b) => b.t;
const same = (x) => x;

export class Timeline {
  /**
   * @param {HTMLElement} root the timeline section, holding the elements looked up below
   * @param {() => number} clock the server's feed time now, in seconds
   */
  constructor(root, clock) {
    this.root = root;
    this.clock = clock;
    this.scroll = root.querySelector("#tl-scroll");
    this.labels = root.querySelector("#tl-labels");
    this.canvas = root.querySelector("#tl-canvas");
    this.axis = root.querySelector("#tl-axis");
    this.tip = root.querySelector("#tl-tip");
    this.followButton = root.querySelector("#tl-follow");
    this.spanSelect = root.querySelector("#tl-span");
    this.scrub = root.querySelector("#tl-scrub");
    this.legend = {
      lanes: root.querySelector("#tl-count-lanes"),
      bars: root.querySelector("#tl-count-bars"),
      blocks: root.querySelector("#tl-count-blocks"),
      kept: root.querySelector("#tl-count-kept"),
    };
    this.span = DEFAULT_SPAN;
    this.following = true;
    this.viewEnd = 0;
    this.lastFrame = 0;
    this.lastLayout = 0;
    this.lastPrune = -Infinity; // prune (and count what is kept) on the first frame
    this.rows = [];
    this.rowOfTask = new Map();
    /** This server's instance (hello.instances[0].inst) on a shared feed; "" otherwise. */
    this.selfInst = "";
    this.reset();
    this.bindControls();
    new ResizeObserver(() => this.resize()).observe(this.scroll);
    this.resize();
    requestAnimationFrame((now) => this.frame(now));
  }

  /** Forget everything (a different server answered). */
  reset() {
    this.lanes = new Map();
    this.groups = new Map();
    /** Every block, sorted by t: {t, dur, task, run, name}. */
    this.blocks = [];
    this.maxBlockDur = 0;
    this.marks = 0;
    /** Earliest time any kept data was seen at, and the last prune's cutoff. */
    this.oldestSeen = null;
    this.cutoff = -Infinity;
    this.layoutDirty = true;
    this.dirty = true;
  }

  // -- the model: one method per event kind ------------------------------------------------

  /**
   * The group of *run* as published by instance *inst*: run ids ("r3", "echo") are only
   * unique per instance, so on a shared feed another instance's are kept apart ("r3@inst").
   */
  groupId(run, inst) {
    return inst && inst !== this.selfInst ? `${run}@${inst}` : run;
  }

  group(id) {
    let group = this.groups.get(id);
    if (!group) {
      group = new Group(id);
      this.groups.set(id, group);
      this.layoutDirty = true;
    }
    return group;
  }

  /** A run as the server describes it (hello.runs, a reply's result). */
  upsertRun(run) {
    const group = this.group(run.id);
    group.scenario = run.scenario;
    group.params = run.params || {};
    // A reply can be older than the run_end that already arrived: never un-finish a run.
    if (!group.state || group.state === "running") group.state = run.state;
    this.layoutDirty = true;
  }

  onRunStart(e) {
    const group = this.group(this.groupId(e.run, e.inst));
    group.scenario = e.scenario;
    group.params = e.params || {};
    group.start = e.t ?? 0;
    if (!group.state || group.state === "running") group.state = "running";
    this.layoutDirty = true;
    this.noteTime(group.start);
  }

  onRunEnd(e) {
    const group = this.group(this.groupId(e.run, e.inst));
    group.state = e.state;
    group.end = e.t ?? 0;
    group.summary = e.summary || {};
    group.error = e.error || "";
    // The run's nursery has exited, so every task in it has: a lane whose exit was lost in
    // a gap must not stay "alive" (and unprunable) forever.
    for (const task of group.lanes) {
      const lane = this.lanes.get(task);
      if (lane && lane.end === null) lane.end = group.end;
    }
    this.layoutDirty = true;
  }

  addLane(task, run, name, parent, t, inst = "") {
    if (this.lanes.size >= MAX_LANES) {
      // Full: forget the oldest lane (Maps iterate in insertion order), so that what is
      // happening now is always drawn, even after hours of echo connections.
      this.lanes.delete(this.lanes.keys().next().value);
      this.layoutDirty = true;
    }
    const lane = new Lane(task, run, name, parent, t);
    this.lanes.set(task, lane);
    const group = this.group(this.groupId(run, inst));
    group.lanes.push(task);
    if (group.start === null || t < group.start) group.start = t;
    this.layoutDirty = true;
    this.noteTime(t);
    return lane;
  }

  onSpawn(e) {
    this.addLane(e.task, e.run || "", e.name, e.parent || 0, e.t ?? 0, e.inst);
  }

  onExit(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) return;
    lane.end = e.t ?? 0;
    lane.detail = `${e.steps ?? 0} steps, ${fmtDuration(e.busy ?? 0)} running`;
    this.layoutDirty = true;
  }

  onOutput(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) return;
    insertSorted(lane.outputs, e.t ?? 0, same);
    this.marks += 1;
    this.dirty = true;
  }

  onStep(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) return;
    const step = { t: e.t ?? 0, dur: e.dur, busy: e.busy, count: e.count ?? 1 };
    insertSorted(lane.steps, step, stepT);
    if (step.dur > lane.maxDur) lane.maxDur = step.dur;
    this.marks += 1;
    this.dirty = true;
  }

  onBlock(e) {
    const block = { t: e.t ?? 0, dur: e.dur, task: e.task || 0, run: e.run || "", name: e.name };
    insertSorted(this.blocks, block, blockT);
    if (block.dur > this.maxBlockDur) this.maxBlockDur = block.dur;
    this.marks += 1;
    this.noteTime(block.t);
    this.dirty = true;
  }

  onConnOpen(e) {
    const lane = this.addLane(e.task, "echo", `${e.transport} ${e.peer}`, 0, e.t ?? 0, e.inst);
    if (lane) lane.transport = e.transport;
  }

  onConnClose(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) return;
    lane.end = e.t ?? 0;
    lane.detail = `${e.msgs} msgs, closed: ${e.reason}`;
    this.layoutDirty = true;
  }

  /** How far back the kept history reaches (feed seconds), null before any data. */
  get horizon() {
    return this.oldestSeen === null ? null : Math.max(this.oldestSeen, this.cutoff);
  }

  noteTime(t) {
    if (this.oldestSeen === null || t < this.oldestSeen) this.oldestSeen = t;
  }

  // -- bounds ------------------------------------------------------------------------------

  /** Forget marks, lanes and runs that ended before *cutoff*. */
  pruneBefore(cutoff) {
    let marks = 0;
    for (const [task, lane] of this.lanes) {
      if (lane.end !== null && lane.end < cutoff) {
        this.lanes.delete(task);
        this.layoutDirty = true;
        continue;
      }
      if (lane.steps.length && lane.steps[0].t < cutoff) {
        lane.steps = lane.steps.filter((s) => s.t + s.dur >= cutoff);
      }
      if (lane.outputs.length && lane.outputs[0] < cutoff) {
        lane.outputs = lane.outputs.slice(lowerBound(lane.outputs, cutoff, same));
      }
      marks += lane.steps.length + lane.outputs.length;
    }
    if (this.blocks.length && this.blocks[0].t < cutoff) {
      this.blocks = this.blocks.filter((b) => b.t + b.dur >= cutoff);
    }
    marks += this.blocks.length;
    for (const [id, group] of this.groups) {
      group.lanes = group.lanes.filter((task) => this.lanes.has(task));
      if (!group.echo && isOver(group) && lastTime(group) < cutoff && !group.lanes.length) {
        this.groups.delete(id);
        this.layoutDirty = true;
      }
    }
    this.marks = marks;
    this.cutoff = Math.max(this.cutoff, cutoff);
  }

  prune(now) {
    this.pruneBefore(now - HISTORY_SECONDS);
    // Over the mark budget: give up the oldest tenth of what is kept, until under it.
    while (this.marks > MAX_MARKS && this.horizon !== null && this.horizon < now) {
      const horizon = this.horizon;
      this.pruneBefore(horizon + Math.max((now - horizon) * 0.1, 0.001));
    }
    const finished = [...this.groups.values()].filter((g) => !g.echo && isOver(g));
    const excess = this.groups.size - MAX_GROUPS;
    if (excess > 0) {
      finished.sort((a, b) => lastTime(a) - lastTime(b));
      for (const group of finished.slice(0, excess)) {
        for (const task of group.lanes) this.lanes.delete(task);
        this.groups.delete(group.id);
      }
      this.layoutDirty = true;
    }
  }

  // -- layout: which rows exist, in which order ----------------------------------------------

  buildRows() {
    const rows = [];
    const runs = [...this.groups.values()].filter(
      (g) => !g.echo && (g.start !== null || g.lanes.length),
    );
    // Newest run first: the live one stays at the top, where the eye is.
    runs.sort((a, b) => (b.start ?? 0) - (a.start ?? 0));
    for (const group of runs) {
      rows.push({ type: "group", group });
      if (SUMMARY_ONLY.has(group.scenario)) {
        rows.push({ type: "summary", group });
        continue;
      }
      // The nursery tree: children under their parent, in spawn order.
      const members = group.lanes.map((task) => this.lanes.get(task)).filter(Boolean);
      const children = new Map();
      const roots = [];
      const inGroup = new Set(members.map((lane) => lane.task));
      for (const lane of members) {
        if (lane.parent && inGroup.has(lane.parent)) {
          if (!children.has(lane.parent)) children.set(lane.parent, []);
          children.get(lane.parent).push(lane);
        } else {
          roots.push(lane);
        }
      }
      const visit = (lane, depth) => {
        rows.push({ type: "lane", lane, depth, group });
        for (const child of children.get(lane.task) || []) visit(child, depth + 1);
      };
      for (const lane of roots) visit(lane, 0);
    }
    // Echo connections last, one group per instance (ours first).
    const echoes = [...this.groups.values()].filter((g) => g.echo && g.lanes.length);
    echoes.sort((a, b) => (a.inst ? 1 : 0) - (b.inst ? 1 : 0) || a.id.localeCompare(b.id));
    for (const echo of echoes) {
      const members = echo.lanes.map((task) => this.lanes.get(task)).filter(Boolean);
      const open = members.filter((lane) => lane.end === null);
      const closed = members.filter((lane) => lane.end !== null).reverse();
      const shown = [...open.slice(-MAX_ECHO_LANES), ...closed].slice(0, MAX_ECHO_LANES);
      rows.push({ type: "group", group: echo, open: open.length });
      for (const lane of shown) rows.push({ type: "lane", lane, depth: 0, group: echo });
      const hidden = members.length - shown.length;
      if (hidden > 0) rows.push({ type: "more", group: echo, hidden, open: open.length });
    }
    return rows;
  }

  layout() {
    this.rows = this.buildRows();
    this.rowOfTask = new Map();
    this.rows.forEach((row, index) => {
      if (row.type === "lane") this.rowOfTask.set(row.lane.task, index);
    });
    const frag = document.createDocumentFragment();
    for (const row of this.rows) frag.append(this.labelFor(row));
    if (!this.rows.length) {
      frag.append(
        el("p", { class: "tl-empty" }, "No tasks yet: pick a scenario and press Run."),
      );
    }
    this.labels.replaceChildren(frag);
    const lanes = this.rows.filter((r) => r.type === "lane").length;
    this.legend.lanes.textContent = String(lanes);
    this.canvas.dataset.lanes = String(lanes);
    this.canvas.setAttribute(
      "aria-label",
      `Timeline of ${lanes} task lanes in ${this.rows.filter((r) => r.type === "group").length} ` +
        "groups; the lane names are listed beside it.",
    );
    this.layoutDirty = false;
    this.dirty = true;
  }

  labelFor(row) {
    const { group } = row;
    if (row.type === "group") {
      if (group.echo) {
        return el(
          "div",
          { class: "row group", dataset: { testid: "lane-group", run: group.id, inst: group.inst } },
          el("span", { class: "run-id" }, "echo"),
          ` ${row.open} open`,
          group.inst ? el("span", { class: "inst" }, ` · ${group.inst}`) : "",
        );
      }
      const button = el(
        "button",
        {
          type: "button",
          class: "row group",
          title: "Zoom the timeline to this run",
          dataset: { testid: "lane-group", run: group.id, state: group.state, inst: group.inst },
        },
        el("span", { class: "run-id" }, group.id),
        ` ${group.scenario} `,
        el("span", { class: `badge state-${group.state}` }, group.state || "?"),
      );
      button.addEventListener("click", () => this.fit(group));
      group.header = button;
      group.drawn = { bars: -1, blocks: -1 }; // force the data-* attributes onto the new node
      return button;
    }
    if (row.type === "summary") {
      return el("div", { class: "row summary", style: "--depth:1" }, "summary");
    }
    if (row.type === "more") {
      return el(
        "div",
        { class: "row more", dataset: { testid: "echo-more" } },
        `+${row.hidden} more (${row.open} open in all)`,
      );
    }
    const { lane } = row;
    const label = el(
      "div",
      {
        class: lane.end === null ? "row lane" : "row lane ended",
        style: `--depth:${row.depth}`,
        title: lane.detail ? `${lane.name}: ${lane.detail}` : lane.name,
        dataset: {
          testid: "lane",
          task: lane.task,
          run: lane.run,
          parent: lane.parent,
          depth: row.depth,
        },
      },
      el("span", { class: "swatch", style: `background:${taskColour(lane.task)}` }),
      el("span", { class: "lane-name" }, lane.name),
    );
    return label;
  }

  // -- view controls -----------------------------------------------------------------------

  bindControls() {
    for (const seconds of SPANS) {
      const label = seconds < 60 ? `${seconds} s` : `${seconds / 60} min`;
      this.spanSelect.append(el("option", { value: seconds }, label));
    }
    this.spanSelect.value = String(this.span);
    this.spanSelect.addEventListener("change", () => {
      this.setSpan(Number(this.spanSelect.value));
    });
    this.followButton.addEventListener("click", () => this.setFollowing(!this.following));
    this.scrub.addEventListener("input", () => {
      const now = this.clock();
      const oldest = Math.min(this.horizon ?? now, now - this.span);
      this.setFollowing(Number(this.scrub.value) >= 1000);
      if (!this.following) {
        this.viewEnd = oldest + this.span + ((now - oldest - this.span) * this.scrub.value) / 1000;
      }
      this.dirty = true;
    });
    // Drag to pan (and pause); shift+wheel or a horizontal wheel pans, ctrl+wheel zooms.
    let drag = null;
    this.canvas.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, end: this.currentEnd() };
      this.canvas.setPointerCapture(event.pointerId);
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (drag && event.buttons) {
        const dx = event.clientX - drag.x;
        if (Math.abs(dx) > 2) {
          this.setFollowing(false);
          this.viewEnd = drag.end - (dx / this.width) * this.span;
          this.dirty = true;
        }
      }
      this.hover(event);
    });
    this.canvas.addEventListener("pointerup", () => {
      drag = null;
    });
    this.canvas.addEventListener("pointerleave", () => {
      this.tip.hidden = true;
    });
    this.canvas.addEventListener(
      "wheel",
      (event) => {
        if (event.ctrlKey || event.metaKey) {
          event.preventDefault();
          this.zoom(event.deltaY > 0 ? 1 : -1);
        } else if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
          event.preventDefault();
          const delta = event.shiftKey ? event.deltaY : event.deltaX;
          this.setFollowing(false);
          this.viewEnd = this.currentEnd() + (delta / this.width) * this.span;
          this.dirty = true;
        }
      },
      { passive: false },
    );
    this.canvas.addEventListener("keydown", (event) => {
      const step = this.span / 10;
      if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
        this.setFollowing(false);
        this.viewEnd = this.currentEnd() + (event.key === "ArrowLeft" ? -step : step);
      } else if (event.key === "+" || event.key === "=") {
        this.zoom(-1);
      } else if (event.key === "-") {
        this.zoom(1);
      } else if (event.key === "End" || event.key === "f") {
        this.setFollowing(true);
      } else {
        return;
      }
      event.preventDefault();
      this.dirty = true;
    });
    this.scroll.addEventListener("scroll", () => {
      this.dirty = true;
    });
  }

  currentEnd() {
    return this.following ? this.clock() + this.span * LIVE_MARGIN : this.viewEnd;
  }

  setFollowing(following) {
    if (!following && this.following) this.viewEnd = this.currentEnd();
    this.following = following;
    this.followButton.setAttribute("aria-pressed", String(!following));
    this.followButton.textContent = following ? "Pause" : "Follow live";
    this.root.dataset.following = String(following);
    this.dirty = true;
  }

  setSpan(seconds) {
    const end = this.currentEnd();
    const centre = end - this.span / 2;
    this.span = seconds;
    if (!this.following) this.viewEnd = centre + seconds / 2;
    const option = SPANS.includes(seconds) ? String(seconds) : "";
    if (option) this.spanSelect.value = option;
    this.dirty = true;
  }

  zoom(direction) {
    const index = SPANS.findIndex((s) => s >= this.span);
    const next = SPANS[Math.max(0, Math.min(SPANS.length - 1, index + direction))];
    this.setSpan(next);
  }

  /** Show a whole run: the smallest window that holds it, paused. */
  fit(group) {
    if (group.start === null) return;
    const end = group.end ?? this.clock();
    const length = Math.max(end - group.start, 0.05);
    const span = SPANS.find((s) => s >= length * 1.1) ?? SPANS[SPANS.length - 1];
    this.setFollowing(false);
    this.span = span;
    this.spanSelect.value = String(span);
    this.viewEnd = group.start + (length + span) / 2;
    this.dirty = true;
  }

  // -- drawing -----------------------------------------------------------------------------

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(50, this.canvas.parentElement.clientWidth);
    const height = Math.max(ROW_H * 3, this.scroll.clientHeight);
    this.width = width;
    this.height = height;
    for (const [canvas, h] of [
      [this.canvas, height],
      [this.axis, this.axis.clientHeight || 22],
    ]) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${h}px`;
    }
    this.axisHeight = this.axis.height / dpr;
    this.dpr = dpr;
    this.dirty = true;
  }

  frame(now) {
    requestAnimationFrame((t) => this.frame(t));
    if (now - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = now;
      this.prune(this.clock());
    }
    if (this.layoutDirty && now - this.lastLayout > LAYOUT_MIN_MS) {
      this.lastLayout = now;
      this.layout();
    }
    if (!this.dirty && !this.following) return;
    if (now - this.lastFrame < FRAME_MIN_MS) return;
    this.lastFrame = now;
    this.dirty = false;
    this.draw();
  }

  x(t) {
    return ((t - this.viewStart) / this.span) * this.width;
  }

  draw() {
    const now = this.clock();
    const end = this.currentEnd();
    this.viewStart = end - this.span;
    const { viewStart } = this;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    const top = this.scroll.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H));
    const last = Math.min(this.rows.length, Math.ceil((top + this.height) / ROW_H));
    const ticks = this.ticks();

    // Grid first, then rows, then stall bands over everything: a block stalls every lane.
    ctx.fillStyle = "rgba(255, 255, 255, 0.05)";
    for (const t of ticks) ctx.fillRect(Math.round(this.x(t)), 0, 1, this.height);

    const counts = new Map(); // run -> {bars, blocks}, in the visible time window
    const count = (run) => {
      let c = counts.get(run);
      if (!c) counts.set(run, (c = { bars: 0, blocks: 0 }));
      return c;
    };
    let bars = 0;
    for (const row of this.rows) {
      if (row.type !== "lane") continue;
      const { steps } = row.lane;
      const lo = lowerBound(steps, viewStart - row.lane.maxDur, stepT);
      const hi = lowerBound(steps, end, stepT);
      let n = 0;
      for (let i = lo; i < hi; i += 1) if (steps[i].t + steps[i].dur >= viewStart) n += 1;
      count(row.lane.run).bars += n;
      bars += n;
    }

    for (let i = first; i < last; i += 1) {
      const row = this.rows[i];
      const y = i * ROW_H - top;
      if (row.type === "group") this.drawGroupRow(ctx, row.group, y, now);
      else if (row.type === "summary") this.drawSummaryRow(ctx, row.group, y);
      else {
        if (i % 2) this.stripe(ctx, y);
        if (row.type === "lane") this.drawLane(ctx, row.lane, y, now, end);
      }
    }

    const blocksInView = this.blocksIn(viewStart, end);
    for (const block of blocksInView) {
      count(block.run).blocks += 1;
      const x = this.x(block.t);
      const w = Math.max(MIN_BAR_PX, (block.dur / this.span) * this.width);
      ctx.fillStyle = BLOCK_BAND;
      ctx.fillRect(x, 0, w, this.height);
      ctx.fillStyle = BLOCK_EDGE;
      ctx.fillRect(x, 0, 1, this.height);
      ctx.fillRect(x + w - 1, 0, 1, this.height);
      const index = this.rowOfTask.get(block.task) ?? -1;
      if (index >= first && index < last) {
        this.drawBlockMarker(ctx, x, index * ROW_H - top, w, block);
      }
    }

    if (this.following || (now >= viewStart && now <= end)) {
      ctx.fillStyle = "rgba(160, 205, 255, 0.7)";
      ctx.fillRect(Math.round(this.x(now)), 0, 1, this.height);
    }

    this.drawAxis(ticks, blocksInView, now);
    this.publishCounts(bars, blocksInView.length, counts);
    // The window drawn, in feed seconds, and whether it was following (for tests: the
    // attributes describe the last frame drawn, not the state of the buttons).
    const endText = end.toFixed(3);
    if (this.canvas.dataset.viewEnd !== endText) {
      this.canvas.dataset.viewStart = viewStart.toFixed(3);
      this.canvas.dataset.viewEnd = endText;
    }
    if (this.canvas.dataset.following !== String(this.following)) {
      this.canvas.dataset.following = String(this.following);
    }
    if (this.following) this.scrub.value = "1000";
    else {
      const oldest = Math.min(this.horizon ?? now, now - this.span);
      const range = Math.max(now - oldest - this.span, 1e-6);
      this.scrub.value = String(Math.round(((this.viewEnd - oldest - this.span) / range) * 1000));
    }
  }

  blocksIn(start, end) {
    const lo = lowerBound(this.blocks, start - this.maxBlockDur, blockT);
    const hi = lowerBound(this.blocks, end, blockT);
    const out = [];
    for (let i = lo; i < hi; i += 1) {
      const b = this.blocks[i];
      if (b.t + b.dur >= start) out.push(b);
    }
    return out;
  }

  stripe(ctx, y) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.025)";
    ctx.fillRect(0, y, this.width, ROW_H);
  }

  drawGroupRow(ctx, group, y, now) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.06)";
    ctx.fillRect(0, y, this.width, ROW_H);
    if (group.start === null || group.echo) return;
    const x0 = this.x(group.start);
    const x1 = this.x(group.end ?? now);
    ctx.fillStyle = STATE_COLOURS[group.state] || STATE_COLOURS.running;
    ctx.fillRect(x0, y + 2, Math.max(2, x1 - x0), ROW_H - 4);
    ctx.fillStyle = "rgba(230, 237, 243, 0.8)";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const label = `${group.id} ${group.scenario}`;
    ctx.fillText(label, Math.max(4, x0 + 4), y + ROW_H / 2);
  }

  drawSummaryRow(ctx, group, y) {
    const entries = Object.entries(group.summary || {});
    const show = ([k, v]) => `${k.replaceAll("_", " ")} ${fmtSummaryValue(k, v)}`;
    const text =
      group.state === "running"
        ? "running… the summary comes when the run ends"
        : entries.map(show).join(" · ");
    ctx.fillStyle = "rgba(230, 237, 243, 0.85)";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const x = group.start === null ? 4 : Math.max(4, this.x(group.start) + 4);
    ctx.fillText(text || "no summary", Math.min(x, this.width - 200), y + ROW_H / 2);
  }

  drawLane(ctx, lane, y, now, end) {
    const colour = taskColour(lane.task);
    const { viewStart } = this;
    // Lifetime: a thin line from spawn to exit (or now).
    const x0 = this.x(lane.start);
    const x1 = this.x(lane.end ?? now);
    ctx.fillStyle = colour;
    ctx.globalAlpha = lane.end === null ? 0.45 : 0.25;
    ctx.fillRect(x0, y + ROW_H / 2, Math.max(1, x1 - x0), 1);
    // Steps: bars, denser (busier) windows more opaque. Adjacent bars closer than a pixel are
    // merged into one rect: same picture, far fewer draw calls when a task steps a lot.
    const { steps } = lane;
    const lo = lowerBound(steps, viewStart - lane.maxDur, stepT);
    const hi = lowerBound(steps, end, stepT);
    let runX = -1;
    let runEnd = -1;
    const flush = () => {
      if (runX >= 0) ctx.fillRect(runX, y + 6, Math.max(MIN_BAR_PX, runEnd - runX), ROW_H - 10);
    };
    ctx.globalAlpha = 0.9;
    for (let i = lo; i < hi; i += 1) {
      const s = steps[i];
      if (s.t + s.dur < viewStart) continue;
      const sx = this.x(s.t);
      const ex = Math.max(sx + MIN_BAR_PX, this.x(s.t + s.dur));
      if (sx <= runEnd + 1) runEnd = Math.max(runEnd, ex);
      else {
        flush();
        runX = sx;
        runEnd = ex;
      }
    }
    flush();
    // Output marks: a small triangle above the bar, where the line was printed.
    ctx.globalAlpha = 1;
    const outs = lane.outputs;
    const olo = lowerBound(outs, viewStart, same);
    const ohi = lowerBound(outs, end, same);
    ctx.beginPath();
    for (let i = olo; i < ohi; i += 1) {
      const x = this.x(outs[i]);
      ctx.moveTo(x - 3, y + 1);
      ctx.lineTo(x + 3, y + 1);
      ctx.lineTo(x, y + 6);
      ctx.closePath();
    }
    ctx.fillStyle = "#f5f7fa";
    ctx.fill();
    ctx.globalAlpha = 1;
  }

  drawBlockMarker(ctx, x, y, w, block) {
    ctx.fillStyle = BLOCK_MARK;
    ctx.fillRect(x, y + 2, w, ROW_H - 4);
    if (w > 70) {
      ctx.fillStyle = "#1b0c0c";
      ctx.font = "bold 11px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillText(`blocked ${fmtDuration(block.dur)}`, x + 4, y + ROW_H / 2);
    }
  }

  ticks() {
    const step =
      TICK_STEPS.find((s) => (s / this.span) * this.width >= MIN_TICK_PX) ??
      TICK_STEPS[TICK_STEPS.length - 1];
    const out = [];
    const start = Math.ceil(this.viewStart / step) * step;
    for (let t = start; t <= this.viewStart + this.span; t += step) out.push(t);
    this.tickStep = step;
    return out;
  }

  drawAxis(ticks, blocks, now) {
    const ctx = this.axis.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    const h = this.axisHeight;
    ctx.clearRect(0, 0, this.width, h);
    ctx.fillStyle = BLOCK_MARK;
    for (const block of blocks) {
      ctx.fillRect(
        this.x(block.t),
        h - 4,
        Math.max(MIN_BAR_PX, (block.dur / this.span) * this.width),
        4,
      );
    }
    const decimals = Math.max(0, -Math.floor(Math.log10(this.tickStep) + 1e-9));
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (const t of ticks) {
      const x = Math.round(this.x(t));
      ctx.fillStyle = "rgba(255, 255, 255, 0.35)";
      ctx.fillRect(x, h - 6, 1, 6);
      ctx.fillStyle = "rgba(230, 237, 243, 0.75)";
      ctx.fillText(`${t.toFixed(decimals)} s`, x + 3, 3);
    }
    if (now >= this.viewStart && now <= this.viewStart + this.span) {
      ctx.fillStyle = "rgba(160, 205, 255, 0.9)";
      ctx.fillRect(Math.round(this.x(now)), 0, 1, h);
    }
  }

  /** Counts of what the last frame drew, as text and data-* attributes (for tests, too). */
  publishCounts(bars, blocks, counts) {
    const setData = (node, key, value) => {
      if (node.dataset[key] !== String(value)) node.dataset[key] = String(value);
    };
    setData(this.canvas, "bars", bars);
    setData(this.canvas, "blocks", blocks);
    this.legend.bars.textContent = bars.toLocaleString("en");
    this.legend.blocks.textContent = blocks.toLocaleString("en");
    this.legend.kept.textContent = `${this.marks.toLocaleString("en")} marks`;
    for (const group of this.groups.values()) {
      if (!group.header) continue;
      const c = counts.get(group.id) || { bars: 0, blocks: 0 };
      if (c.bars !== group.drawn.bars || c.blocks !== group.drawn.blocks) {
        group.drawn = c;
        setData(group.header, "bars", c.bars);
        setData(group.header, "blocks", c.blocks);
      }
    }
  }

  /** Tooltip: the lane under the pointer, the time, and the step or block there. */
  hover(event) {
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const py = event.clientY - rect.top;
    const row = this.rows[Math.floor((py + this.scroll.scrollTop) / ROW_H)];
    if (!row || this.viewStart === undefined) {
      this.tip.hidden = true;
      return;
    }
    const t = this.viewStart + (px / this.width) * this.span;
    const slack = (4 / this.width) * this.span;
    const lines = [];
    if (row.type === "lane") {
      lines.push(row.lane.name);
      const step = row.lane.steps.find((s) => s.t - slack <= t && t <= s.t + s.dur + slack);
      if (step) {
        const steps = step.count > 1 ? `${step.count} steps, ` : "";
        lines.push(`ran ${steps}${fmtDuration(step.busy)} of ${fmtDuration(step.dur)}`);
      }
    } else if (row.type === "group") {
      lines.push(`${row.group.id} ${row.group.scenario} (${row.group.state})`);
    }
    const block = this.blocks.find((b) => b.t - slack <= t && t <= b.t + b.dur + slack);
    if (block) lines.push(`${block.name} held the loop ${fmtDuration(block.dur)}`);
    lines.push(`t = ${t.toFixed(3)} s`);
    this.tip.textContent = lines.join("\n");
    this.tip.hidden = false;
    const host = this.root.getBoundingClientRect();
    const left = Math.min(event.clientX - host.left + 14, host.width - 230);
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${event.clientY - host.top + 14}px`;
  }

  /** The name of a task's lane, for the console ("" if the lane is not known or gone). */
  laneName(task) {
    return this.lanes.get(task)?.name ?? "";
  }
}
