"""Fixtures for the browser tests: one real server and one Chromium for this package, a fresh
page (its own browser context) per test.

Rules for the tests here:

* plain sync functions (Playwright's sync API), marked ``@pytest.mark.browser``;
* the server is real (a subprocess, the installed package) and shared: a test finds its own
  run by the id the page shows, never by "the latest run";
* no fixed sleeps: Playwright's ``expect`` retries until its timeout;
* every page is checked at teardown for console errors and uncaught exceptions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from .harness import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, require_chromium, running_server

# Playwright's default is 5 s; a loaded CI box can take longer for a run to end, and a real
# failure still fails well within the 120 s per-test timeout.
EXPECT_TIMEOUT_MS = 10_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="package")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``trio-echo serve`` process shared by the browser tests; its page's URL."""
    with running_server(tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; skipped without it (a failure under ``CI=true``)."""
    require_chromium(CHROMIUM, os.environ.get("CI"))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# The task API answers 404 for a task that has exited: Chromium logs every HTTP error status
# as "Failed to load resource", but the page shows that answer in words (static/tasks.js).
TASK_API = re.compile(r"^https?://[^/]+/api/tasks(/\d+)?$")


def answered_error(message: ConsoleMessage) -> bool:
    """An HTTP error status from the task API: an answer the page shows, not a page error."""
    return message.text.startswith("Failed to load resource") and bool(
        TASK_API.match(message.location.get("url", ""))
    )


@pytest.fixture
def page(browser: Browser, server_url: str) -> Iterator[Page]:
    """The page, loaded and connected; fails the test if it logged an error meanwhile."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not answered_error(message):
            problems.append(f"console.error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    try:
        page.goto(server_url)
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        yield page
    finally:
        context.close()
    assert not problems, "the page logged errors:\n" + "\n".join(problems)
