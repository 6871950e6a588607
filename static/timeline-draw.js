// The timeline's canvas: step bars, output marks, blocks, run bands and the time axis.
//
// Rules of this module:
// * It reads the model and the layout and never changes them; one `draw` paints one frame of
//   the rows in view and returns what it drew (counts), which the shell publishes.
// * Thousands of DOM nodes per second would be the slowest part of the page, so the marks
//   are on a canvas; adjacent bars closer than a pixel are merged into one rect.

import { fmtDuration, fmtSummaryValue, taskColour } from "./util.js";
import { lowerBound, runTitle, same, stepT } from "./timeline-model.js";

export const ROW_H = 18; // px, also in style.css (--row-h): labels and canvas rows must line up
const MIN_BAR_PX = 1.5; // a 20 µs step is still visible
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
export const BLOCK_MARK = "#ff6b6b";
const STALL_BAND = "rgba(255, 90, 90, 0.22)";
const NURSERY_STRIP = "#6fb3ff";

export class Painter {
  /**
   * @param {HTMLCanvasElement} canvas the rows
   * @param {HTMLCanvasElement} axis the time axis above them
   */
  constructor(canvas, axis) {
    this.canvas = canvas;
    this.axis = axis;
    this.width = 50;
    this.height = ROW_H * 3;
    this.dpr = 1;
    this.viewStart = undefined;
    this.span = 1;
  }

  /** Size both canvases to *width* x *height* CSS pixels (sharp at the device's pixel ratio). */
  resize(width, height) {
    const dpr = window.devicePixelRatio || 1;
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
  }

  x(t) {
    return ((t - this.viewStart) / this.span) * this.width;
  }

  /** Feed time at canvas x (CSS px) in the last frame drawn. */
  timeAt(px) {
    return this.viewStart + (px / this.width) * this.span;
  }

  /**
   * Paint one frame: the window [end - span, end] of *rows*, scrolled by *top* px.
   * @returns {{bars: number, blocks: number, counts: Map<string, {bars, blocks}>}} what was
   *   drawn in the time window (all lanes, not only the rows scrolled into view)
   */
  draw({ model, rows, rowOfTask, top, now, end, span, following }) {
    this.span = span;
    this.viewStart = end - span;
    const { viewStart } = this;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    const first = Math.max(0, Math.floor(top / ROW_H));
    const last = Math.min(rows.length, Math.ceil((top + this.height) / ROW_H));
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
    const countLane = (lane) => {
      const { steps } = lane;
      const lo = lowerBound(steps, viewStart - lane.maxDur, stepT);
      const hi = lowerBound(steps, end, stepT);
      let n = 0;
      for (let i = lo; i < hi; i += 1) if (steps[i].t + steps[i].dur >= viewStart) n += 1;
      count(lane.run).bars += n;
      bars += n;
    };
    for (const row of rows) {
      if (row.type === "lane") countLane(row.lane);
      // A collapsed nursery's children are drawn (as its strip) and counted too.
      else if (row.type === "nursery") for (const lane of row.within) countLane(lane);
    }

    for (let i = first; i < last; i += 1) {
      const row = rows[i];
      const y = i * ROW_H - top;
      if (row.type === "group") this.drawGroupRow(ctx, row.group, y, now);
      else if (row.type === "summary") this.drawSummaryRow(ctx, row.group, y);
      else if (row.type === "nursery") this.drawNurseryRow(ctx, row, y, end);
      else {
        if (i % 2) this.stripe(ctx, y);
        if (row.type === "lane") this.drawLane(ctx, row.lane, y, now, end);
      }
    }

    const blocksInView = model.blocksIn(viewStart, end);
    for (const block of blocksInView) {
      count(block.run).blocks += 1;
      const x = this.x(block.t);
      const w = Math.max(MIN_BAR_PX, (block.dur / span) * this.width);
      ctx.fillStyle = BLOCK_BAND;
      ctx.fillRect(x, 0, w, this.height);
      ctx.fillStyle = BLOCK_EDGE;
      ctx.fillRect(x, 0, 1, this.height);
      ctx.fillRect(x + w - 1, 0, 1, this.height);
      const index = rowOfTask.get(block.task) ?? -1;
      if (index >= first && index < last) {
        this.drawBlockMarker(ctx, x, index * ROW_H - top, w, block);
      }
    }

    // A step that still holds its loop (a `stall` not yet closed by its block): a band that
    // grows until now, so the stall is on the timeline while it lasts, not only afterwards.
    for (const stall of model.stalls.values()) {
      const x = this.x(stall.since);
      const w = Math.max(MIN_BAR_PX, this.x(now) - x);
      ctx.fillStyle = STALL_BAND;
      ctx.fillRect(x, 0, w, this.height);
      const index = rowOfTask.get(stall.task) ?? -1;
      if (index >= first && index < last) {
        this.drawBlockMarker(ctx, x, index * ROW_H - top, w, {
          dur: now - stall.since,
          label: "stalled",
        });
      }
    }

    if (following || (now >= viewStart && now <= end)) {
      ctx.fillStyle = "rgba(160, 205, 255, 0.7)";
      ctx.fillRect(Math.round(this.x(now)), 0, 1, this.height);
    }

    this.drawAxis(ticks, blocksInView, now);
    return { bars, blocks: blocksInView.length, counts };
  }

