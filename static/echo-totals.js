// The echo panel's counters: what is open per transport, the rates, and the TLS and UDP totals.
//
// Rules of this module:
// * Pure: no DOM, no clock. echo.js draws what echoTotals() returns
//   (tests/browser/test_echo_totals.py runs it on its own).
// * Counts of what is open come from the last echo_stats while it is fresh, else from the
//   connections the page knows by conn_open and conn_close (which outlive a quiet second).
// * Totals since start (TLS bytes, UDP datagrams and drops) are the server's own numbers from
//   echo_stats (bytes in both directions, as /metrics counts them): a page that opened late or
//   missed ticks still shows the right ones.
// * TLS counters appear only when the server has a TLS echo listener, UDP ones only when it
//   has a UDP echo listener (hello.listeners); a server without them shows no zeros for them.

import { fmtBytes, fmtRate } from "./util.js";

/**
 * The counters to draw, in order: `{ label, value, text, testid, title? }`; `value` is the
 * number (also drawn as data-value), `text` as shown.
 *
 * `stats`: the last echo_stats (or {}); `fresh`: whether it is recent enough to count from;
 * `open`: `{ all, tcp, ws, tls, udp }` from the page's own connection list;
 * `listeners`: hello.listeners (`{ tcp, web, tls?, https?, udp? }`).
 */
export function echoTotals({ stats = {}, fresh = false, open, listeners = {} }) {
  const count = (key) => (fresh ? (stats[key] ?? 0) : open[key]);
  const rows = [
    { label: "open", value: open.all, testid: "echo-open" },
    { label: "tcp", value: count("tcp"), testid: "echo-tcp" },
    { label: "ws", value: count("ws"), testid: "echo-ws" },
  ];
  if (listeners.tls) {
    rows.push(
      { label: "tls", value: count("tls"), testid: "echo-tls" },
      {
        label: "tls bytes",
        value: stats.tls_bytes ?? 0,
        text: fmtBytes(stats.tls_bytes ?? 0),
        testid: "echo-tls-bytes",
        title: "bytes moved over TLS echo since the server started (in and out)",
      },
    );
  }
  if (listeners.udp) {
    rows.push(
      // UDP: one lane per active source (RFC 862 has no connection).
      { label: "udp", value: count("udp"), testid: "echo-udp", title: "UDP sources active" },
      {
        label: "udp datagrams",
        value: stats.udp_datagrams ?? 0,
        testid: "echo-udp-datagrams",
        title: "UDP datagrams echoed since the server started",
      },
      {
        label: "udp dropped",
        value: stats.udp_dropped ?? 0,
        testid: "echo-udp-dropped",
        title: "UDP datagrams not echoed (rate and size bounds) since the server started",
      },
    );
  }
  rows.push(
    {
      label: "msgs/s",
      value: stats.msgs_per_s ?? 0,
      text: fmtRate(stats.msgs_per_s ?? 0),
      testid: "echo-msgs-rate",
    },
    {
      label: "bytes/s",
      value: stats.bytes_per_s ?? 0,
      text: fmtBytes(stats.bytes_per_s ?? 0),
      testid: "echo-bytes-rate",
    },
  );
  for (const row of rows) row.text ??= row.value.toLocaleString("en");
  return rows;
}
