"""The server's heartbeat: loop lag, idle sweeps, and the once-a-second summaries.

It wakes every :data:`PROBE_INTERVAL` seconds and measures how late it woke:
that delay is the loop lag, the time some task held the scheduler (a
``time.sleep`` in a scenario shows up here).  A delay over
``--block-threshold`` while the tracer is not tracing steps (no run, nobody
watching, or ``--trace off``) is reported here, since nothing else saw it: a
:class:`~app.feed.events.Block` without a task, one warning line, and, if a
page is watching right now (``--trace off``), a :class:`~app.feed.events.Notice`
for it (at most one per :data:`STALL_NOTICE_EVERY`: a page is not a log; and
none for nobody, or every page opened later would replay old stalls as news).
Once a
second it publishes a :class:`~app.feed.events.Stats` event, and an
:class:`~app.feed.events.EchoStats` event while echo connections are open, and
logs refusals over the limits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import trio

from app.echo.conns import ConnTable, LimitLog
from app.echo.echostats import EchoSummary
from app.echo.proxy import ProxyRefusals
from app.feed.bucket import TokenBucket
from app.feed.events import Block, Notice, Stats
from app.hub import Hub

log = logging.getLogger(__name__)

PROBE_INTERVAL: Final = 0.1
STATS_INTERVAL: Final = 1.0
# Idle sweeps run this many times per idle timeout, so that a connection is
# closed at most a quarter of the timeout late; at most once per second.
SWEEPS_PER_TIMEOUT: Final = 4
# Seconds between two stall notices on the page; the log still gets every stall.
STALL_NOTICE_EVERY: Final = 10.0


def count_tasks() -> int:
    """How many Trio tasks exist in this run (walks the task tree)."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def run_ticker(hub: Hub, refusals: Sequence[LimitLog | ProxyRefusals] = ()) -> None:
    """Probe lag, sweep idle connections and publish summaries until cancelled."""
    feed = hub.feed
    tables: tuple[ConnTable, ...] = (hub.tcp, hub.ws, hub.tls)
    udp = hub.udp
    if udp is not None:
        tables += (udp,)
    summary = EchoSummary(hub.tcp, hub.ws, hub.tls, udp)
    sweep_every = min(STATS_INTERVAL, hub.settings.idle_timeout / SWEEPS_PER_TIMEOUT)
    now = trio.current_time()
    next_probe = now + PROBE_INTERVAL
    next_sweep = now + sweep_every
    next_stats = now + STATS_INTERVAL
    lags: list[float] = []
    block_threshold = hub.settings.block_threshold
    notices = TokenBucket(1 / STALL_NOTICE_EVERY, 1)
    while True:
        await trio.sleep_until(next_probe)
        now = trio.current_time()
        lag = now - next_probe
        lags.append(round(lag, 6))
        hub.lag.observe(lag)
        if lag > block_threshold and not hub.tracer.steps_installed:
            watched = feed.subscribers > 0
            _report_stall(hub, lag, notify=watched and notices.take(now))
        next_probe = max(next_probe + PROBE_INTERVAL, now)
        if now >= next_sweep:
            next_sweep = now + sweep_every
            for table in tables:
                table.sweep_idle()
        if now < next_stats:
            continue
        elapsed = now - next_stats + STATS_INTERVAL
        next_stats = now + STATS_INTERVAL
        for table in tables:
            table.refusals.flush()
        for limit_log in refusals:
            limit_log.flush()
        echo_stats = summary.tick(elapsed, udp_dropped=hub.udp_drops.all)
        if echo_stats is not None:
            feed.publish(echo_stats)
        feed.publish(
            Stats(
                lag=max(lags, default=0.0),
                lags=lags,
                tasks=count_tasks(),
                subscribers=feed.subscribers,
                dropped=feed.dropped,
            )
        )
        lags = []


def _report_stall(hub: Hub, lag: float, *, notify: bool) -> None:
    """A stall nobody traced: publish it as a block of no task in particular, and log it.

    With *notify*, a :class:`Notice` says the same to whoever watches the page.
    """
    feed = hub.feed
    feed.publish(Block(name="(step tracing was off)", dur=round(lag, 6)), at=feed.now() - lag)
    text = (
        f"the event loop stalled for at least {lag * 1000:.0f} ms: a task held it without "
        "a checkpoint (open the page or start a run to see which)"
    )
    log.warning("%s", text)
    if notify:
        feed.publish(Notice(level="warning", text=text))