  stripe(ctx, y) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.025)";
    ctx.fillRect(0, y, this.width, ROW_H);
  }

  drawGroupRow(ctx, group, y, now) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.06)";
    ctx.fillRect(0, y, this.width, ROW_H);
    if (group.start === null || group.isEcho) return;
    const x0 = this.x(group.start);
    const x1 = this.x(group.end ?? now);
    ctx.fillStyle = STATE_COLOURS[group.state] || STATE_COLOURS.running;
    ctx.fillRect(x0, y + 2, Math.max(2, x1 - x0), ROW_H - 4);
    ctx.fillStyle = "rgba(230, 237, 243, 0.8)";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const label = `${group.id} ${runTitle(group)}`;
    ctx.fillText(label, Math.max(4, x0 + 4), y + ROW_H / 2);
  }

  /**
   * A nursery's row: collapsed, its children's steps as one density strip (one column per
   * pixel, brighter where more of them ran), so 10,000 tasks cost one row and ~width rects.
   */
  drawNurseryRow(ctx, row, y, end) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.035)";
    ctx.fillRect(0, y, this.width, ROW_H);
    if (!row.collapsed) return;
    const width = Math.ceil(this.width);
    const density = new Uint32Array(width + 1);
    const { viewStart } = this;
    for (const lane of row.within) {
      const { steps } = lane;
      const hi = lowerBound(steps, end, stepT);
      for (let i = lowerBound(steps, viewStart - lane.maxDur, stepT); i < hi; i += 1) {
        const s = steps[i];
        if (s.t + s.dur < viewStart) continue;
        const x0 = Math.max(0, Math.floor(this.x(s.t)));
        const x1 = Math.min(width, Math.max(x0, Math.floor(this.x(s.t + s.dur))));
        for (let x = x0; x <= x1; x += 1) density[x] += 1;
      }
    }
    let peak = 0;
    for (const n of density) if (n > peak) peak = n;
    if (!peak) return;
    ctx.fillStyle = NURSERY_STRIP;
    // Four levels of opacity: few fillStyle changes, and the eye tells no more apart.
    for (let level = 1; level <= 4; level += 1) {
      ctx.globalAlpha = 0.2 * level;
      for (let x = 0; x <= width; x += 1) {
        const n = density[x];
        if (n && Math.ceil((n / peak) * 4) === level) ctx.fillRect(x, y + 5, 1, ROW_H - 10);
      }
    }
    ctx.globalAlpha = 1;
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
      ctx.fillText(`${block.label ?? "blocked"} ${fmtDuration(block.dur)}`, x + 4, y + ROW_H / 2);
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
}
