// The timeline's layout: which rows exist, in which order, from the model.
//
// Rules of this module:
// * Pure: model in, rows out (no DOM). A row is {type: "group" | "lane" | "summary" |
//   "more", group, ...}; the label column and the canvas both draw `rows[i]` at y = i * ROW_H,
//   so they line up by construction.
// * Newest run first, its tasks as the nursery tree holds them (children under the task whose
//   nursery holds them, in spawn order); echo connections last, capped.

// Echo connections drawn as lanes at most; the rest are one summary row.
export const MAX_ECHO_LANES = 50;
// Scenarios whose tasks run in a quiet nursery (not traced): their group shows the summary.
const SUMMARY_ONLY = new Set(["many-tasks"]);

/** The rows to draw for *model* (a TimelineModel). */
export function buildRows(model) {
  const rows = [];
  const runs = [...model.groups.values()].filter(
    (g) => g.id !== "echo" && (g.start !== null || g.lanes.length),
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
    const members = group.lanes.map((task) => model.lanes.get(task)).filter(Boolean);
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
  const echo = model.groups.get("echo");
  if (echo && echo.lanes.length) {
    const members = echo.lanes.map((task) => model.lanes.get(task)).filter(Boolean);
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
