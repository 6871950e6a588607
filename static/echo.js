// The echo panel: live TCP, TLS, websocket and UDP echo connections (bytes, messages), the
// counters (echo-totals.js), and a websocket echo box that talks to /ws/echo.
//
// Rules of this module:
// * Connections are known from conn_open and conn_close; their counters come from the
//   once-a-second echo_stats (cumulative [task, bytes_in, bytes_out, msgs]). Nothing per echo
//   message reaches the page: the server summarises.
// * The table shows the busiest MAX_ROWS connections; all of them are counted.
// * The echo box keeps text as text: what is sent as a text frame comes back as one, and is
//   shown as it came.

import { echoTotals } from "./echo-totals.js";
import { el, fmtBytes, fmtDuration, taskColour } from "./util.js";

// Connections tracked at most (the server's default limit is 10,000 TCP connections);
// beyond this they are counted in the totals only.
const MAX_TRACKED = 20_000;
// Rows drawn in the table: the busiest first.
const MAX_ROWS = 12;
// Recently closed connections remembered (with their totals and reason).
const MAX_CLOSED = 8;
// echo_stats comes once a second while there is echo traffic; after this long without one,
// the rates shown are stale and drop to zero.
const STATS_STALE_MS = 2500;
// Lines kept in the echo box's log.
const MAX_ECHO_LOG = 50;
// The table is rebuilt at most this often (conn_open storms would otherwise rebuild per event).
const RENDER_MIN_MS = 250;

