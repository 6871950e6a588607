// The timeline's model: runs (groups), task lanes as their nurseries hold them, step windows,
// output times and blocks, kept within fixed bounds.
//
// Rules of this module:
// * Pure: no DOM, no timers, no network. Events go in through one method per kind; the
//   shell (timeline.js) reads the result and the two flags that say what changed
//   (`layoutDirty`: rows appear or go; `dirty`: something to redraw). Tests import it alone.
// * Times are feed times (seconds since the server started); an event's mark goes where its
//   `t` says, not where it arrived: a `step` carries the time its window *started*.
// * Memory is bounded (see MAX_MARKS, HISTORY_SECONDS, MAX_LANES, MAX_GROUPS); the oldest
//   history goes first, and `horizon` says how far back the model still remembers.
// * On a shared feed (--feed redis://...) events carry `inst`, the instance that published
//   them. Run ids ("r3", "echo") are unique per instance only, so another instance's run is
//   its own group, "r3@host/pid/worker" (groupId); every run a lane, block or stall names in
//   the model is such a group id. Lane (task) ids are unique across instances already.

import { fmtDuration } from "./util.js";

// Bounded history: at most 20,000 marks (step bars + output marks + blocks) and at most the
// last 10 minutes, whichever is smaller; beyond that the oldest marks are forgotten. 20,000
// marks are ~2 MB of small objects and still draw in a few ms when all are in view.
export const MAX_MARKS = 20_000;
export const HISTORY_SECONDS = 600;
// Lanes kept at most (tasks + echo connections): a watched program's 10,000 tasks, twice over;
// past it the oldest lane is forgotten. The layout collapses big nurseries, so this bounds
// memory (~300 B a lane plus its marks), not rows.
export const MAX_LANES = 20_000;
// Exited tasks stay (greyed) while their history is kept, but at most this many: a program
// that churns through short tasks would otherwise fill the lane budget with the dead.
export const MAX_EXITED_LANES = 2_000;
// Run groups kept: the server keeps 8 recent runs (and at most 4 run at once).
export const MAX_GROUPS = 16;

