// The timeline: one lane per task, grouped by run as its nursery tree, with the scheduler's
// steps drawn as bars (a Gantt chart of the Trio scheduler), output marks, and blocks.
//
// This file is the shell that puts the parts together and owns the view (the time window,
// following or paused) and the frame loop. The parts, each with its own rules:
//   timeline-model.js   the model: events in, lanes and marks kept within bounds (pure)
//   timeline-layout.js  which rows exist, in which order (pure)
//   timeline-labels.js  the label column (DOM)
//   timeline-draw.js    the canvas: bars, marks, blocks, axis
//   timeline-input.js   controls, drag, wheel, keys, tooltip
//
// Rules of the whole:
// * Model and drawing are separate: events only change the model (cheap, no DOM); a frame
//   draws what is in view, at most ~30 times a second; labels are rebuilt at most 10 times.
// * What was drawn is counted and published as data-* attributes (data-bars, data-blocks,
//   data-lanes, data-view-start/-end), so tests and curious people can check the drawing
//   without reading pixels.

import { Labels } from "./timeline-labels.js";
import { buildRows, toggleKey } from "./timeline-layout.js";
import { Painter, ROW_H } from "./timeline-draw.js";
import { bindInput, SPANS } from "./timeline-input.js";
import { TimelineModel } from "./timeline-model.js";

const DEFAULT_SPAN = 5;
const FRAME_MIN_MS = 30; // following live: ~30 redraws a second is smooth enough
const LAYOUT_MIN_MS = 100; // label rows are rebuilt at most 10 times a second
const PRUNE_EVERY_MS = 1000;
// While following, "now" sits this far (as a fraction of the window) from the right edge.
const LIVE_MARGIN = 0.04;

export class Timeline {
  /**
   * @param {HTMLElement} root the timeline section, holding the elements looked up below
   * @param {() => number} clock the server's feed time now, in seconds
   * @param {{onTask(lane), onLoadTree(group)}} actions what a click on a task's lane, or on a
   *   run's tasks that started before the page connected, does
   */
  constructor(root, clock, actions) {
    this.root = root;
    this.clock = clock;
    this.actions = actions;
    this.scroll = root.querySelector("#tl-scroll");
    this.canvas = root.querySelector("#tl-canvas");
    this.tip = root.querySelector("#tl-tip");
    this.followButton = root.querySelector("#tl-follow");
    this.spanSelect = root.querySelector("#tl-span");
    this.scrub = root.querySelector("#tl-scrub");
    this.filterInput = root.querySelector("#tl-filter");
    this.matchCount = root.querySelector("#tl-matches");
    this.legend = {
      lanes: root.querySelector("#tl-count-lanes"),
      bars: root.querySelector("#tl-count-bars"),
      blocks: root.querySelector("#tl-count-blocks"),
      kept: root.querySelector("#tl-count-kept"),
    };
    this.model = new TimelineModel();
    this.painter = new Painter(this.canvas, root.querySelector("#tl-axis"));
    this.labels = new Labels(root.querySelector("#tl-labels"), {
      onFit: (group) => this.fit(group),
      onToggle: (row) => this.toggle(row),
      onTask: (lane) => this.actions.onTask(lane),
      onLoadTree: (group) => this.actions.onLoadTree(group),
    });
    /** Nurseries the person collapsed or expanded (toggleKey -> collapsed), and the filter. */
    this.collapsed = new Map();
    this.filter = "";
    this.span = DEFAULT_SPAN;
    this.following = true;
    this.viewEnd = 0;
    this.dirty = true;
    this.lastFrame = 0;
    this.lastLayout = 0;
    this.lastPrune = -Infinity; // prune (and count what is kept) on the first frame
    this.rows = [];
    this.rowOfTask = new Map();
    bindInput(this);
    new ResizeObserver(() => this.resize()).observe(this.scroll);
    this.resize();
    requestAnimationFrame((now) => this.frame(now));
  }

  /**
   * The server's facts from its *hello* (run states, the echo run, scenarios without lanes,
   * its instance on a shared feed).
   */
  learn(hello) {
    this.model.learn(hello);
  }

  /** This server's instance on a shared feed (hello.instances[0].inst); "" otherwise. */
  get selfInst() {
    return this.model.facts.selfInst;
  }

  /** Forget everything (a different server answered). */
  reset() {
    this.model.reset();
    this.collapsed.clear();
  }

  // -- events: handed to the model ---------------------------------------------------------

  upsertRun(run) {
    this.model.upsertRun(run);
  }

  onRunStart(e) {
    this.model.onRunStart(e);
  }

  onRunEnd(e) {
    this.model.onRunEnd(e);
  }

  onSpawn(e) {
    this.model.onSpawn(e);
  }

  onExit(e) {
    this.model.onExit(e);
  }

  onOutput(e) {
    this.model.onOutput(e);
  }

  onStep(e) {
    this.model.onStep(e);
  }

  onBlock(e) {
    this.model.onBlock(e);
  }

