// The page's entry point: builds the panels, connects the feed, and routes each message to
// the panels that show it.
//
// Module map (each file's top comment says its rules):
//   feed.js      /ws/events: hello, batches, gaps, replies; reconnect with ?since=
//   timeline.js  lanes per task (nursery tree), step bars, output marks, blocks: the shell
//                over timeline-model.js (pure), -layout.js (pure), -labels.js, -draw.js, -input.js
//   console.js   interleaved output lines in seq order
//   controls.js  scenario form, Run, the runs list with Cancel and trace download
//   echo.js      echo connections and the /ws/echo box; echo-totals.js (pure) its counters
//   lag.js       loop lag chart and task count
//   notices.js   errors, server notices, the gap notice
//   stalls.js    the stall banner: which task holds the loop now, and its stack
//   tasks.js     the task panel: where a clicked task is suspended (GET /api/tasks/{id})
//   util.js      DOM and formatting helpers

import { Console } from "./console.js";
import { Controls } from "./controls.js";
import { EchoPanel } from "./echo.js";
import { Feed, Status } from "./feed.js";
import { LagChart } from "./lag.js";
import { Notices } from "./notices.js";
import { Stalls } from "./stalls.js";
import { fetchTree, TaskPanel } from "./tasks.js";
import { Timeline } from "./timeline.js";
import { el, fmtValue } from "./util.js";

const $ = (selector) => document.querySelector(selector);

/**
 * The server's feed clock, as the page estimates it: hello carries `now` (feed seconds), and
 * the page counts on from when it arrived. Events' `t` are on the same clock. hello reaches
 * the page a little after it was stamped, so the estimate starts slightly behind; an event
 * stamped later than the estimate says so, and the clock moves forward to it (never back).
 */
const clock = {
  base: 0,
  at: performance.now(),
  now() {
    return this.base + (performance.now() - this.at) / 1000;
  },
  set(feedNow) {
    this.base = feedNow;
    this.at = performance.now();
  },
  observe(t) {
    const ahead = t - this.now();
    if (ahead > 0) this.base += ahead;
  },
};

const notices = new Notices($("#notices"));
// The `run` of echo connections' events, from hello (the server's name, not a copy).
let echoRun = null;
const stalls = new Stalls($("#stalls"));
const taskPanel = new TaskPanel($("#task-detail"));
const timeline = new Timeline($("#timeline"), () => clock.now(), {
  onTask: (lane) => taskPanel.show(lane),
  onLoadTree: () => loadTree(),
});

/**
 * Tasks that started before this page connected (their spawn is older than the server's
 * replay): ask the server for the live tree, on a click only (it is taken inside the
 * watched loop).
 */
async function loadTree() {
  try {
    const added = timeline.adoptTasks(await fetchTree());
    notices.notice("info", `Loaded the task tree: ${added.toLocaleString("en")} tasks added.`);
  } catch (exc) {
    notices.error(`Could not load the task tree: ${exc.message}`);
  }
}

const consoleView = new Console($("#console"), (task) => timeline.laneName(task));
const echo = new EchoPanel($("#echo"));
const lag = new LagChart($("#loop"));
const controls = new Controls($("#controls"), {
  send: (message) => feed.send(message),
  reportError: (text) => notices.error(text),
});

// One failure report per page load is enough to see that something is wrong; a broken
// handler would otherwise fill the messages with the same line 20 times a second.
let handlerFailed = false;

/** On a shared feed (--feed redis://...): whether *e* is this server's own event. */
const mine = (e) => !e.inst || e.inst === timeline.selfInst;

function dispatch(e) {
  if (e.t) clock.observe(e.t);
  switch (e.kind) {
    case "spawn":
      timeline.onSpawn(e);
      break;
    case "exit":
      timeline.onExit(e);
      break;
    case "output":
      timeline.onOutput(e);
      consoleView.output(e);
      break;
    case "step":
      timeline.onStep(e);
      break;
    case "stall":
      if (timeline.onStall(e)) stalls.onStall(e);
      break;
    case "block":
      timeline.onBlock(e);
      stalls.onBlock(e);
      // In the console only when a scenario did it: that is the lesson. A block elsewhere in
      // the server (rare) is shown on the timeline, not between the tutorial's lines.
      if (e.run && e.run !== echoRun) {
        consoleView.note(e, `${e.name} held the loop for ${Math.round(e.dur * 1000)} ms: ` +
          "every other task waited");
      }
      break;
    case "run_start":
      timeline.onRunStart(e);
      // Only this server's runs can be cancelled from here; other instances' are shown.
      if (mine(e)) controls.onRunStart(e);
      consoleView.note(e, `${e.run} ${e.scenario} started (${Object.entries(e.params || {})
        .map(([k, v]) => `${k}=${fmtValue(v)}`).join(" ")})`);
      break;
    case "run_end":
      timeline.onRunEnd(e);
      stalls.onRunEnd(e);
      if (mine(e)) controls.onRunEnd(e);
      consoleView.note(e, `${e.run} ${e.state}${e.error ? `: ${e.error}` : ""}`);
      break;
    case "conn_open":
      timeline.onConnOpen(e);
      echo.onConnOpen(e);
      break;
    case "conn_close":
      timeline.onConnClose(e);
      echo.onConnClose(e);
      break;
    // The echo totals and the loop-lag chart are this server's own (each instance has its
    // loop); other instances' connections still appear as lanes and in the echo list.
    case "echo_stats":
      if (mine(e)) echo.onEchoStats(e);
      break;
    case "stats":
      if (mine(e)) lag.onStats(e);
      break;
    case "notice":
      notices.notice(e.level, e.text);
      break;
    default:
      // A newer server may add kinds; this page shows what it knows.
      break;
  }
}

