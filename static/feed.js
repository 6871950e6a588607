// The connection to /ws/events: hello, event batches, gaps, replies; reconnect and resume.
//
// Rules of this module:
// * It owns the socket and nothing else. Panels never see the socket; they get callbacks.
// * Events are handed on exactly once, in seq order: anything at or below the last seq seen
//   is dropped, so a replay after a reconnect (?since=<last seq>) never duplicates a line.
// * A lost connection is retried with exponential backoff and jitter, forever: the page is a
//   monitor, and a server restart must not need a reload.
// * A different server answering (new pid or start time) resets the page's state: its seq
//   numbers start again at 1, so the old cursor means nothing there.

// First retry after 250 ms, doubling up to 8 s; +-20% jitter so that many open pages do not
// reconnect in lockstep after a server restart.
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 8000;
const BACKOFF_JITTER = 0.2;
// Control request ids are small integers; the server echoes them in reply/error.
const MAX_REQUEST_ID = 2 ** 31;

export const Status = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
});

export class Feed {
  /**
   * @param {object} handlers onHello(hello, {restarted}), onEvents(events), onGap(gap, total),
   *   onReply(reply), onError(error), onStatus(status, detail), onProblem(text)
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.socket = null;
    /** seq of the newest event handed on; -1 before any. */
    this.lastSeq = -1;
    this.identity = null;
    this.status = Status.CONNECTING;
    this.attempt = 0;
    this.retryTimer = null;
    this.nextId = 1;
    /** Events dropped because the server's ring overtook us, summed over the page's life. */
    this.missed = 0;
  }

  /** Open the first connection. */
  start() {
    this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const since = this.lastSeq >= 0 ? `?since=${this.lastSeq}` : "";
    return `${scheme}://${location.host}/ws/events${since}`;
  }

  connect() {
    this.retryTimer = null;
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch (exc) {
      // Only a malformed URL throws here; treat it like a failed attempt.
      this.scheduleRetry(String(exc));
      return;
    }
    this.socket = socket;
    let greeted = false;
    socket.addEventListener("message", (message) => {
      if (socket !== this.socket) return; // a late frame from a socket we already left
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        this.handlers.onProblem("The server sent a frame that is not JSON; it was ignored.");
        return;
      }
      if (data.type === "hello") {
        greeted = true;
        this.onHello(data);
      } else if (greeted) {
        this.dispatch(data);
      }
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      const why = event.code === 1001 ? "server going away" : `closed (${event.code})`;
      this.scheduleRetry(why);
    });
    // "error" is always followed by "close", which does the retrying.
  }

  onHello(hello) {
    const identity = `${hello.pid}@${hello.started_at}`;
    const restarted = this.identity !== null && identity !== this.identity;
    if (restarted && this.lastSeq >= 0) {
      // A new server clamps our old cursor to its newest event, so its history would be lost:
      // start over without a cursor to get its replay, and tell the panels to forget.
      this.identity = identity;
      this.lastSeq = -1;
      this.handlers.onHello(hello, { restarted: true });
      const old = this.socket;
      this.socket = null;
      old.close(1000, "server restarted; reconnecting without a cursor");
      this.connect();
      return;
    }
    this.identity = identity;
    this.attempt = 0;
    this.setStatus(Status.CONNECTED, "");
    this.handlers.onHello(hello, { restarted });
  }

  dispatch(data) {
    switch (data.type) {
      case "events": {
        const fresh = [];
        for (const event of data.events || []) {
          if (event.seq > this.lastSeq) {
            fresh.push(event);
            this.lastSeq = event.seq;
          }
        }
        if (fresh.length) this.handlers.onEvents(fresh);
        break;
      }
      case "gap":
        this.missed += data.missed;
        this.lastSeq = Math.max(this.lastSeq, data.resume);
        this.handlers.onGap(data, this.missed);
        break;
      case "reply":
        this.handlers.onReply(data);
        break;
      case "error":
        this.handlers.onError(data);
        break;
      default:
        // A newer server may add message types; ignoring them keeps this page working.
        break;
    }
  }

  scheduleRetry(why) {
    if (this.retryTimer !== null) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (1 + (Math.random() * 2 - 1) * BACKOFF_JITTER));
    this.attempt += 1;
    this.setStatus(Status.RECONNECTING, `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  setStatus(status, detail) {
    this.status = status;
    this.handlers.onStatus(status, detail, this.attempt);
  }

  /**
   * Send a control message; returns its id, or null when not connected (nothing is queued:
   * a start sent minutes later, after a reconnect, would surprise whoever clicked).
   */
  send(message) {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || this.status !== Status.CONNECTED) {
      return null;
    }
    const id = this.nextId;
    this.nextId = this.nextId >= MAX_REQUEST_ID ? 1 : this.nextId + 1;
    socket.send(JSON.stringify({ ...message, id }));
    return id;
  }

  /** Debug hook: close the socket as a network drop would; the feed reconnects and resumes. */
  dropSocket() {
    if (this.socket) this.socket.close(4000, "dropped by the page (debug hook)");
  }
}
