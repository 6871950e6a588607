// Loop lag: how late the server's 100 ms probe woke up, ten probes a second (from `stats`),
// as a small bar chart, with the Trio task count and the feed's health beside it.
//
// A lag of a millisecond or two is normal scheduling noise; a bar as tall as a blocking call
// (the `blocking` scenario's time.sleep) means no task ran for that long.

import { fmtDuration } from "./util.js";

// One minute of probes at ten a second.
const MAX_PROBES = 600;
// The y axis never shrinks below this, so that noise looks like noise.
const MIN_SCALE = 0.01;

export class LagChart {
  constructor(root) {
    this.canvas = root.querySelector("#lag-chart");
    this.worst = root.querySelector("#lag-worst");
    this.tasks = root.querySelector("#task-count");
    this.subscribers = root.querySelector("#subscriber-count");
    this.dropped = root.querySelector("#dropped-count");
    // The server's --block-threshold (hello.limits): probes above it are drawn red. No line
    // until hello came: the page keeps no copy of the server's default.
    this.blockLine = Infinity;
    this.reset();
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  /** The server's --block-threshold, from hello.limits. */
  setBlockThreshold(seconds) {
    this.blockLine = typeof seconds === "number" && seconds > 0 ? seconds : Infinity;
    this.draw();
  }

  reset() {
    this.probes = [];
    this.draw();
  }

  onStats(e) {
    const lags = e.lags && e.lags.length ? e.lags : [e.lag ?? 0];
    this.probes.push(...lags);
    if (this.probes.length > MAX_PROBES) this.probes.splice(0, this.probes.length - MAX_PROBES);
    this.worst.textContent = fmtDuration(e.lag ?? 0);
    this.tasks.textContent = String(e.tasks ?? "?");
    this.subscribers.textContent = String(e.subscribers ?? 0);
    this.dropped.textContent = String(e.dropped ?? 0);
    this.canvas.dataset.probes = String(this.probes.length);
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 280;
    const height = canvas.clientHeight || 80;
    if (canvas.width !== Math.round(width * dpr)) canvas.width = Math.round(width * dpr);
    if (canvas.height !== Math.round(height * dpr)) canvas.height = Math.round(height * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const probes = this.probes;
    const scale = Math.max(MIN_SCALE, ...probes);
    const top = 11; // room for the scale label
    const plot = height - top;
    const barW = width / MAX_PROBES;
    const x0 = width - probes.length * barW; // newest on the right, like the timeline
    for (let i = 0; i < probes.length; i += 1) {
      const h = Math.max(1, (probes[i] / scale) * plot);
      ctx.fillStyle = probes[i] > this.blockLine ? "#ff6b6b" : "#6fb3ff";
      ctx.fillRect(x0 + i * barW, height - h, Math.max(1, barW), h);
    }
    if (scale > this.blockLine) {
      const y = height - (this.blockLine / scale) * plot;
      ctx.fillStyle = "rgba(255, 120, 120, 0.6)";
      ctx.fillRect(0, y, width, 1);
    }
    ctx.fillStyle = "rgba(230, 237, 243, 0.7)";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(`max ${fmtDuration(scale)} / 60 s`, 3, 1);
    canvas.setAttribute(
      "aria-label",
      `Loop lag over the last minute: ${probes.length} probes, the worst ${fmtDuration(scale)}.`,
    );
  }
}
