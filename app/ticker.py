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
A lag during which the whole process got no CPU and the stall watchdog's
thread did not run either (SIGSTOP, a VM pause) is not a task's doing: it is
logged as a pause of the process (:func:`app.lagstats.process_paused`), with no
block.  Once a
second it publishes a :class:`~app.feed.events.Stats` event, and an
:class:`~app.feed.events.EchoStats` event while echo connections are open, and
logs refusals over the limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final, Protocol

import trio

from app.echo.conns import ConnTable, LimitLog
from app.echo.echostats import EchoSummary
from app.echo.proxy import ProxyRefusals
from app.feed.bucket import TokenBucket
from app.feed.events import Block, Notice, Stats
from app.hub import Hub
from app.lagstats import process_paused
from trio_echo_agent.probe import now as heartbeat_clock

log = logging.getLogger(__name__)

PROBE_INTERVAL: Final = 0.1
STATS_INTERVAL: Final = 1.0
# Idle sweeps run this many times per idle timeout, so that a connection is
# closed at most a quarter of the timeout late; at most once per second.
SWEEPS_PER_TIMEOUT: Final = 4
# Seconds between two stall notices on the page; the log still gets every stall.
STALL_NOTICE_EVERY: Final = 10.0


class Heartbeat(Protocol):
    """A thread that beats every :attr:`poll` seconds (the stall watchdog, app/watch/own.py)."""

    #: Seconds between beats.
    poll: float
    #: Its newest beat on :func:`heartbeat_clock`.
    last_beat: float
    #: Its last gap between two beats far over :attr:`poll`: (start, end).
    silence: tuple[float, float]


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


async def run_ticker(
    hub: Hub,
    refusals: Sequence[LimitLog | ProxyRefusals] = (),
    heartbeat: Heartbeat | None = None,
) -> None:
    """Probe lag, sweep idle connections and publish summaries until cancelled.

    With *heartbeat*, a lag during which that thread did not beat and the process
    used no CPU is reported as a pause of the process, not a stall of a task.
    """
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
    cpu_then = time.process_time()
    while True:
        await trio.sleep_until(next_probe)
        now = trio.current_time()
        lag = now - next_probe
        cpu_now = time.process_time()
        cpu, cpu_then = cpu_now - cpu_then, cpu_now  # over the probe interval and the lag
        lags.append(round(lag, 6))
        hub.lag.observe(lag)
        if lag > block_threshold:
            notify = feed.subscribers > 0
            woke = heartbeat_clock()
            if heartbeat is not None and process_paused(
                lag_start=woke - lag,
                lag_end=woke,
                cpu=cpu,
                last_beat=heartbeat.last_beat,
                silence=heartbeat.silence,
                poll=heartbeat.poll,
            ):
                _report_pause(hub, lag, notify=notify and notices.take(now))
            elif not hub.tracer.steps_installed:
                _report_stall(hub, lag, notify=notify and notices.take(now))
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


def _report_pause(hub: Hub, lag: float, *, notify: bool) -> None:
    """The whole process was paused: one log line (and a :class:`Notice`), no block of a task."""
    text = (
        f"the process was paused for about {lag * 1000:.0f} ms: it got no CPU time and no "
        "thread of it ran (SIGSTOP, a VM pause, or a host that gave it no CPU); "
        "no task held the event loop"
    )
    log.warning("%s", text)
    if notify:
        hub.feed.publish(Notice(level="warning", text=text))
