// The timeline's layout: which rows exist, in which order, from the model and the view's
// choices (which nurseries are collapsed, the name filter).
//
// Rules of this module:
// * Pure: model and choices in, rows out (no DOM). A row is {type: "group" | "lane" |
//   "nursery" | "summary" | "more" | "unseen", group, ...}; the label column and the canvas
//   both draw `rows[i]` at y = i * ROW_H, so they line up by construction.
// * Newest run first, its tasks as Trio holds them: a task, then the nurseries it opened (in
//   the order their first child was seen), then each nursery's children in spawn order.
//   Echo connections last, capped, one group per instance on a shared feed (ours first).
// * Rows stay few whatever the task count: a nursery with more than COLLAPSE_ABOVE children
//   (CROWDED_COLLAPSE_ABOVE in a run of more than CROWDED_RUN tasks) starts collapsed into one
//   row with counts (its children's steps drawn as one density strip), an expanded one shows
//   at most MAX_EXPANDED children, and a run at most MAX_RUN_ROWS rows; the filter finds the
//   rest.
// * A nursery gets its own row only when it says something: its task opened more than one, it
//   is big (collapsible), or the person toggled it. One small nursery is shown by indenting
//   its children under its task, as before nurseries were reported.

// Echo connections drawn as lanes at most; the rest are one summary row.
export const MAX_ECHO_LANES = 50;
// A nursery with more children than this starts collapsed: ~30 rows fit on a screen, and 200
// still scroll; 10,000 would be a wall nobody reads (and 10,000 label nodes).
export const COLLAPSE_ABOVE = 200;
// An expanded nursery lists at most this many children, then a "+N more" row.
export const MAX_EXPANDED = 500;
// A run with more tasks than this is crowded: there, every nursery with more than
// CROWDED_COLLAPSE_ABOVE children starts collapsed too (50 nurseries of 200 are also 10,000).
export const CROWDED_RUN = 1_000;
export const CROWDED_COLLAPSE_ABOVE = 8;
// Rows of one run's tree at most, whatever the shapes and the clicks; then one "+N more" row.
export const MAX_RUN_ROWS = 2_000;

/** The key of the nursery that holds *lane*, unique within its run. */
export function nurseryKey(lane) {
  // Without a nursery id (an older server, serve's scenarios), the parent's one nursery.
  return lane.nursery ? `n${lane.nursery}` : `p${lane.parent}`;
}

/** The key under which the view remembers a nursery's collapsed state. */
export const toggleKey = (run, key) => `${run}/${key}`;

/**
 * The rows to draw.
 * @param {TimelineModel} model
 * @param {{collapsed?: Map<string, boolean>, filter?: string}} choices `collapsed`: nurseries the
 *   person toggled (toggleKey -> collapsed); `filter`: show only tasks whose name contains it
 *   (case-insensitive), with the tasks and nurseries that hold them
 * @returns {{rows: object[], matches: number}} matches: tasks the filter found (0 without one)
 */
export function buildRows(model, choices = {}) {
  const collapsed = choices.collapsed ?? new Map();
  const filter = (choices.filter ?? "").trim().toLowerCase();
  const rows = [];
  let matches = 0;
  const runs = [...model.groups.values()].filter(
    (g) => !g.isEcho && (g.start !== null || g.lanes.length || g.unseen.size),
  );
  // Newest run first: the live one stays at the top, where the eye is.
  runs.sort((a, b) => (b.start ?? 0) - (a.start ?? 0));
  for (const group of runs) {
    // A scenario whose tasks run in a quiet nursery (not traced): its summary, not lanes.
    if (model.facts.noLanes.has(group.scenario)) {
      if (filter) continue;
      rows.push({ type: "group", group });
      rows.push({ type: "summary", group });
      continue;
    }
    const members = group.lanes.map((task) => model.lanes.get(task)).filter(Boolean);
    const keep = filter ? kept(members, filter) : null;
    if (keep) {
      matches += keep.matches;
      if (!keep.matches) continue;
    }
    rows.push({ type: "group", group });
    if (group.unseen.size && !filter) {
      rows.push({ type: "unseen", group, count: group.unseen.size });
    }
    treeRows(rows, group, members, keep?.lanes ?? null, collapsed);
  }
  for (const echo of model.echoGroups()) {
    let members = echo.lanes.map((task) => model.lanes.get(task)).filter(Boolean);
    const open = members.filter((lane) => lane.end === null);
    if (filter) {
      members = members.filter((lane) => lane.name.toLowerCase().includes(filter));
      matches += members.length;
    }
    if (members.length) {
      const alive = members.filter((lane) => lane.end === null);
      const closed = members.filter((lane) => lane.end !== null).reverse();
      const shown = [...alive.slice(-MAX_ECHO_LANES), ...closed].slice(0, MAX_ECHO_LANES);
      rows.push({ type: "group", group: echo, open: open.length });
      for (const lane of shown) rows.push({ type: "lane", lane, depth: 0, group: echo });
      const hidden = members.length - shown.length;
      if (hidden > 0) rows.push({ type: "more", group: echo, hidden, open: open.length });
    }
  }
  return { rows, matches };
}