function showHello(hello) {
  clock.set(hello.now);
  $("#server-info").textContent = `trio-echo ${hello.version} · pid ${hello.pid}`;
  showInstances(hello);
  const tcp = hello.listeners?.tcp;
  $("#tcp-address").textContent = tcp ? tcp : "?";
  echo.setListeners(hello.listeners);
  showPeers(hello);
  lag.setBlockThreshold(hello.limits?.block_threshold);
  echoRun = hello.echo_run;
  controls.finalStates = new Set(hello.final_states || []);
  controls.keepRuns = hello.limits?.keep_runs ?? controls.keepRuns;
  controls.setScenarios(hello.scenarios || []);
  controls.setRuns(hello.runs || []);
  timeline.learn(hello);
  for (const run of hello.runs || []) timeline.upsertRun(run);
}

/** On a shared feed: which instances the page shows (their lanes are grouped by instance). */
function showInstances(hello) {
  const info = $("#server-info");
  const instances = Array.isArray(hello.instances) ? hello.instances : [];
  info.dataset.instances = String(instances.length);
  if (!instances.length) return;
  const names = instances.map((i) => `${i.host} pid ${i.pid}${i.worker ? ` w${i.worker}` : ""}`);
  info.append(
    el(
      "span",
      { dataset: { testid: "instances" }, title: names.join("\n") },
      ` · shared feed: ${instances.length} instance${instances.length === 1 ? "" : "s"}`,
    ),
  );
}

/** "worker X of N" with links to the others, when the server runs several workers. */
function showPeers(hello) {
  const node = $("#peers");
  if (!Array.isArray(hello.peers) || !hello.peers.length) {
    node.hidden = true;
    node.replaceChildren();
    return;
  }
  const workers = new Set([hello.worker, ...hello.peers.map((p) => p.worker)]);
  const links = hello.peers
    .filter((p) => p.worker !== hello.worker && typeof p.url === "string")
    .filter((p) => /^https?:\/\//.test(p.url)) // only web links, never javascript: and friends
    .sort((a, b) => a.worker - b.worker)
    .map((p) => el("a", { href: p.url, dataset: { testid: "peer-link" } }, `worker ${p.worker}`));
  node.replaceChildren(
    el("span", { dataset: { testid: "worker-of" } }, `worker ${hello.worker} of ${workers.size}`),
    ...(links.length ? [" · others: ", ...links.flatMap((a, i) => (i ? [", ", a] : [a]))] : []),
  );
  node.hidden = false;
}

function resetAll() {
  timeline.reset();
  consoleView.reset();
  controls.reset();
  echo.reset();
  lag.reset();
  notices.reset();
  stalls.reset();
  taskPanel.reset();
}

const feed = new Feed({
  onHello(hello, { restarted }) {
    if (restarted) {
      resetAll();
      notices.notice("info", "The server restarted: the page starts over with its history.");
    }
    showHello(hello);
  },
  onEvents(events) {
    for (const e of events) {
      try {
        dispatch(e);
      } catch (exc) {
        console.error("trio-echo: could not show event", e, exc);
        if (!handlerFailed) {
          handlerFailed = true;
          notices.error(`The page could not show a ${e.kind} event (${exc}); see the console.`);
        }
      }
    }
    consoleView.flush();
  },
  onGap(gap, total) {
    notices.showGap(gap.missed, total);
    // The block that closes a stall may be in the hole; a stall still going is reported again.
    stalls.reset();
  },
  onReply(reply) {
    controls.onReply(reply);
  },
  onError(error) {
    controls.onError(error);
  },
  onProblem(text) {
    notices.error(text);
  },
  onStatus(status, detail) {
    const node = $("#status");
    node.dataset.state = status;
    $("#status-text").textContent = status === Status.CONNECTED ? "connected" : status;
    $("#status-detail").textContent = detail ? `: ${detail}` : "";
    controls.setConnected(status === Status.CONNECTED);
    controls.refresh();
  },
});

// Debug hook (tests and the curious, from the devtools console): drop the socket to watch a
// reconnect, or send a raw control message to see how the server answers it.
window.trioEcho = Object.freeze({
  dropSocket: () => feed.dropSocket(),
  send: (message) => feed.send(message),
  status: () => feed.status,
  lastSeq: () => feed.lastSeq,
});

feed.start();
