// Controls: pick a scenario, fill in its parameters, Run; the list of runs with Cancel,
// state, summary and the trace download.
//
// Rules of this module:
// * The form is built from hello.scenarios: the server's catalog is the one source of names,
//   defaults and bounds. Nothing about a scenario is hard-coded here.
// * The form checks values before sending (type, whole number, bounds, required), so an
//   obvious typo is explained at once; the server checks again and is the authority: its
//   `error` replies are shown as they come.
// * Values are never clamped or "fixed up": an out-of-range value is refused, as the server
//   would refuse it.

import { el, fmtDuration, fmtSummaryValue, fmtValue } from "./util.js";

// Runs listed at most; the oldest finished ones go first (the server keeps the last 8).
const MAX_RUNS_LISTED = 20;
// The server keeps the recorded events of this many recent runs for the trace download
// (hello.limits.keep_runs; this is only the value until hello arrives); older runs' traces
// answer 404.
const DEFAULT_KEEP_RUNS = 8;
// Control requests awaiting their reply; a server that never answers cannot grow this.
const MAX_PENDING = 100;

// How each parameter type is described beside its name.
const KIND_NAMES = { choice: "one of the choices", int: "whole number", float: "number" };

function runNumber(id) {
  const n = Number.parseInt(String(id).replace(/^\D+/, ""), 10);
  return Number.isFinite(n) ? n : 0;
}

/** "0..10" the way the server says it (whole numbers without ".0"). */
function bounds(param) {
  return `${param.min}..${param.max}`;
}

