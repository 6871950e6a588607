"""The page against a real watched program: ``trio-echo watch -- python programs/tree_stall.py``.

Nothing injected, nothing mocked: the tree, the stall banner and the stacks come from the
`watch` backend (issue 10). Until that backend is merged (``app.watch`` missing) this test is
an expected failure (strict: it must fail then, and must pass once the backend is there).
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import Browser, Page, expect

from app.child import self_command
from app.ready import WEB_LINE as WEB_PREFIX

from .harness import STARTUP_POLL, STARTUP_TIMEOUT, STOP_TIMEOUT, VIEWPORT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xfail(
        importlib.util.find_spec("app.watch") is None,
        reason="needs `trio-echo watch` (branch watch, issue 10's backend); runs once merged",
        strict=True,
    ),
]

PROGRAM: Final = Path(__file__).parent / "programs" / "tree_stall.py"
# `watch` prints serve's web line alone (it has no TCP echo listener), then `watching pid N`:
# not the pair app.ready.parse_ready reads, so the one line is matched here.
WEB_LINE: Final = re.compile(rf"^{re.escape(WEB_PREFIX)}(http://\S+)$", re.MULTILINE)
HANDLERS: Final = 250
# The line of the program's time.sleep: the stall banner must name it.
STALL_LINE: Final = next(
    n for n, text in enumerate(PROGRAM.read_text().splitlines(), 1) if "THE-STALL" in text
)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``trio-echo watch`` running the program; its page's URL and the process (stdin open)."""
    out_path = tmp_path / "watch.stdout"
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            [*self_command("watch", "--http-port", "0", "--"), sys.executable, str(PROGRAM)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (match := WEB_LINE.search(out_path.read_text(errors="replace"))):
            assert process.poll() is None, out_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "watch printed no URL"
            time.sleep(STARTUP_POLL)
        yield match.group(1), process
    finally:
        if process.stdin:
            process.stdin.close()  # EOF: the program ends
        for _ in range(2):  # the first signal goes to the child, the second ends watch
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT / 2)
                except subprocess.TimeoutExpired:
                    continue
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def watch_page(browser: Browser, watched: tuple[str, subprocess.Popen[bytes]]) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.goto(watched[0])
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        yield page
    finally:
        context.close()


def test_a_watched_programs_tree_stall_and_stacks(
    watch_page: Page, watched: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """The real tree (nurseries nested, 250 handlers folded), a live stall, a real stack."""
    page = watch_page
    process = watched[1]
    # The tree: main, its two nurseries; server's nursery of 250 handlers folded into one row.
    folded = page.locator('[data-testid="nursery"][data-count="250"]')
    expect(folded).to_have_attribute("aria-expanded", "false")
    expect(folded).to_contain_text("250 tasks")
    names = page.locator('[data-testid="lane"] .lane-name')
    expect(names).to_have_text(["__main__.main", "server", "ticker"])
    folded.click()  # expand: the handlers under server's nursery row
    expect(folded).to_have_attribute("aria-expanded", "true")
    expect(names).to_have_count(3 + HANDLERS)
    # main 0, its nurseries' rows 1, server 2, server's nursery row 3, the handlers 4.
    handlers = page.locator('[data-testid="lane"][data-depth="4"]')
    expect(handlers).to_have_count(HANDLERS)
    folded.click()
    expect(names).to_have_count(3)

    # A stall while it lasts: the banner names the task and the line of its time.sleep.
    assert process.stdin is not None
    process.stdin.write(b"stall\n")
    process.stdin.flush()
    banner = page.get_by_test_id("stall-banner")
    expect(banner.get_by_test_id("stall-task")).to_have_text("ticker")
    expect(banner.get_by_test_id("stall-where")).to_have_text(
        re.compile(rf"tree_stall\.py:{STALL_LINE} in ticker$")
    )
    expect(banner).to_have_count(0)  # the step returned: its block closed the banner

    # Click a handler (found by the filter): where it waits, from the program itself.
    page.get_by_test_id("tl-filter").fill("handler 123")
    lane = page.locator('[data-testid="lane"]', has_text="handler 123")
    expect(lane).to_have_count(1)
    lane.click()
    panel = page.get_by_test_id("task-detail")
    expect(panel).to_have_attribute("data-phase", "ok")
    expect(panel).to_have_attribute("data-state", "waiting")
    expect(page.get_by_test_id("task-where").locator("li").first).to_have_text(
        re.compile(r"tree_stall\.py:\d+ in handler$")
    )