  /** Returns false for a stall its block already closed (see TimelineModel.onStall). */
  onStall(e) {
    return this.model.onStall(e);
  }

  onConnOpen(e) {
    this.model.onConnOpen(e);
  }

  onConnClose(e) {
    this.model.onConnClose(e);
  }

  /** Lanes for the tasks of GET /api/tasks's *runs* the page has none for; how many. */
  adoptTasks(runs) {
    return this.model.adoptTasks(runs, this.clock());
  }

  /** The name of a task's lane, for the console ("" if the lane is not known or gone). */
  laneName(task) {
    return this.model.laneName(task);
  }

  // -- the view: which rows, which time window ---------------------------------------------

  /** Collapse an expanded nursery row, or expand a collapsed one. */
  toggle(row) {
    this.collapsed.set(toggleKey(row.group.id, row.key), !row.collapsed);
    this.relayout();
  }

  /** Show only the tasks whose name contains *text* (and what holds them); "" shows all. */
  setFilter(text) {
    this.filter = text;
    this.relayout();
  }

  /** Lay out again at the next frame (a choice changed, not the model). */
  relayout() {
    this.model.layoutDirty = true;
    this.lastLayout = -Infinity;
  }

  /** The task whose lane is drawn at canvas y (CSS px, unscrolled), or null. */
  laneAt(y) {
    const row = this.rows[Math.floor((y + this.scroll.scrollTop) / ROW_H)];
    return row?.type === "lane" && row.group.inspectable ? row.lane : null;
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

  // -- frames ------------------------------------------------------------------------------

  resize() {
    const width = Math.max(50, this.canvas.parentElement.clientWidth);
    const height = Math.max(ROW_H * 3, this.scroll.clientHeight);
    this.painter.resize(width, height);
    this.dirty = true;
  }

  frame(now) {
    requestAnimationFrame((t) => this.frame(t));
    const { model } = this;
    if (now - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = now;
      model.prune(this.clock());
    }
    if (model.layoutDirty && now - this.lastLayout > LAYOUT_MIN_MS) {
      this.lastLayout = now;
      this.layout();
    }
    if (!this.dirty && !model.dirty && !this.following) return;
    if (now - this.lastFrame < FRAME_MIN_MS) return;
    this.lastFrame = now;
    this.dirty = false;
    model.dirty = false;
    this.draw();
  }

  layout() {
    const { rows, matches } = buildRows(this.model, {
      collapsed: this.collapsed,
      filter: this.filter,
    });
    this.rows = rows;
    this.matchCount.textContent = this.filter ? `${matches.toLocaleString("en")} found` : "";
    this.matchCount.dataset.matches = String(matches);
    this.rowOfTask = new Map();
    this.rows.forEach((row, index) => {
      if (row.type === "lane") this.rowOfTask.set(row.lane.task, index);
    });
    // A task folded into a collapsed nursery is drawn on the nursery's row: a block or a stall
    // of one of 10,000 workers still lands on a row in view.
    this.rows.forEach((row, index) => {
      if (row.type !== "nursery") return;
      for (const lane of row.within) {
        if (!this.rowOfTask.has(lane.task)) this.rowOfTask.set(lane.task, index);
      }
    });
    this.labels.render(this.rows);
    const lanes = this.rows.filter((r) => r.type === "lane").length;
    this.legend.lanes.textContent = String(lanes);
    this.canvas.dataset.lanes = String(lanes);
    this.canvas.setAttribute(
      "aria-label",
      `Timeline of ${lanes} task lanes in ${this.rows.filter((r) => r.type === "group").length} ` +
        "groups; the lane names are listed beside it.",
    );
    this.model.layoutDirty = false;
    this.dirty = true;
  }

  draw() {
    const now = this.clock();
    const end = this.currentEnd();
    const drawn = this.painter.draw({
      model: this.model,
      rows: this.rows,
      rowOfTask: this.rowOfTask,
      top: this.scroll.scrollTop,
      now,
      end,
      span: this.span,
      following: this.following,
    });
    this.publishCounts(drawn);
    const viewStart = end - this.span;
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
      const oldest = Math.min(this.model.horizon ?? now, now - this.span);
      const range = Math.max(now - oldest - this.span, 1e-6);
      this.scrub.value = String(Math.round(((this.viewEnd - oldest - this.span) / range) * 1000));
    }
  }

  /** Counts of what the last frame drew, as text and data-* attributes (for tests, too). */
  publishCounts({ bars, blocks, counts }) {
    const setData = (node, key, value) => {
      if (node.dataset[key] !== String(value)) node.dataset[key] = String(value);
    };
    setData(this.canvas, "bars", bars);
    setData(this.canvas, "blocks", blocks);
    this.legend.bars.textContent = bars.toLocaleString("en");
    this.legend.blocks.textContent = blocks.toLocaleString("en");
    this.legend.kept.textContent = `${this.model.marks.toLocaleString("en")} marks`;
    this.labels.publishCounts(counts);
  }
}