export class EchoPanel {
  constructor(root) {
    this.table = root.querySelector("#echo-conns");
    this.totals = root.querySelector("#echo-totals");
    this.closedList = root.querySelector("#echo-closed");
    this.form = root.querySelector("#echo-form");
    this.input = root.querySelector("#echo-input");
    this.log = root.querySelector("#echo-log");
    this.boxStatus = root.querySelector("#echo-box-status");
    this.socket = null;
    this.queue = [];
    this.lastRender = 0;
    this.renderTimer = null;
    this.reset();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendEcho(this.input.value);
    });
    setInterval(() => this.checkStale(), 1000);
  }

  reset() {
    this.conns = new Map();
    this.closed = [];
    this.stats = {};
    this.statsAt = 0;
    this.untracked = 0;
    // hello.listeners: which transports this server echoes on (TLS and UDP counters need it).
    this.listeners = {};
    this.scheduleRender();
  }

  /** The listeners this server's hello names; the TLS and UDP counters show only for those on. */
  setListeners(listeners) {
    this.listeners = listeners || {};
    this.scheduleRender();
  }

  // -- the feed's side -----------------------------------------------------------------------

  onConnOpen(e) {
    if (this.conns.size >= MAX_TRACKED) {
      this.untracked += 1;
      return;
    }
    this.conns.set(e.task, {
      task: e.task,
      transport: e.transport,
      peer: e.peer,
      opened: e.t ?? 0,
      bytesIn: 0,
      bytesOut: 0,
      msgs: 0,
    });
    this.scheduleRender();
  }

  onConnClose(e) {
    if (!this.conns.delete(e.task) && this.untracked > 0) this.untracked -= 1;
    this.closed.unshift({
      task: e.task,
      transport: e.transport,
      peer: e.peer,
      bytesIn: e.bytes_in,
      msgs: e.msgs,
      dur: e.dur,
      reason: e.reason,
    });
    this.closed.length = Math.min(this.closed.length, MAX_CLOSED);
    this.scheduleRender();
  }

  onEchoStats(e) {
    this.stats = e;
    this.statsAt = performance.now();
    for (const [task, bytesIn, bytesOut, msgs] of e.conns || []) {
      let conn = this.conns.get(task);
      if (!conn) {
        // Opened before the replay window began: known from its numbers only.
        if (this.conns.size >= MAX_TRACKED) continue;
        conn = { task, transport: "?", peer: "?", opened: null, bytesIn: 0, bytesOut: 0, msgs: 0 };
        this.conns.set(task, conn);
      }
      conn.bytesIn = bytesIn;
      conn.bytesOut = bytesOut;
      conn.msgs = msgs;
    }
    this.scheduleRender();
  }

  checkStale() {
    if (this.statsAt && performance.now() - this.statsAt > STATS_STALE_MS) {
      this.stats = { ...this.stats, bytes_per_s: 0, msgs_per_s: 0 };
      this.statsAt = 0;
      this.scheduleRender();
    }
  }

  scheduleRender() {
    if (this.renderTimer !== null) return;
    const wait = Math.max(0, RENDER_MIN_MS - (performance.now() - this.lastRender));
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.lastRender = performance.now();
      this.render();
    }, wait);
  }

  render() {
    const open = { all: this.conns.size + this.untracked, tcp: 0, ws: 0, tls: 0, udp: 0 };
    for (const conn of this.conns.values()) {
      if (conn.transport in open) open[conn.transport] += 1;
    }
    const totals = echoTotals({
      stats: this.stats,
      fresh: this.statsAt !== 0,
      open,
      listeners: this.listeners,
    });
    this.totals.replaceChildren(...totals.map(stat));
    const busiest = [...this.conns.values()]
      .sort((a, b) => b.bytesIn - a.bytesIn || b.task - a.task)
      .slice(0, MAX_ROWS);
    const rows = busiest.map((c) =>
      el(
        "tr",
        { dataset: { testid: "echo-conn", task: c.task, transport: c.transport } },
        el(
          "td",
          {},
          el("span", { class: "swatch", style: `background:${taskColour(c.task)}` }),
          c.transport,
        ),
        el("td", { class: "peer" }, c.peer),
        el("td", { class: "num" }, fmtBytes(c.bytesIn)),
        el("td", { class: "num" }, c.msgs.toLocaleString("en")),
      ),
    );
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: 4, class: "hint" }, "no open connections")));
    } else if (this.conns.size > MAX_ROWS) {
      rows.push(
        el(
          "tr",
          {},
          el("td", { colspan: 4, class: "hint" }, `+${this.conns.size - MAX_ROWS} more open`),
        ),
      );
    }
    this.table.tBodies[0].replaceChildren(...rows);
    this.closedList.replaceChildren(
      ...this.closed.map((c) =>
        el(
          "li",
          {},
          `${c.transport} ${c.peer}: ${fmtBytes(c.bytesIn)}, ${c.msgs} msgs in ` +
            `${fmtDuration(c.dur)} (${c.reason})`,
        ),
      ),
    );
  }

  // -- the echo box (/ws/echo) -----------------------------------------------------------------

  openSocket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/echo`);
    this.socket = socket;
    this.setBoxStatus("connecting…");
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.setBoxStatus("open");
      for (const text of this.queue.splice(0)) this.transmit(text);
    });
    socket.addEventListener("message", (message) => {
      if (typeof message.data === "string") this.addLog("in", message.data);
      else this.addLog("in", `(binary, ${message.data.size ?? message.data.byteLength} bytes)`);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.queue = [];
      const reason = event.reason ? `, ${event.reason}` : "";
      this.setBoxStatus(`closed (${event.code}${reason}); the next send reopens it`);
    });
  }

  sendEcho(text) {
    if (!text) {
      this.setBoxStatus("type something to send");
      return;
    }
    if (!this.socket) this.openSocket();
    if (this.socket.readyState === WebSocket.OPEN) this.transmit(text);
    else this.queue.push(text);
    this.input.value = "";
    this.input.focus();
  }

  transmit(text) {
    this.socket.send(text);
    this.addLog("out", text);
  }

  addLog(direction, text) {
    const line = el(
      "li",
      { class: direction, dataset: { testid: direction === "in" ? "echo-in" : "echo-out" } },
      el("span", { class: "dir", "aria-label": direction === "in" ? "received" : "sent" },
        direction === "in" ? "←" : "→"),
      el("span", { class: "text" }, text),
    );
    this.log.append(line);
    while (this.log.childElementCount > MAX_ECHO_LOG) this.log.firstElementChild.remove();
    this.log.scrollTop = this.log.scrollHeight;
  }

  setBoxStatus(text) {
    this.boxStatus.textContent = text;
  }
}

function stat({ label, value, text, testid, title }) {
  return el(
    "div",
    { class: "stat", title },
    el("span", { class: "stat-value", dataset: { testid, value: String(value) } }, text),
    el("span", { class: "stat-label" }, label),
  );
}