export class Controls {
  /**
   * @param {HTMLElement} root the controls column
   * @param {object} hooks send(message) -> id|null, reportError(text), scenarioChanged(name)
   */
  constructor(root, hooks) {
    this.hooks = hooks;
    /** How many recent runs' traces the server keeps (hello.limits.keep_runs). */
    this.keepRuns = DEFAULT_KEEP_RUNS;
    this.form = root.querySelector("#run-form");
    this.select = root.querySelector("#scenario");
    this.info = root.querySelector("#scenario-info");
    this.fields = root.querySelector("#params");
    this.status = root.querySelector("#form-status");
    this.runButton = root.querySelector("#run-button");
    this.list = root.querySelector("#runs");
    this.emptyNote = root.querySelector("#runs-empty");
    this.scenarios = new Map();
    /** The states a run ends in (hello.final_states): the server's, not a copy. */
    this.finalStates = new Set();
    this.runs = new Map();
    this.pending = new Map();
    this.connected = false;
    this.select.addEventListener("change", () => this.showScenario(this.select.value));
    root.querySelector("#reset-params").addEventListener("click", () => {
      this.showScenario(this.select.value);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  reset() {
    this.runs.clear();
    this.pending.clear();
    this.list.replaceChildren();
    this.emptyNote.hidden = false;
  }

  setConnected(connected) {
    this.connected = connected;
    this.runButton.disabled = !connected;
    this.runButton.title = connected ? "" : "Not connected to the server";
  }

  // -- the scenario form -------------------------------------------------------------------

  setScenarios(scenarios) {
    const previous = this.select.value;
    this.scenarios = new Map(scenarios.map((s) => [s.name, s]));
    this.select.replaceChildren(
      ...scenarios.map((s) => el("option", { value: s.name }, `${s.name}: ${s.title}`)),
    );
    const keep = this.scenarios.has(previous) ? previous : scenarios[0]?.name;
    if (keep !== undefined) {
      this.select.value = keep;
      // Rebuilding the form would throw away what the user typed: only when it changed.
      if (keep !== previous || !this.fields.childElementCount) this.showScenario(keep);
    }
  }

  showScenario(name) {
    const scenario = this.scenarios.get(name);
    if (!scenario) return;
    this.info.replaceChildren(
      el("p", { class: "idea", dataset: { testid: "scenario-idea" } }, scenario.idea),
      el(
        "p",
        { class: "watch", dataset: { testid: "scenario-watch" } },
        el("strong", {}, "Watch: "),
        scenario.watch,
      ),
    );
    const rows = scenario.params.map((param) => this.field(param));
    if (!rows.length) rows.push(el("p", { class: "hint" }, "This scenario takes no parameters."));
    this.fields.replaceChildren(el("legend", {}, "Parameters"), ...rows);
    this.status.textContent = "";
    this.status.className = "form-status";
    this.hooks.scenarioChanged?.(name);
  }

  field(param) {
    const id = `param-${param.name}`;
    const kind = KIND_NAMES[param.type] ?? param.type;
    const range = param.min !== undefined ? `, ${bounds(param)}` : "";
    const dflt = param.default === null ? "may be left empty" : `default ${param.default}`;
    let input;
    if (param.type === "choice") {
      input = el(
        "select",
        { id, name: param.name, dataset: { testid: id } },
        ...param.choices.map((c) => el("option", { value: c }, c)),
      );
      input.value = param.default;
    } else {
      input = el("input", {
        id,
        name: param.name,
        type: "number",
        inputmode: param.type === "int" ? "numeric" : "decimal",
        step: param.type === "int" ? "1" : "any",
        min: param.min,
        max: param.max,
        placeholder: param.optional ? "empty: server picks" : String(param.default),
        value: param.default === null ? "" : String(param.default),
        required: !param.optional,
        "aria-describedby": `${id}-help ${id}-error`,
        dataset: { testid: id },
      });
    }
    input.addEventListener("input", () => this.markField(input, ""));
    return el(
      "div",
      { class: "field" },
      el(
        "label",
        { for: id },
        el("span", { class: "param-name" }, param.name),
        el("span", { class: "hint" }, ` ${kind}${range}`),
      ),
      input,
      el("small", { id: `${id}-help`, class: "help" }, `${param.help} (${dflt})`),
      el("small", { id: `${id}-error`, class: "field-error", dataset: { testid: `${id}-error` } }),
    );
  }

  markField(input, message) {
    const error = this.form.querySelector(`#${input.id}-error`);
    if (error) error.textContent = message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  /** The form's values checked against the catalog: {params, errors}. */
  readParams(scenario) {
    const params = {};
    const errors = [];
    for (const param of scenario.params) {
      const input = this.form.querySelector(`#param-${param.name}`);
      if (!input) continue;
      let message = "";
      if (param.type === "choice") {
        if (param.choices.includes(input.value)) params[param.name] = input.value;
        else message = `expected one of ${param.choices.join(", ")}`;
      } else {
        const raw = input.value.trim();
        const number = Number(raw);
        if (input.validity.badInput) message = "not a number";
        else if (raw === "") {
          if (param.optional) params[param.name] = null;
          else message = `required (the default is ${param.default})`;
        } else if (!Number.isFinite(number)) message = "not a number";
        else if (param.type === "int" && !Number.isInteger(number)) {
          message = `expected a whole number, got ${raw}`;
        } else if (param.min !== undefined && (number < param.min || number > param.max)) {
          message = `${raw} is outside ${bounds(param)}`;
        } else params[param.name] = number;
      }
      this.markField(input, message);
      if (message) errors.push(`${param.name}: ${message}`);
    }
    return { params, errors };
  }

  submit() {
    const scenario = this.scenarios.get(this.select.value);
    if (!scenario) return;
    const { params, errors } = this.readParams(scenario);
    if (errors.length) {
      this.setStatus(`Not sent: ${errors.join("; ")}`, "error");
      this.form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    const id = this.hooks.send({ type: "start", scenario: scenario.name, params });
    if (id === null) {
      this.setStatus("Not sent: not connected to the server (it reconnects by itself).", "error");
      return;
    }
    this.remember(id, { kind: "start", scenario: scenario.name });
    this.setStatus(`Starting ${scenario.name}…`, "");
  }

  setStatus(text, kind) {
    this.status.textContent = text;
    this.status.className = `form-status ${kind}`;
  }

  remember(id, request) {
    this.pending.set(id, request);
    if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value);
  }

  // -- replies and errors --------------------------------------------------------------------

  /** A `reply`: true if it answered one of ours. */
  onReply(reply) {
    const request = this.pending.get(reply.id);
    this.pending.delete(reply.id);
    if (reply.result && reply.result.id) this.upsert(reply.result);
    if (!request) return false;
    if (request.kind === "start") this.setStatus(`Started ${reply.run}.`, "ok");
    return true;
  }

  /** An `error`: shown next to what caused it when we know, and always in the page's errors. */
  onError(error) {
    const request = error.id !== undefined ? this.pending.get(error.id) : undefined;
    this.pending.delete(error.id);
    if (request?.kind === "start") {
      this.setStatus(`Refused by the server: ${error.message}`, "error");
    } else if (request?.kind === "cancel") {
      const item = this.runs.get(request.run);
      if (item) {
        item.cancelling = false;
        item.problem = error.message;
        this.render(item);
      }
    }
    const what = request ? `${request.kind} ${request.run || request.scenario}` : "request";
    this.hooks.reportError(`The server refused the ${what}: ${error.message}`);
  }

  cancel(runId) {
    const item = this.runs.get(runId);
    const id = this.hooks.send({ type: "cancel", run: runId });
    if (id === null) {
      this.hooks.reportError(`Could not cancel ${runId}: not connected to the server.`);
      return;
    }
    this.remember(id, { kind: "cancel", run: runId });
    if (item) {
      item.cancelling = true;
      item.problem = "";
      this.render(item);
    }
  }

  // -- the runs list -------------------------------------------------------------------------

  setRuns(runs) {
    for (const run of runs) this.upsert(run);
  }

  upsert(run) {
    let item = this.runs.get(run.id);
    if (!item) {
      item = {
        id: run.id,
        scenario: run.scenario,
        params: run.params || {},
        state: run.state,
        summary: {},
        error: "",
        start: null,
        end: null,
        cancelling: false,
        problem: "",
        node: null,
      };
      this.runs.set(run.id, item);
    } else if (this.finalStates.has(item.state)) {
      return; // a reply can be older than the run_end already shown
    } else {
      item.state = run.state;
      item.params = run.params || item.params;
    }
    this.render(item);
  }

  onRunStart(e) {
    this.upsert({ id: e.run, scenario: e.scenario, params: e.params, state: "running" });
    const item = this.runs.get(e.run);
    item.start = e.t ?? 0;
    this.render(item);
  }

  onRunEnd(e) {
    const item = this.runs.get(e.run);
    if (!item) return; // began before the replay window; nothing to attach the end to
    item.state = e.state;
    item.end = e.t ?? 0;
    item.summary = e.summary || {};
    item.error = e.error || "";
    item.cancelling = false;
    this.render(item);
    // Traces of runs this old are gone on the server: update the links of the older ones.
    for (const other of this.runs.values()) if (other !== item) this.render(other);
  }

  render(item) {
    const newest = Math.max(0, ...[...this.runs.keys()].map(runNumber));
    const traceKept = runNumber(item.id) > newest - this.keepRuns;
    const running = !this.finalStates.has(item.state);
    const params = Object.entries(item.params)
      .map(([k, v]) => `${k}=${fmtValue(v)}`)
      .join(" ");
    const took =
      item.start !== null && item.end !== null ? ` in ${fmtDuration(item.end - item.start)}` : "";
    const head = el(
      "div",
      { class: "run-head" },
      el("span", { class: "run-id" }, item.id),
      ` ${item.scenario} `,
      el(
        "span",
        { class: `badge state-${item.state}`, dataset: { testid: "run-state" } },
        item.state,
      ),
      took ? el("span", { class: "hint" }, took) : null,
    );
    const actions = el("div", { class: "run-actions" });
    if (running) {
      const cancel = el(
        "button",
        {
          type: "button",
          class: "small",
          disabled: item.cancelling || !this.connected,
          dataset: { testid: "run-cancel" },
          "aria-label": `Cancel run ${item.id}`,
        },
        item.cancelling ? "Cancelling…" : "Cancel",
      );
      cancel.addEventListener("click", () => this.cancel(item.id));
      actions.append(cancel);
    } else if (traceKept) {
      actions.append(
        el(
          "a",
          {
            href: `/api/runs/${encodeURIComponent(item.id)}/trace.json`,
            download: `trio-echo-${item.id}.json`,
            class: "small",
            title: "The run as a Chrome trace: open it in https://ui.perfetto.dev",
            dataset: { testid: "run-trace" },
          },
          "trace.json",
        ),
      );
    } else {
      actions.append(el("span", { class: "hint" }, "trace no longer kept"));
    }
    const summary = Object.entries(item.summary);
    const node = el(
      "li",
      {
        class: "run",
        // start/end: feed seconds, when the run_start/run_end events were seen.
        dataset: {
          testid: "run",
          run: item.id,
          state: item.state,
          start: item.start,
          end: item.end,
        },
      },
      head,
      el("div", { class: "run-params" }, params || "no parameters"),
      summary.length
        ? el(
            "dl",
            { class: "summary", dataset: { testid: "run-summary" } },
            ...summary.flatMap(([k, v]) => [
              el("dt", {}, k.replaceAll("_", " ")),
              el("dd", {}, fmtSummaryValue(k, v)),
            ]),
          )
        : null,
      item.error ? el("p", { class: "run-error" }, item.error) : null,
      item.problem ? el("p", { class: "run-error" }, item.problem) : null,
      actions,
    );
    if (item.node) item.node.replaceWith(node);
    else this.insert(node, item);
    item.node = node;
    this.emptyNote.hidden = true;
  }

  insert(node, item) {
    // Newest first, by run number.
    const n = runNumber(item.id);
    const after = [...this.list.children].find((li) => runNumber(li.dataset.run) < n);
    this.list.insertBefore(node, after ?? null);
    while (this.runs.size > MAX_RUNS_LISTED) {
      const oldest = [...this.runs.values()]
        .filter((r) => this.finalStates.has(r.state))
        .sort((a, b) => runNumber(a.id) - runNumber(b.id))[0];
      if (!oldest) break;
      oldest.node?.remove();
      this.runs.delete(oldest.id);
    }
  }

  /** Refresh the Cancel buttons (they are disabled while disconnected). */
  refresh() {
    for (const item of this.runs.values()) if (!this.finalStates.has(item.state)) this.render(item);
  }
}
