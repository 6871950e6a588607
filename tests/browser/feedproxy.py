"""The page's /ws/events socket through a Playwright route that can add events to the real feed.

The browser tests of issue 10's page use it to show what the server does not send yet: a
watched program's task tree (``spawn`` with ``nursery``), 10,000 stepping tasks, ``stall``
events. Everything the real server sends still reaches the page; the proxy renumbers
``seq`` (the page drops any event at or below the last seq it saw, so added events need
numbers of their own) and stamps added events with the server's feed time, estimated from
``hello.now``.

Rules: the route's handlers run on the test's thread while it waits in a Playwright call, so
:meth:`FeedProxy.send` may be called from the test at any time after :meth:`FeedProxy.open`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

from playwright.sync_api import Page, WebSocketRoute, expect

EVENTS_SOCKET: Final = re.compile(r"/ws/events")


class FeedProxy:
    """Route the page's feed through the test; add events with :meth:`send`."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.route: WebSocketRoute | None = None
        self.seq = 0
        self.hello_now = 0.0
        self.hello_at = 0.0

    def open(self) -> FeedProxy:
        """Install the route, reload the page, and wait until it is connected through it."""
        self.page.route_web_socket(EVENTS_SOCKET, self._connect)
        self.page.reload()
        expect(self.page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        assert self.route is not None
        return self

    def _connect(self, route: WebSocketRoute) -> None:
        self.route = route
        server = route.connect_to_server()
        server.on_message(self._from_server)

    def _from_server(self, message: str | bytes) -> None:
        data = json.loads(message)
        if data["type"] == "hello":
            self.hello_now = float(data["now"])
            self.hello_at = time.monotonic()
        elif data["type"] == "events":
            for event in data["events"]:
                self.seq += 1
                event["seq"] = self.seq
        elif data["type"] == "gap":
            data["resume"] = self.seq
        assert self.route is not None
        self.route.send(json.dumps(data))

    def now(self) -> float:
        """The server's feed time now, as estimated from its hello."""
        return self.hello_now + (time.monotonic() - self.hello_at)

    def send(self, events: list[dict[str, Any]]) -> None:
        """Send *events* to the page as one batch, numbered after everything sent so far.

        An event without ``t`` gets :meth:`now`.
        """
        assert self.route is not None, "open() first"
        now = self.now()
        for event in events:
            self.seq += 1
            event["seq"] = self.seq
            event.setdefault("t", now)
        self.route.send(json.dumps({"type": "events", "events": events}))


# -- a watched run of many stepping tasks (the issue 10 load: test and bench) ------------------

# Task ids far above what a test server hands out, so that added lanes never take a real one.
BASE_ID: Final = 10_000_000
# The tracer's cap for a whole process is 5,000 steps a second; the feed sends a batch at most
# every 50 ms: 250 steps a batch.
STEPS_PER_BATCH: Final = 250
BATCH_SECONDS: Final = 0.05
SPAWN_BATCH: Final = 2_500

# Records the time between animation frames (the page draws in requestAnimationFrame, so a
# long frame, or a long event handler before it, is a long gap).
FRAME_PROBE: Final = """() => {
    window.frameProbe = {gaps: [], last: performance.now(), on: true};
    const tick = (t) => {
        const probe = window.frameProbe;
        probe.gaps.push(t - probe.last);
        probe.last = t;
        if (probe.on) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
}"""


def spawn(run: str, task: int, name: str, parent: int, nursery: int) -> dict[str, Any]:
    """A ``spawn`` event of the contract: task ids offset by :data:`BASE_ID`."""
    return {
        "kind": "spawn",
        "run": run,
        "task": BASE_ID + task,
        "name": name,
        "parent": BASE_ID + parent if parent else 0,
        "nursery": nursery,
    }


def start_pool(feed: FeedProxy, run: str, tasks: int, program: str = "pool.py") -> None:
    """A watched run: ``main`` (task 1) and *tasks* workers (tasks 10...) in nursery 7."""
    feed.send([{"kind": "run_start", "run": run, "scenario": program, "params": {}}])
    feed.send([spawn(run, 1, "main", 0, 0)])
    for first in range(0, tasks, SPAWN_BATCH):
        last = min(first + SPAWN_BATCH, tasks)
        feed.send([spawn(run, 10 + i, f"worker {i}", 1, 7) for i in range(first, last)])


def step_pool(feed: FeedProxy, run: str, tasks: int, seconds: float, churn: int = 0) -> list[float]:
    """Step the pool's workers round robin at the tracer's cap for *seconds*.

    *churn*: workers a second that exit and are replaced by new ones (the oldest go first).
    Returns the page's frame times meanwhile (ms, sorted).
    """
    page = feed.page
    page.evaluate(FRAME_PROBE)
    oldest = 0  # the live workers are numbers oldest .. oldest + tasks - 1
    per_batch = round(churn * BATCH_SECONDS)
    for round_ in range(round(seconds / BATCH_SECONDS)):
        now = feed.now()
        events: list[dict[str, Any]] = []
        for k in range(oldest, oldest + per_batch):
            events.append({"kind": "exit", "run": run, "task": BASE_ID + 10 + k, "steps": 9})
            new = k + tasks
            events.append(spawn(run, 10 + new, f"worker {new}", 1, 7))
        oldest += per_batch
        events += [
            {
                "kind": "step",
                "run": run,
                "task": BASE_ID + 10 + oldest + (round_ * STEPS_PER_BATCH + k) % tasks,
                "t": now - 0.02,
                "dur": 0.02,
                "busy": 0.0004,
                "count": 2,
            }
            for k in range(STEPS_PER_BATCH)
        ]
        feed.send(events)
        page.wait_for_timeout(BATCH_SECONDS * 1000)
    gaps: list[float] = page.evaluate(
        "() => { window.frameProbe.on = false; return window.frameProbe.gaps; }"
    )
    return sorted(gaps)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which *fraction* of *sorted_values* lie (nan when empty)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]
