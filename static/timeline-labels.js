// The timeline's label column: one DOM row per layout row, beside the canvas.
//
// Rules of this module:
// * Labels are real DOM (readable, selectable, testable by data-testid); the marks are on the
//   canvas. Row i of the layout is label i, ROW_H tall, so both line up.
// * It only draws what the layout says; a click is handed back to the shell (`onFit` on a
//   run, `onToggle` on a nursery, `onTask` on a task, `onLoadTree` on tasks the page has not
//   seen start), which owns the view.

import { el, taskColour } from "./util.js";
import { runTitle } from "./timeline-model.js";

export class Labels {
  /**
   * @param {HTMLElement} node the label column (#tl-labels)
   * @param {{onFit(group), onToggle(row), onTask(lane), onLoadTree(group)}} actions what a
   *   click on a run's header, a nursery, a task or a run's unseen tasks does
   */
  constructor(node, actions) {
    this.node = node;
    this.actions = actions;
    /** Run id -> its header node (it carries the drawn counts as data-* attributes). */
    this.headers = new Map();
  }

  /** Replace the column with the labels of *rows*. */
  render(rows) {
    this.headers = new Map();
    const frag = document.createDocumentFragment();
    for (const row of rows) frag.append(this.labelFor(row));
    if (!rows.length) {
      frag.append(
        el("p", { class: "tl-empty" }, "No tasks yet: pick a scenario and press Run."),
      );
    }
    this.node.replaceChildren(frag);
  }

  labelFor(row) {
    const { group } = row;
    if (row.type === "group") {
      if (group.isEcho) {
        return el(
          "div",
          {
            class: "row group",
            dataset: { testid: "lane-group", run: group.id, inst: group.inst },
          },
          el("span", { class: "run-id" }, group.run),
          ` ${row.open} open`,
          instLabel(group),
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
        el("span", { class: "run-id" }, group.run),
        ` ${runTitle(group)} `,
        el("span", { class: `badge state-${group.state}` }, group.state || "?"),
        instLabel(group),
      );
      button.addEventListener("click", () => this.actions.onFit(group));
      this.headers.set(group.id, { node: button, drawn: { bars: -1, blocks: -1 } });
      return button;
    }
    if (row.type === "summary") {
      return el("div", { class: "row summary", style: "--depth:1" }, "summary");
    }
    if (row.type === "nursery") return this.nurseryLabel(row);
    if (row.type === "unseen") {
      // Asked by a click only: the server takes the tree inside the watched loop.
      const button = el(
        "button",
        {
          type: "button",
          class: "row unseen",
          style: "--depth:0",
          title: "Ask the server for the task tree (GET /api/tasks)",
          dataset: { testid: "load-tree", run: group.id, count: row.count },
        },
        `⟳ ${row.count.toLocaleString("en")} tasks started before this page: show them`,
      );
      button.addEventListener("click", () => this.actions.onLoadTree(group));
      return button;
    }
    if (row.type === "more" && !group.isEcho) {
      return el(
        "div",
        { class: "row more", style: `--depth:${row.depth}`, dataset: { testid: "nursery-more" } },
        `+${row.hidden.toLocaleString("en")} more: the filter finds one by name`,
      );
    }
    if (row.type === "more") {
      return el(
        "div",
        { class: "row more", dataset: { testid: "echo-more" } },
        `+${row.hidden} more (${row.open} open in all)`,
      );
    }
    const { lane } = row;
    // A task of this server's run is a button (it opens where the task is suspended); an echo
    // connection, or a task of another instance (this server cannot see it), is only a name.
    const isTask = group.inspectable;
    const label = el(
      isTask ? "button" : "div",
      {
        type: isTask ? "button" : null,
        class: lane.end === null ? "row lane" : "row lane ended",
        style: `--depth:${row.depth}`,
        title: lane.detail ? `${lane.name}: ${lane.detail}` : lane.name,
        dataset: {
          testid: "lane",
          task: lane.task,
          run: lane.run,
          parent: lane.parent,
          depth: row.depth,
          nursery: lane.nursery || null,
        },
      },
      el("span", { class: "swatch", style: `background:${taskColour(lane.task)}` }),
      el("span", { class: "lane-name" }, lane.name),
    );
    if (isTask) label.addEventListener("click", () => this.actions.onTask(lane));
    return label;
  }

  /** A nursery: its size and how many of its tasks are alive; a click collapses or expands. */
  nurseryLabel(row) {
    const total = row.lanes.length;
    const name = row.nursery ? `nursery ${row.nursery}` : "nursery";
    const button = el(
      "button",
      {
        type: "button",
        class: "row nursery",
        style: `--depth:${row.depth}`,
        "aria-expanded": String(!row.collapsed),
        title: row.collapsed ? "Show its tasks" : "Collapse into one row",
        dataset: {
          testid: "nursery",
          run: row.group.id,
          parent: row.parent,
          nursery: row.key,
          count: total,
          alive: row.alive,
          depth: row.depth,
        },
      },
      el("span", { class: "twisty", "aria-hidden": "true" }, row.collapsed ? "▸" : "▾"),
      // The counts first: the label column is narrow, and they are what the row is for.
      el("span", { class: "count" }, `${total.toLocaleString("en")} task${total === 1 ? "" : "s"}`),
      total === row.alive ? "" : ` (${row.alive.toLocaleString("en")} alive)`,
      ` · ${name}`,
    );
    button.addEventListener("click", () => this.actions.onToggle(row));
    return button;
  }

  /** Put the counts the last frame drew on each run's header (data-bars, data-blocks). */
  publishCounts(counts) {
    for (const [run, header] of this.headers) {
      const c = counts.get(run) || { bars: 0, blocks: 0 };
      if (c.bars !== header.drawn.bars || c.blocks !== header.drawn.blocks) {
        header.drawn = c;
        header.node.dataset.bars = String(c.bars);
        header.node.dataset.blocks = String(c.blocks);
      }
    }
  }
}

/** On a shared feed, another instance's group says whose it is (" · host/pid/worker"). */
function instLabel(group) {
  return group.inst ? el("span", { class: "inst" }, ` · ${group.inst}`) : "";
}
