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