export class Lane {
  constructor(task, run, name, parent, start, nursery = 0) {
    this.task = task;
    /** The id of its group (see groupId): the run, "@instance" for another instance's. */
    this.run = run;
    this.name = name;
    this.parent = parent;
    /** The id of the nursery that holds the task (0: not said; see the layout). */
    this.nursery = nursery;
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

export class Group {
  /**
   * @param {string} id the run as its instance names it, "@instance" added for another
   *   instance's (see TimelineModel.groupId)
   * @param {boolean} isEcho a group of echo connections (one per instance), not a run
   */
  constructor(id, isEcho = false) {
    const at = id.indexOf("@");
    this.id = id;
    /** The run id as its instance knows it ("r3"), and that instance ("" for this server). */
    this.run = at < 0 ? id : id.slice(0, at);
    this.inst = at < 0 ? "" : id.slice(at + 1);
    this.isEcho = isEcho;
    this.scenario = isEcho ? this.run : "";
    this.params = {};
    this.state = isEcho ? "running" : "";
    this.start = null;
    this.end = null;
    this.summary = {};
    this.error = "";
    /** Lane ids in spawn order. */
    this.lanes = [];
    /**
     * Tasks this run's events named but whose `spawn` the page never saw: they started before
     * the page connected, further back than the server's replay. GET /api/tasks has them.
     */
    this.unseen = new Set();
  }

  /** Its tasks can be asked about here (GET /api/tasks): a run of this server. */
  get inspectable() {
    return !this.isEcho && !this.inst;
  }
}

// A watched program's command, as a run's title, is cut to this many characters.
const MAX_TITLE = 48;

/**
 * What a run is called on the timeline: its scenario, or for a watched program's run (whose
 * params carry the command's `argv`) the command, file names without their folders.
 */
export function runTitle(group) {
  const argv = group.params?.argv;
  if (!Array.isArray(argv) || !argv.length) return group.scenario;
  const text = argv.map((arg) => String(arg).split("/").pop()).join(" ");
  return text.length > MAX_TITLE ? `${text.slice(0, MAX_TITLE - 1)}…` : text;
}

/** Insert *item* into *list* sorted by key(item); items arrive nearly sorted, so scan back. */
export function insertSorted(list, item, key) {
  const k = key(item);
  let i = list.length;
  while (i > 0 && key(list[i - 1]) > k) i -= 1;
  if (i === list.length) list.push(item);
  else list.splice(i, 0, item);
}

/** First index in sorted *list* whose key is >= k. */
export function lowerBound(list, k, key) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(list[mid]) < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * What the page takes from the server's hello instead of keeping copies: the states a run
 * ends in (`final_states`), the `run` of echo connections' events (`echo_run`), and the
 * scenarios whose tasks get no lanes (`scenarios[].lanes === false`), and on a shared feed
 * this server's own instance (`instances[0].inst`; "" otherwise). Before a hello: none.
 */
export function serverFacts(hello = {}) {
  const scenarios = Array.isArray(hello.scenarios) ? hello.scenarios : [];
  return {
    finalStates: new Set(hello.final_states ?? []),
    echoRun: hello.echo_run ?? null,
    noLanes: new Set(scenarios.filter((s) => s.lanes === false).map((s) => s.name)),
    selfInst: (Array.isArray(hello.instances) && hello.instances[0]?.inst) || "",
  };
}

/** The latest time known of a run; -Infinity for one known only from hello.runs. */
const lastTime = (group) => group.end ?? group.start ?? -Infinity;

export const stepT = (s) => s.t;
export const blockT = (b) => b.t;
export const same = (x) => x;

export class TimelineModel {
  constructor() {
    this.facts = serverFacts();
    this.reset();
  }

  /** Take the server's facts from its *hello* (see serverFacts). */
  learn(hello) {
    this.facts = serverFacts(hello);
    this.layoutDirty = true;
  }

  /** The run has ended (known from run_end, or from hello.runs for a run seen only there). */
  isOver(group) {
    return this.facts.finalStates.has(group.state);
  }

  /** This server's group of echo connections, if any. */
  get echo() {
    return this.groups.get(this.facts.echoRun);
  }

  /** Every group of echo connections: this server's first, then one per other instance. */
  echoGroups() {
    const echoes = [...this.groups.values()].filter((g) => g.isEcho);
    return echoes.sort((a, b) => Number(!!a.inst) - Number(!!b.inst) || a.id.localeCompare(b.id));
  }

  /**
   * The group of *run* as published by instance *inst*: run ids are only unique per instance,
   * so on a shared feed another instance's are kept apart ("r3@host/pid/worker").
   */
  groupId(run, inst) {
    return inst && inst !== this.facts.selfInst ? `${run}@${inst}` : run;
  }

  /** Whether group *id* holds echo connections (this server's, or another instance's). */
  isEchoId(id) {
    const { echoRun } = this.facts;
    return echoRun !== null && (id === echoRun || id.startsWith(`${echoRun}@`));
  }

  /** Forget everything (a different server answered). */
  reset() {
    this.lanes = new Map();
    this.groups = new Map();
    /** Every block, sorted by t: {t, dur, task, run, name}. */
    this.blocks = [];
    this.maxBlockDur = 0;
    /** Steps still holding a loop, by group id: the last `stall` of each, until its block. */
    this.stalls = new Map();
    this.marks = 0;
    /** Earliest time any kept data was seen at, and the last prune's cutoff. */
    this.oldestSeen = null;
    this.cutoff = -Infinity;
    this.layoutDirty = true;
    this.dirty = true;
  }

  // -- one method per event kind ------------------------------------------------------------

  group(id) {
    let group = this.groups.get(id);
    if (!group) {
      group = new Group(id, this.isEchoId(id));
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
    this.stalls.delete(group.id);
    // The run's nursery has exited, so every task in it has: a lane whose exit was lost in
    // a gap must not stay "alive" (and unprunable) forever.
    for (const task of group.lanes) {
      const lane = this.lanes.get(task);
      if (lane && lane.end === null) lane.end = group.end;
    }
    this.layoutDirty = true;
  }

  /** A lane for *task* in the group *groupId* (see groupId), from feed time *t*. */
  addLane(task, groupId, name, parent, t, nursery = 0) {
    if (this.lanes.size >= MAX_LANES) {
      // Full: forget the oldest lane (Maps iterate in insertion order), so that what is
      // happening now is always drawn, even after hours of echo connections.
      this.lanes.delete(this.lanes.keys().next().value);
      this.layoutDirty = true;
    }
    const lane = new Lane(task, groupId, name, parent, t, nursery);
    this.lanes.set(task, lane);
    const group = this.group(groupId);
    group.lanes.push(task);
    group.unseen.delete(task);
    if (group.start === null || t < group.start) group.start = t;
    this.layoutDirty = true;
    this.noteTime(t);
    return lane;
  }

  onSpawn(e) {
    const groupId = this.groupId(e.run || "", e.inst);
    this.addLane(e.task, groupId, e.name, e.parent || 0, e.t ?? 0, e.nursery || 0);
  }

  onExit(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) {
      const group = this.groups.get(this.groupId(e.run, e.inst));
      if (group?.unseen.delete(e.task)) this.layoutDirty = true;
      return;
    }
    lane.end = e.t ?? 0;
    lane.detail = `${e.steps ?? 0} steps, ${fmtDuration(e.busy ?? 0)} running`;
    this.layoutDirty = true;
  }

  onOutput(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) {
      this.noteUnseen(e);
      return;
    }
    insertSorted(lane.outputs, e.t ?? 0, same);
    this.marks += 1;
    this.dirty = true;
  }

  onStep(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) {
      this.noteUnseen(e);
      return;
    }
    const step = { t: e.t ?? 0, dur: e.dur, busy: e.busy, count: e.count ?? 1 };
    insertSorted(lane.steps, step, stepT);
    if (step.dur > lane.maxDur) lane.maxDur = step.dur;
    this.marks += 1;
    this.dirty = true;
  }

