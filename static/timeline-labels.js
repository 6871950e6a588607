// The timeline's label column: one DOM row per layout row, beside the canvas.
//
// Rules of this module:
// * Labels are real DOM (readable, selectable, testable by data-testid); the marks are on the
//   canvas. Row i of the layout is label i, ROW_H tall, so both line up.
// * It only draws what the layout says; a click is handed back to the shell (`onFit`), which
//   owns the view.

import { el, taskColour } from "./util.js";

export class Labels {
  /**
   * @param {HTMLElement} node the label column (#tl-labels)
   * @param {{onFit(group): void}} actions what a click on a run's header does
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
      if (group.id === "echo") {
        return el(
          "div",
          { class: "row group", dataset: { testid: "lane-group", run: "echo" } },
          el("span", { class: "run-id" }, "echo"),
          ` ${row.open} open`,
        );
      }
      const button = el(
        "button",
        {
          type: "button",
          class: "row group",
          title: "Zoom the timeline to this run",
          dataset: { testid: "lane-group", run: group.id, state: group.state },
        },
        el("span", { class: "run-id" }, group.id),
        ` ${group.scenario} `,
        el("span", { class: `badge state-${group.state}` }, group.state || "?"),
      );
      button.addEventListener("click", () => this.actions.onFit(group));
      this.headers.set(group.id, { node: button, drawn: { bars: -1, blocks: -1 } });
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
    return el(
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
