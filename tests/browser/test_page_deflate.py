"""The page's websockets negotiate permessage-deflate with a real Chromium (issue 12).

Playwright's websocket object does not show handshake headers, so the test listens to
Chromium's own DevTools protocol (``Network.webSocketHandshakeResponseReceived``): the
``Sec-WebSocket-Extensions`` answer Chromium got, and the frames it decoded, are exactly what
the browser saw.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .harness import VIEWPORT, running_server, start_run

pytestmark = pytest.mark.browser


class Handshakes:
    """Websocket handshakes of one page, by URL, as Chromium reports them."""

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}  # requestId -> url
        self.answers: dict[str, dict[str, str]] = {}  # url path -> response headers
        #: The messages received on /ws/events, as Chromium decoded them.
        self.feed_messages: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def created(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._urls[event["requestId"]] = event["url"]

    def answered(self, event: dict[str, Any]) -> None:
        with self._lock:
            url = self._urls.get(event["requestId"], "")
            path = "/" + url.split("/", 3)[-1].split("?")[0] if url else ""
            headers = {k.lower(): v for k, v in event["response"]["headers"].items()}
            self.answers[path] = headers

    def received(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self._urls.get(event["requestId"], "").split("?")[0].endswith("/ws/events"):
                self.feed_messages.append(event["response"]["payloadData"])

    def failed(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.errors.append(str(event.get("errorMessage")))


@pytest.fixture(params=["epoll", "fast", "asgi"])
def engine_url(
    request: pytest.FixtureRequest, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The shared server for the default engine (epoll), a server of its own for the others."""
    if request.param == "epoll":
        yield server_url
        return
    workdir = tmp_path_factory.mktemp(f"serve-{request.param}")
    with running_server(workdir, "--ws-engine", request.param) as url:
        yield url


@pytest.fixture
def watched(browser: Browser, engine_url: str) -> Iterator[tuple[Page, Handshakes]]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    seen = Handshakes()
    cdp.on("Network.webSocketCreated", seen.created)
    cdp.on("Network.webSocketHandshakeResponseReceived", seen.answered)
    cdp.on("Network.webSocketFrameReceived", seen.received)
    cdp.on("Network.webSocketFrameError", seen.failed)
    cdp.send("Network.enable")
    # A message inflated wrongly is garbage JSON to the page: it would say so here.
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    try:
        page.goto(engine_url)
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        yield page, seen
    finally:
        context.close()
    assert not seen.errors, seen.errors


def test_the_feed_and_the_echo_box_negotiate_deflate(watched: tuple[Page, Handshakes]) -> None:
    page, seen = watched
    # The echo box opens /ws/echo; its echo comes back, decompressed by Chromium, as sent.
    text = '{"deflate": "yes", "again": "yes yes yes yes"} ✓'
    page.get_by_test_id("echo-input").fill(text)
    page.get_by_test_id("echo-send").click()
    expect(page.locator('[data-testid="echo-in"] .text')).to_have_text([text])
    for path in ("/ws/events", "/ws/echo"):
        # Playwright delivers CDP events in the order Chromium sent them: the handshake's
        # answer came before the echo that the page has already shown.
        headers = seen.answers.get(path)
        assert headers is not None, f"no handshake seen for {path}: {seen.answers}"
        extensions = headers.get("sec-websocket-extensions", "")
        assert extensions.startswith("permessage-deflate"), (path, extensions)
        assert "server_max_window_bits=12" in extensions, (path, extensions)


def test_big_feed_batches_compressed_once_for_all_decode_in_chromium(
    watched: tuple[Page, Handshakes],
) -> None:
    """A run that prints hundreds of lines at once: its batches are over MIN_SHARED_SIZE, so
    they are compressed alone and shared, between messages Chromium inflates with its window."""
    page, seen = watched
    run = start_run(page, "random-sleep", count=300, scale=0)
    item = page.locator(f'[data-testid="run"][data-run="{run}"]')
    expect(item).to_have_attribute("data-state", "done")
    # Small batches before and after the big ones, on the same connection.
    page.get_by_test_id("echo-input").fill("after the burst")
    page.get_by_test_id("echo-send").click()
    expect(page.locator('[data-testid="echo-in"] .text')).to_have_text(["after the burst"])
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    assert not seen.errors, seen.errors
    sizes = [len(m) for m in seen.feed_messages]
    assert max(sizes) >= 8 * 1024, sizes
    assert any(size < 8 * 1024 for size in sizes[1:]), sizes
    for message in seen.feed_messages:
        json.loads(message)  # every one inflated right, big or small