/** The lanes the filter keeps: the matches and every task above them. */
function kept(members, filter) {
  const byTask = new Map(members.map((lane) => [lane.task, lane]));
  const lanes = new Set();
  let matches = 0;
  for (const lane of members) {
    if (!lane.name.toLowerCase().includes(filter)) continue;
    matches += 1;
    for (let up = lane; up && !lanes.has(up); up = byTask.get(up.parent)) lanes.add(up);
  }
  return { lanes, matches };
}

/** Push the rows of one run's task tree; *keep* (a Set of lanes) when a filter is on. */
function treeRows(rows, group, members, keep, collapsed) {
  const inGroup = new Set(members.map((lane) => lane.task));
  // parent task (0: the run's top) -> nursery key -> children, in first-seen order.
  const families = new Map();
  for (const lane of members) {
    const parent = lane.parent && inGroup.has(lane.parent) ? lane.parent : 0;
    let nurseries = families.get(parent);
    if (!nurseries) families.set(parent, (nurseries = new Map()));
    const key = parent ? nurseryKey(lane) : lane.nursery ? `n${lane.nursery}` : "top";
    let kids = nurseries.get(key);
    if (!kids) nurseries.set(key, (kids = []));
    kids.push(lane);
  }
  const collapseAbove = members.length > CROWDED_RUN ? CROWDED_COLLAPSE_ABOVE : COLLAPSE_ABOVE;
  const start = rows.length;
  let cut = 0; // tasks left out over MAX_RUN_ROWS
  const visitTask = (lane, depth) => {
    if (rows.length - start >= MAX_RUN_ROWS) {
      cut += subtreeLanes(lane).length;
      return;
    }
    rows.push({ type: "lane", lane, depth, group });
    visitLevel(lane.task, depth + 1);
  };
  const subtreeLanes = (lane) => {
    const out = [lane];
    for (let i = 0; i < out.length; i += 1) {
      for (const kids of families.get(out[i].task)?.values() ?? []) out.push(...kids);
    }
    return out;
  };
  const visitLevel = (parent, depth) => {
    const nurseries = families.get(parent);
    if (!nurseries) return;
    const several = nurseries.size > 1;
    for (const [key, kids] of nurseries) {
      if (rows.length - start >= MAX_RUN_ROWS) {
        for (const kid of kids) cut += subtreeLanes(kid).length;
        continue;
      }
      // The tree's shape (which nurseries get a row) does not change with the filter; only
      // which tasks are listed does.
      const shown = keep ? kids.filter((kid) => keep.has(kid)) : kids;
      if (!shown.length) continue;
      const toggled = collapsed.get(toggleKey(group.id, key));
      const big = kids.length > collapseAbove;
      if (!several && !big && toggled === undefined) {
        for (const kid of shown) visitTask(kid, depth);
        continue;
      }
      // The filter opens every nursery it found something in.
      const isCollapsed = keep ? false : (toggled ?? big);
      let alive = 0;
      for (const kid of kids) if (kid.end === null) alive += 1;
      rows.push({
        type: "nursery",
        group,
        key,
        parent,
        nursery: kids[0].nursery || 0,
        depth,
        lanes: kids,
        // Collapsed, its whole subtree is drawn (one strip) and counted in the run's bars.
        within: isCollapsed ? kids.flatMap((kid) => subtreeLanes(kid)) : [],
        alive,
        collapsed: isCollapsed,
      });
      if (isCollapsed) continue;
      for (const kid of shown.slice(0, MAX_EXPANDED)) visitTask(kid, depth + 1);
      if (shown.length > MAX_EXPANDED) {
        rows.push({ type: "more", group, hidden: shown.length - MAX_EXPANDED, depth: depth + 1 });
      }
    }
  };
  visitLevel(0, 0);
  if (cut) rows.push({ type: "more", group, hidden: cut, depth: 0 });
}
