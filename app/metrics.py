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
    tables: tuple[ConnTable, ...] = (hub.tcp, hub.ws)
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
        "Echo messages (TCP reads, websocket messages)",
        labels=["transport"],
    )
    for table in tables:
        label = [table.transport]
        open_.add_metric(label, len(table))
        accepted.add_metric(label, table.accepted)
        refused.add_metric(label, table.refusals.total)
        total_bytes, total_msgs = table.closed_bytes, table.closed_msgs
        for conn in table:
            total_bytes += conn.moved
            total_msgs += conn.msgs
        moved.add_metric(label, total_bytes)
        messages.add_metric(label, total_msgs)
    open_.add_metric(["web"], web_open)
    refused.add_metric(["web"], web_refused)
    yield from (open_, accepted, refused, moved, messages)


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