  onBlock(e) {
    const run = this.groupId(e.run || "", e.inst);
    const block = { t: e.t ?? 0, dur: e.dur, task: e.task || 0, run, name: e.name };
    insertSorted(this.blocks, block, blockT);
    if (block.dur > this.maxBlockDur) this.maxBlockDur = block.dur;
    this.marks += 1;
    this.noteTime(block.t);
    // The block closes the stall of its loop: the step returned after block.dur.
    for (const [run, stall] of this.stalls) {
      if (run === block.run || stall.task === block.task) this.stalls.delete(run);
    }
    this.dirty = true;
  }

  /**
   * A step still holds the loop: the latest word of the watchdog ({task, name, seconds,
   * frames}). Returns false, and keeps nothing, for a stall that its block already closed: a
   * watchdog that can only publish through the stuck loop (serve's own) delivers its reports
   * after the step returned, behind the block.
   */
  onStall(e) {
    const t = e.t ?? 0;
    const seconds = e.seconds ?? 0;
    if (this.closedBy(e.task || 0, t - seconds)) return false;
    const run = this.groupId(e.run || "", e.inst);
    this.stalls.set(run, {
      task: e.task || 0,
      run,
      name: e.name || "",
      since: t - seconds,
      t,
      seconds,
      frames: Array.isArray(e.frames) ? e.frames : [],
    });
    this.noteTime(t - seconds);
    this.dirty = true;
    return true;
  }

  /** Whether a block of *task* already covers feed time *since* (the stall began by then). */
  closedBy(task, since) {
    const lo = lowerBound(this.blocks, since - this.maxBlockDur, blockT);
    for (let i = this.blocks.length - 1; i >= lo; i -= 1) {
      const b = this.blocks[i];
      if (b.task === task && b.t <= since && since <= b.t + b.dur) return true;
    }
    return false;
  }

  onConnOpen(e) {
    const groupId = this.groupId(e.run || this.facts.echoRun, e.inst);
    const lane = this.addLane(e.task, groupId, `${e.transport} ${e.peer}`, 0, e.t ?? 0);
    if (lane) lane.transport = e.transport;
  }

  onConnClose(e) {
    const lane = this.lanes.get(e.task);
    if (!lane) return;
    lane.end = e.t ?? 0;
    lane.detail = `${e.msgs} msgs, closed: ${e.reason}`;
    this.layoutDirty = true;
  }

  /**
   * An event of a task with no lane: if its run is live, the task started before we looked.
   * The run itself may be unknown too (its run_start is older than the replay as well).
   * Only this server's: another instance's tree cannot be loaded from here.
   */
  noteUnseen(e) {
    if (!e.run || e.run === this.facts.echoRun || !e.task) return;
    const id = this.groupId(e.run, e.inst);
    if (id !== e.run) return;
    const group = this.group(id);
    if (this.isOver(group) || group.unseen.has(e.task)) return;
    if (group.unseen.size >= MAX_LANES) return; // counted up to the lane budget, no further
    group.unseen.add(e.task);
    this.layoutDirty = true;
  }

