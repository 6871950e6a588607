// The timeline's input: the window controls (follow, span, history scrub), drag and wheel to
// pan and zoom, the keyboard, and the tooltip under the pointer.
//
// Rules of this module:
// * Input changes only the view (through the shell's setFollowing / setSpan / zoom and its
//   viewEnd), never the model; every handler marks the view dirty, the next frame draws.
// * Handlers are registered once, on elements that live as long as the page.

import { el, fmtDuration } from "./util.js";
import { ROW_H } from "./timeline-draw.js";
import { runTitle } from "./timeline-model.js";

// Window widths offered, in seconds.
export const SPANS = [1, 2, 5, 10, 30, 60, 120, 300, 600];
// A press that moves less than this (px) is a click, not a drag.
const DRAG_MIN_PX = 2;

/** Wire the controls and the canvas of *tl* (a Timeline) to its view. */
export function bindInput(tl) {
  for (const seconds of SPANS) {
    const label = seconds < 60 ? `${seconds} s` : `${seconds / 60} min`;
    tl.spanSelect.append(el("option", { value: seconds }, label));
  }
  tl.spanSelect.value = String(tl.span);
  tl.spanSelect.addEventListener("change", () => {
    tl.setSpan(Number(tl.spanSelect.value));
  });
  tl.followButton.addEventListener("click", () => tl.setFollowing(!tl.following));
  tl.filterInput.addEventListener("input", () => tl.setFilter(tl.filterInput.value));
  tl.scrub.addEventListener("input", () => {
    const now = tl.clock();
    const oldest = Math.min(tl.model.horizon ?? now, now - tl.span);
    tl.setFollowing(Number(tl.scrub.value) >= 1000);
    if (!tl.following) {
      tl.viewEnd = oldest + tl.span + ((now - oldest - tl.span) * tl.scrub.value) / 1000;
    }
    tl.dirty = true;
  });
  // Drag to pan (and pause); shift+wheel or a horizontal wheel pans, ctrl+wheel zooms.
  let drag = null;
  const { canvas } = tl;
  canvas.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, end: tl.currentEnd(), moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (drag && event.buttons) {
      const dx = event.clientX - drag.x;
      if (Math.abs(dx) > DRAG_MIN_PX) {
        drag.moved = true;
        tl.setFollowing(false);
        tl.viewEnd = drag.end - (dx / tl.painter.width) * tl.span;
        tl.dirty = true;
      }
    }
    hover(tl, event);
  });
  canvas.addEventListener("pointerup", (event) => {
    // A press that did not drag is a click: on a task's lane, it asks where the task is.
    if (drag && !drag.moved) {
      const lane = tl.laneAt(event.clientY - canvas.getBoundingClientRect().top);
      if (lane) tl.actions.onTask(lane);
    }
    drag = null;
  });
  canvas.addEventListener("pointerleave", () => {
    tl.tip.hidden = true;
  });
  canvas.addEventListener(
    "wheel",
    (event) => {
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        tl.zoom(event.deltaY > 0 ? 1 : -1);
      } else if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        event.preventDefault();
        const delta = event.shiftKey ? event.deltaY : event.deltaX;
        tl.setFollowing(false);
        tl.viewEnd = tl.currentEnd() + (delta / tl.painter.width) * tl.span;
        tl.dirty = true;
      }
    },
    { passive: false },
  );
  canvas.addEventListener("keydown", (event) => {
    const step = tl.span / 10;
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      tl.setFollowing(false);
      tl.viewEnd = tl.currentEnd() + (event.key === "ArrowLeft" ? -step : step);
    } else if (event.key === "+" || event.key === "=") {
      tl.zoom(-1);
    } else if (event.key === "-") {
      tl.zoom(1);
    } else if (event.key === "End" || event.key === "f") {
      tl.setFollowing(true);
    } else {
      return;
    }
    event.preventDefault();
    tl.dirty = true;
  });
  tl.scroll.addEventListener("scroll", () => {
    tl.dirty = true;
  });
}

/** Tooltip: the lane under the pointer, the time, and the step or block there. */
function hover(tl, event) {
  const { painter } = tl;
  const rect = tl.canvas.getBoundingClientRect();
  const px = event.clientX - rect.left;
  const py = event.clientY - rect.top;
  const row = tl.rows[Math.floor((py + tl.scroll.scrollTop) / ROW_H)];
  if (!row || painter.viewStart === undefined) {
    tl.tip.hidden = true;
    return;
  }
  const t = painter.timeAt(px);
  const slack = (4 / painter.width) * tl.span;
  const lines = [];
  if (row.type === "lane") {
    lines.push(row.lane.name);
    const step = row.lane.steps.find((s) => s.t - slack <= t && t <= s.t + s.dur + slack);
    if (step) {
      const steps = step.count > 1 ? `${step.count} steps, ` : "";
      lines.push(`ran ${steps}${fmtDuration(step.busy)} of ${fmtDuration(step.dur)}`);
    }
  } else if (row.type === "nursery") {
    lines.push(`nursery: ${row.lanes.length} tasks, ${row.alive} alive`);
  } else if (row.type === "group") {
    lines.push(`${row.group.id} ${runTitle(row.group)} (${row.group.state})`);
  }
  const block = tl.model.blocks.find((b) => b.t - slack <= t && t <= b.t + b.dur + slack);
  if (block) lines.push(`${block.name} held the loop ${fmtDuration(block.dur)}`);
  for (const stall of tl.model.stalls.values()) {
    if (t >= stall.since - slack) lines.push(`${stall.name} is holding the loop (stalled)`);
  }
  lines.push(`t = ${t.toFixed(3)} s`);
  tl.tip.textContent = lines.join("\n");
  tl.tip.hidden = false;
  const host = tl.root.getBoundingClientRect();
  const left = Math.min(event.clientX - host.left + 14, host.width - 230);
  tl.tip.style.left = `${left}px`;
  tl.tip.style.top = `${event.clientY - host.top + 14}px`;
}
