// The task panel: click a task's lane and see where it is suspended now: its await chain
// (file:line and function per frame, innermost last) and the nurseries and cancel scopes it
// sits in, from GET /api/tasks/{id}. Also the whole tree (GET /api/tasks), for tasks that
// started before the page connected.
//
// Rules of this module:
// * Asked on demand only (a click, the Refresh button): a stack is taken inside the watched
//   loop, so the page never polls for it.
// * One request at a time per panel: a newer click wins, an older answer arriving late is
//   dropped (`asked` counts the requests), and every request has a deadline.
// * A task that has exited, or that the server does not know, is said in words (404), not an
//   error; anything else that fails is shown in the panel's status line with its cause.
// * Text only through textContent: file names and function names are the program's.

import { el } from "./util.js";
import { frameText } from "./stalls.js";

// The server takes the stack inside the watched loop (or from the watchdog while it is
// stuck); 5 s covers a busy loop, and a person waiting longer should see why.
const FETCH_TIMEOUT_MS = 5_000;

export class TaskPanel {
  /** @param {HTMLElement} root the panel (#task-detail) */
  constructor(root) {
    this.root = root;
    this.title = root.querySelector("#task-detail-title");
    this.status = root.querySelector("#task-detail-status");
    this.where = root.querySelector("#task-detail-where");
    this.scopes = root.querySelector("#task-detail-scopes");
    this.lane = null;
    this.asked = 0;
    root.querySelector("#task-detail-close").addEventListener("click", () => this.close());
    // Escape closes it wherever the focus is (the click that opened it may have been on the
    // canvas), unless a field is being edited.
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || root.hidden) return;
      if (event.target instanceof HTMLInputElement) return;
      this.close();
    });
    root.querySelector("#task-detail-refresh").addEventListener("click", () => {
      if (this.lane) this.show(this.lane);
    });
  }

  /** Open the panel for *lane* (a timeline lane: task, name, run) and ask where it is. */
  async show(lane) {
    this.lane = lane;
    this.asked += 1;
    const asked = this.asked;
    this.root.hidden = false;
    this.root.dataset.task = String(lane.task);
    this.title.textContent = `${lane.name} (task ${lane.task}${lane.run ? `, ${lane.run}` : ""})`;
    this.setState("loading", "asking where it is…");
    let answer;
    try {
      answer = await fetchTask(lane.task);
    } catch (exc) {
      if (asked === this.asked) this.setState("error", `could not ask the server: ${exc.message}`);
      return;
    }
    if (asked !== this.asked) return; // a newer click is being answered
    if (answer.gone) {
      this.clearLists();
      this.setState("gone", "not running any more: the task has exited (or was never known)");
      return;
    }
    this.render(answer.task);
  }

  render(task) {
    this.where.replaceChildren(
      ...(task.where || []).map((frame) => el("li", {}, el("code", {}, frameText(frame)))),
    );
    this.scopes.replaceChildren(...(task.scopes || []).map((scope) => el("li", {}, scope)));
    const frames = task.where?.length ?? 0;
    const state = task.state || "?";
    this.setState(
      "ok",
      frames ? `${state}; ${frames} frames` : `${state}; no stack (the server kept none)`,
    );
    this.root.dataset.state = state;
  }

  setState(phase, text) {
    this.root.dataset.phase = phase;
    this.status.textContent = text;
    if (phase !== "ok") delete this.root.dataset.state;
    if (phase === "loading") this.clearLists();
  }

  clearLists() {
    this.where.replaceChildren();
    this.scopes.replaceChildren();
  }

  close() {
    this.asked += 1; // an answer still on its way is not shown
    this.lane = null;
    this.root.hidden = true;
  }

  /** Forget the task shown (a different server answered: its ids mean something else). */
  reset() {
    this.close();
  }
}

/**
 * GET /api/tasks: every live run's tasks ({runs: [{run, pid, tasks: [...]}]}).
 * @throws {Error} on a network failure, the deadline, an error status, or another shape
 */
export async function fetchTree() {
  const response = await fetch("/api/tasks", {
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = await response.json();
  if (!Array.isArray(body?.runs)) throw new Error("the answer has no runs");
  return body.runs;
}

/**
 * GET /api/tasks/{id}: {task} when the server knows it, {gone: true} on 404.
 * @throws {Error} on a network failure, the deadline, another status, or a body that is not
 *   a task
 */
async function fetchTask(id) {
  const response = await fetch(`/api/tasks/${encodeURIComponent(id)}`, {
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (response.status === 404) return { gone: true };
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = await response.json();
  // The task itself, or wrapped as {task} or in /api/tasks's {runs: [{tasks: [...]}]} shape.
  const task = body?.task ?? body?.runs?.[0]?.tasks?.[0] ?? body;
  if (!task || typeof task !== "object" || !Array.isArray(task.where ?? [])) {
    throw new Error("the answer is not a task");
  }
  return { task };
}