  /**
   * Lanes for the tasks of GET /api/tasks's runs ({run, tasks: [{id, name, parent, nursery,
   * state}]}) that the page has none for, placed at feed time *t* (when they started is not
   * known; they exist now). Returns how many lanes were added.
   */
  adoptTasks(runs, t) {
    // serve answers for its own loop as one run ("serve"), whose tasks belong to scenario
    // runs: a task the page is missing goes to the run whose events named it.
    const missing = new Map();
    for (const group of this.groups.values()) {
      for (const task of group.unseen) missing.set(task, group);
    }
    let added = 0;
    for (const entry of runs) {
      if (!Array.isArray(entry.tasks)) continue;
      const own = this.groups.get(entry.run);
      if (own) {
        // Known only from its tasks' steps until now: the server says it is live.
        if (!own.state) own.state = "running";
        if (!own.scenario && entry.pid) own.scenario = `pid ${entry.pid}`;
      }
      // Parents come before their children in the answer (a walk from the root task).
      for (const task of entry.tasks) {
        if (!task.id || this.lanes.has(task.id) || task.state === "exited") continue;
        const group = own ?? missing.get(task.id);
        if (!group) continue; // the server's own plumbing: no lane
        this.addLane(task.id, group.id, task.name, task.parent || 0, t, task.nursery || 0);
        added += 1;
      }
    }
    // The answer is the whole live tree: a task still missing has exited meanwhile.
    for (const group of this.groups.values()) group.unseen.clear();
    this.layoutDirty = true;
    return added;
  }

  /** How far back the kept history reaches (feed seconds), null before any data. */
  get horizon() {
    return this.oldestSeen === null ? null : Math.max(this.oldestSeen, this.cutoff);
  }

  noteTime(t) {
    if (this.oldestSeen === null || t < this.oldestSeen) this.oldestSeen = t;
  }

  /** The blocks that overlap [start, end], oldest first. */
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

  /** The name of a task's lane ("" if the lane is not known or gone). */
  laneName(task) {
    return this.lanes.get(task)?.name ?? "";
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
      if (!group.isEcho && this.isOver(group) && lastTime(group) < cutoff && !group.lanes.length) {
        this.groups.delete(id);
        this.layoutDirty = true;
      }
    }
    this.marks = marks;
    this.cutoff = Math.max(this.cutoff, cutoff);
  }

  /** Over MAX_EXITED_LANES exited lanes: forget those that exited first. */
  pruneExited() {
    const exited = [];
    for (const lane of this.lanes.values()) if (lane.end !== null) exited.push(lane);
    if (exited.length <= MAX_EXITED_LANES) return;
    exited.sort((a, b) => a.end - b.end);
    for (const lane of exited.slice(0, exited.length - MAX_EXITED_LANES)) {
      this.lanes.delete(lane.task);
    }
    for (const group of this.groups.values()) {
      group.lanes = group.lanes.filter((task) => this.lanes.has(task));
    }
    this.layoutDirty = true;
  }

  /** Apply every bound, as of feed time *now*. */
  prune(now) {
    this.pruneBefore(now - HISTORY_SECONDS);
    // Over the mark budget: forget the oldest marks down to 90% of it (room for the next
    // second), in one more pass: the cutoff is read off the marks' own end times.
    if (this.marks > MAX_MARKS) {
      const ends = new Float64Array(this.marks);
      let n = 0;
      for (const lane of this.lanes.values()) {
        for (const s of lane.steps) ends[n++] = s.t + s.dur;
        for (const t of lane.outputs) ends[n++] = t;
      }
      for (const b of this.blocks) ends[n++] = b.t + b.dur;
      const sorted = ends.subarray(0, n).sort();
      const drop = n - Math.floor(MAX_MARKS * 0.9);
      if (drop > 0) this.pruneBefore(sorted[drop]);
    }
    this.pruneExited();
    const finished = [...this.groups.values()].filter((g) => !g.isEcho && this.isOver(g));
    const excess = this.groups.size - MAX_GROUPS;
    if (excess > 0 && finished.length) {
      finished.sort((a, b) => lastTime(a) - lastTime(b));
      for (const group of finished.slice(0, excess)) {
        for (const task of group.lanes) this.lanes.delete(task);
        this.groups.delete(group.id);
      }
      this.layoutDirty = true;
    }
  }
}
