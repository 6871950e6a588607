"""What ``GET /metrics`` reports: the server's own counters, read when scraped.

A Prometheus custom collector over the :class:`~app.hub.Hub`: nothing on a
hot path changes for metrics (the engines already count bytes and messages
per connection, the tables count refusals, the feed counts events and
gaps); a scrape reads those numbers and turns them into metric families.
Names follow Prometheus' conventions: a ``trio_echo_`` prefix, base units
(seconds, bytes), ``_total`` for counters.  No I/O here; the web shell
(:mod:`app.web.metrics`) renders the text format.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.echo.conns import ConnTable
from app.hub import Hub

#: The final states of a scenario run, always reported (0 until one happens).
RUN_STATES = ("done", "cancelled", "timeout", "error")


class HubCollector(Collector):
    """Reads one server's :class:`Hub` at scrape time.

    *web_counts* gives the web connections open now and refused so far (the web
    front keeps those, not the hub).
    """

    def __init__(self, hub: Hub, web_counts: Callable[[], tuple[int, int]]) -> None:
        self._hub = hub
        self._web_counts = web_counts

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        yield from _connections(hub, *self._web_counts())
        yield from _tls(hub)
        yield from _udp(hub)
        yield from _proxy(hub)
        yield from _feed(hub)
        lag = HistogramMetricFamily(
            "trio_echo_loop_lag_seconds",
            "How late the ticker woke (probed 10 times a second): time some task held the loop",
            buckets=hub.lag.cumulative(),
            sum_value=hub.lag.sum,
        )
        yield lag
        runs = CounterMetricFamily(
            "trio_echo_scenario_runs", "Scenario runs that ended, by final state", labels=["state"]
        )
        for state in sorted({*RUN_STATES, *hub.runner.ended}):
            runs.add_metric([state], hub.runner.ended[state])
        yield runs
        yield GaugeMetricFamily(
            "trio_echo_scenario_runs_running", "Scenario runs running now", value=hub.runner.active
        )
        info = InfoMetricFamily("trio_echo_build", "Version of trio-echo and where it runs")
        info.add_metric(
            [],
            {
                "version": hub.version,
                "python": platform.python_version(),
                "implementation": sys.implementation.name,
                "feed": "memory" if hub.feed.link_statistics() is None else "redis",
            },
        )
        yield info


def _connections(hub: Hub, web_open: int, web_refused: int) -> Iterator[Metric]:
    # Connection tables: TLS echo only while TLS is on, as /healthz shows it.
    tables: list[ConnTable] = [hub.tcp, hub.ws]
    if hub.settings.tls_enabled:
        tables.append(hub.tls)
    open_ = GaugeMetricFamily(
        "trio_echo_connections_open", "Connections open now, by transport", labels=["transport"]
    )
    accepted = CounterMetricFamily(
        "trio_echo_connections_accepted", "Echo connections accepted", labels=["transport"]
    )
    refused = CounterMetricFamily(
        "trio_echo_connections_refused",
        "Connections refused over their limit, by transport",
        labels=["transport"],
    )
    moved = CounterMetricFamily(
        "trio_echo_echo_bytes", "Bytes echoed (received plus sent)", labels=["transport"]
    )
    messages = CounterMetricFamily(
        "trio_echo_echo_messages",
        "Echo messages (TCP and TLS reads, websocket messages, UDP datagrams)",
        labels=["transport"],
    )
    for table in tables:
        label = [table.transport]
        open_.add_metric(label, len(table))
        accepted.add_metric(label, table.accepted)
        refused.add_metric(label, table.refusals.total)
    # UDP has no connections: its table holds the sources with a lane (see app.echo.udp),
    # and its totals count every datagram echoed, lane or not.
    if hub.settings.udp and hub.udp is not None:
        tables.append(hub.udp)
    for table in tables:
        total_bytes, total_msgs = table.closed_bytes, table.closed_msgs
        for conn in table:
            total_bytes += conn.moved
            total_msgs += conn.msgs
        moved.add_metric([table.transport], total_bytes)
        messages.add_metric([table.transport], total_msgs)
    open_.add_metric(["web"], web_open)
    refused.add_metric(["web"], web_refused)
    yield from (open_, accepted, refused, moved, messages)


#: ``/metrics``' listener label for each of ``Hub.handshakes`` (the TLS echo port, HTTPS).
HANDSHAKE_LISTENERS = {"echo": "echo", "web": "https"}


def _tls(hub: Hub) -> Iterator[Metric]:
    """TLS handshakes by listener and result (issue 11's counts, as /healthz shows them)."""
    if not hub.settings.tls_enabled:
        return
    handshakes = CounterMetricFamily(
        "trio_echo_tls_handshakes",
        "TLS handshakes that ended, by listener (echo, https) and result"
        " (done, failed, timed_out: closed after --tls-handshake-timeout)",
        labels=["listener", "result"],
    )
    for key, counts in hub.handshakes.items():
        for result, value in counts.as_json().items():
            handshakes.add_metric([HANDSHAKE_LISTENERS[key], result], value)
    yield handshakes


#: ``/metrics``' reason label for each field of :class:`~app.echo.udp.UdpDrops`.
UDP_DROP_REASONS = {
    "source": "source_bound",
    "total": "global_bound",
    "oversize": "oversize",
    "failed": "send_failed",
}


def _udp(hub: Hub) -> Iterator[Metric]:
    """UDP sources with a lane now, and datagrams dropped by reason (as /healthz shows them)."""
    if not hub.settings.udp:
        return
    yield GaugeMetricFamily(
        "trio_echo_udp_sources",
        "UDP source addresses with a lane now (active in the last 10 s, at most 256)",
        value=len(hub.udp) if hub.udp is not None else 0,
    )
    dropped = CounterMetricFamily(
        "trio_echo_udp_dropped_datagrams",
        "UDP datagrams not echoed, by reason (source_bound, global_bound: the rate bounds;"
        " oversize: over --udp-max-datagram; send_failed)",
        labels=["reason"],
    )
    for field_name, value in dataclasses.asdict(hub.udp_drops).items():
        dropped.add_metric([UDP_DROP_REASONS[field_name]], value)
    yield dropped


def _proxy(hub: Hub) -> Iterator[Metric]:
    """PROXY protocol headers accepted and connections refused, by listener (tcp, tls, web)."""
    if hub.proxy is None:
        return
    accepted = CounterMetricFamily(
        "trio_echo_proxy_headers_accepted",
        "PROXY protocol headers accepted, by listener",
        labels=["listener"],
    )
    refused = CounterMetricFamily(
        "trio_echo_proxy_refused_connections",
        "Connections closed for their PROXY header, by listener and reason"
        " (untrusted: peer not in --proxy-trusted; invalid: missing, malformed or late)",
        labels=["listener", "reason"],
    )
    for name, counts in sorted(hub.proxy_refusals.listeners.items()):
        accepted.add_metric([name], counts.accepted)
        refused.add_metric([name, "untrusted"], counts.untrusted)
        refused.add_metric([name, "invalid"], counts.invalid)
    yield from (accepted, refused)


def _feed(hub: Hub) -> Iterator[Metric]:
    feed = hub.feed
    yield CounterMetricFamily(
        "trio_echo_feed_events", "Events this process published to the feed", value=feed.published
    )
    yield CounterMetricFamily(
        "trio_echo_feed_gap_events",
        "Events /ws/events subscribers were told they missed (gaps), in total",
        value=feed.dropped,
    )
    yield GaugeMetricFamily(
        "trio_echo_feed_subscribers", "/ws/events subscribers now", value=feed.subscribers
    )
    link = feed.link_statistics()
    if link is None:
        return
    yield GaugeMetricFamily(
        "trio_echo_feed_redis_up", "1 while the shared feed's Redis link works", value=link.online
    )
    yield GaugeMetricFamily(
        "trio_echo_feed_redis_outbox_events",
        "Events waiting in the outbox for Redis",
        value=link.outbox_depth,
    )
    yield GaugeMetricFamily(
        "trio_echo_feed_redis_outbox_capacity_events",
        "Events the outbox holds at most (--feed-outbox)",
        value=link.outbox_capacity,
    )
    yield CounterMetricFamily(
        "trio_echo_feed_redis_outbox_dropped_events",
        "Events dropped by the outbox (full, or a batch cut in flight)",
        value=link.outbox_dropped,
    )
    yield CounterMetricFamily(
        "trio_echo_feed_redis_lost_events",
        "Stream events that never reached this instance (trimmed, or dropped by an outbox)",
        value=link.lost,
    )
    yield CounterMetricFamily(
        "trio_echo_feed_redis_reconnects", "Times the Redis link came back", value=link.reconnects
    )
