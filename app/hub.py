"""What the parts of one server share: settings, the feed, the connection tables, the drain signal.

The root task builds one :class:`Hub` and hands it to every part, so that a
part never reaches into another part to find these.  It holds state, not
behaviour: who does what with it lives with each part.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from app import __version__
from app.config import Settings
from app.echo.conns import ConnTable
from app.feed.live import Feed
from app.scenarios.runner import Runner
from app.tracer import StepTracer, TaskWatcher


@dataclass(eq=False)
class Hub:
    """The shared state of one server process."""

    settings: Settings
    feed: Feed
    #: TCP echo connections.
    tcp: ConnTable
    #: Websocket echo connections.
    ws: ConnTable
    #: The Trio instrument that gives watched tasks their lanes (and traces steps).
    tracer: TaskWatcher
    runner: Runner
    #: Set once shutdown begins: endpoints say goodbye (1001), listeners stop accepting.
    draining: trio.Event = field(default_factory=trio.Event)
    #: ``tcp`` and ``web`` listening addresses, once bound.
    listeners: dict[str, str] = field(default_factory=dict)
    #: Worker number when running as one of ``--workers N`` (0 when alone).
    worker: int = 0
    #: Every worker's private web URL, ``{"worker": n, "url": ...}``, when one of several.
    peers: list[dict[str, Any]] = field(default_factory=list)
    #: Open web connections (HTTP and websocket), kept by the front.
    web_connections: int = 0
    # -- issue 10 (watch): where /api/tasks gets its snapshot --
    #: ``(task lane or 0) -> runs``; None: this process's own loop (:mod:`app.watch.own`).
    task_source: Callable[[int], Awaitable[list[dict[str, Any]]]] | None = None
    pid: int = field(default_factory=os.getpid)
    version: str = __version__

    @classmethod
    def create(cls, settings: Settings, feed: Feed | None = None, worker: int = 0) -> Hub:
        """A hub with fresh tables sharing *feed* (a new one if not given)."""
        feed = feed or Feed(settings.feed_capacity)

        def table(transport: str, limit: int) -> ConnTable:
            return ConnTable(
                transport,
                limit,
                settings.idle_timeout,
                new_id=feed.new_id,
                publish=feed.publish,
                now=feed.now,
            )

        tracer = StepTracer(feed, settings.block_threshold) if settings.trace else TaskWatcher(feed)
        return cls(
            settings=settings,
            feed=feed,
            tcp=table("tcp", settings.max_connections),
            ws=table("ws", settings.max_web_connections),
            tracer=tracer,
            runner=Runner(
                feed, tracer, max_runs=settings.max_runs, run_timeout=settings.run_timeout
            ),
            worker=worker,
        )
