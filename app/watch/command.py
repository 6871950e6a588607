"""``trio-echo watch -- COMMAND``: run a Trio program as a child and show it on the page.

::

    trio.run(watch)
    └── nursery
        ├── agent link       app/watch/link.py   Unix socket; a task per watched process
        ├── web front        app/web/front.py    the page, /ws/events, /api/tasks
        ├── child            app/watch/supervisor.py   COMMAND, waited for
        └── signals          SIGINT/SIGTERM passed on to the child; after it exited, stop

The order: the link listens first (the child's agent connects to it), then
the web listener is bound and ``web listening on URL`` printed, then the
child starts and ``watching pid N: COMMAND`` is printed.  When the child
exits, its last records are awaited (bounded), ``--trace FILE`` is written,
and ``watch`` either returns the child's exit code (``--exit``, ``--no-web``)
or keeps the page up with its last state until Ctrl-C.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from app.config import Settings, WatchSettings, is_loopback
from app.feed.chrome_trace import chrome_trace
from app.feed.events import Event
from app.feed.live import Feed
from app.hub import Hub
from app.net import bound_port, open_listener
from app.ready import bracket
from app.watch.link import Link, PageDemand
from app.watch.supervisor import Child, child_env

if TYPE_CHECKING:
    from app.web.front import WebFront

log = logging.getLogger(__name__)

# Events kept for --trace FILE (the newest; a longer session loses its start): ~100 MB at most.
TRACE_CAPACITY: Final = 500_000
# How long the child's last records may take to arrive after it exited (seconds).
SETTLE_TIMEOUT: Final = 2.0
# Seconds the page's connections get to say goodbye when watch stops (as serve's default).
DRAIN_GRACE: Final = 0.5
# Exit code when COMMAND cannot be started, as a shell says it.
NOT_STARTED: Final = 127


async def watch(settings: WatchSettings, argv: list[str]) -> int:
    """Run *argv* under the agent until it exits (and, with the page, until a signal).

    Returns the child's exit code (128 + N if a signal N killed it; 127 if it
    could not be started).

    Raises:
        OSError: the web listener could not be bound (the message names the address).
    """
    feed = Feed(settings.feed_capacity)
    recorded: collections.deque[Event] | None = None
    if settings.trace_file:
        recorded = collections.deque(maxlen=TRACE_CAPACITY)
        feed.add_tap(recorded.append)
    link = Link(feed)
    if recorded is not None:
        link.want_steps(+1)  # the trace shows every step, whoever watches
    child = Child(
        argv, child_env(os.environ, link.path, settings.stall_threshold, settings.block_threshold)
    )
    code = NOT_STARTED
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.serve, name="agent link")
            web: tuple[Hub, WebFront] | None = None
            if not settings.no_web:
                url, hub, front = _start_web(nursery, settings, feed, link)
                web = (hub, front)
                print(f"web listening on {url}", flush=True)

            async def stop() -> None:
                # Like serve's drain: page sockets get 1001, then whatever is left is cut.
                if web is not None:
                    hub, front = web
                    hub.draining.set()
                    await front.drain(DRAIN_GRACE)
                nursery.cancel_scope.cancel()

            done = trio.Event()
            quit_asked = False

            async def pass_signals() -> None:
                nonlocal quit_asked
                async for signum in signals:
                    if done.is_set():
                        await stop()  # the page was kept up; now stop
                        return
                    if not child.signal(signum):
                        # The child is gone and watch is summing up: quit once that is done.
                        quit_asked = True

            nursery.start_soon(pass_signals, name="signals")
            try:
                pid = await nursery.start(child.run, name="child")
            except OSError as exc:
                print(
                    f"trio-echo watch: error: cannot run {shlex.join(argv)}: {exc}", file=sys.stderr
                )
                nursery.cancel_scope.cancel()
                return NOT_STARTED
            print(f"watching pid {pid}: {shlex.join(argv)}", flush=True)
            await child.exited.wait()
            code = child.code if child.code is not None else NOT_STARTED
            done.set()
            await link.settle(SETTLE_TIMEOUT)
            if not link.runs_seen:
                print(
                    f"trio-echo watch: {argv[0]} never called trio.run; nothing was traced",
                    file=sys.stderr,
                    flush=True,
                )
            if recorded is not None:
                await _write_trace(Path(settings.trace_file), recorded, argv)
            if settings.exit or settings.no_web or quit_asked:
                await stop()
            else:
                print(
                    f"pid {pid} exited with code {code}; the page keeps its last state "
                    "(Ctrl-C to quit)",
                    flush=True,
                )
    return code


def _start_web(
    nursery: trio.Nursery, settings: WatchSettings, feed: Feed, link: Link
) -> tuple[str, Hub, WebFront]:
    # Imported here: --no-web runs pay for neither Hypercorn nor Starlette.
    from app.metrics import HubCollector
    from app.web.asgi import build_app, websocket_endpoints
    from app.web.front import WebFront
    from app.web.info import ServerIdentity
    from app.web.ws_events import FeedChannel

    serve_settings = Settings(
        host=settings.host,
        http_port=settings.http_port,
        feed_capacity=settings.feed_capacity,
        block_threshold=settings.block_threshold,
        stall_threshold=settings.stall_threshold,
        trace=False,  # no scenario runs here: nothing of watch's own loop to trace
    )
    hub = Hub.create(serve_settings, feed)
    # A page watching asks the child for every step (instead of tracing watch's own loop).
    hub.tracer = PageDemand(feed, link)
    listener = open_listener(settings.host, settings.http_port, serve_settings.backlog, "web")
    if not is_loopback(settings.host):
        log.warning("watch: the page is on %s: reachable from the network", settings.host)
    url = f"http://{bracket(settings.host)}:{bound_port(listener)}"
    hub.listeners.update(web=url)
    channel = FeedChannel(feed, hub.runner, hub.tracer, serve_settings.origins, hub.hello)
    endpoints = websocket_endpoints(hub.ws, channel)
    fronts: list[WebFront] = []

    def web_counts() -> tuple[int, int]:
        if not fronts:
            return 0, 0  # asked while the app is built (the metrics registry's first look)
        return fronts[0].connections, fronts[0].refusals.total

    app = build_app(
        health=lambda: hub.health(*web_counts()),
        find_run=hub.runner.get,
        websockets=endpoints,
        draining=hub.draining,
        metrics=HubCollector(hub, web_counts),
        identity=ServerIdentity(hub.pid, hub.worker),
        tasks=link.tasks,
    )
    front = WebFront([listener], app, serve_settings, hub.draining, endpoints, None)
    fronts.append(front)
    nursery.start_soon(front.run, name="web front")
    return url, hub, front


async def _write_trace(path: Path, events: collections.deque[Event], argv: list[str]) -> None:
    body = chrome_trace(events, title=f"trio-echo watch {shlex.join(argv)}")
    try:
        await trio.Path(path).write_text(json.dumps(body))
    except OSError as exc:
        print(f"trio-echo watch: error: cannot write the trace: {exc}", file=sys.stderr)
        return
    print(f"trace written to {path}", flush=True)
