"""Measure the page's frame times with 10,000 stepping tasks (issue 10's target: p95 < 50 ms).

Usage, from the repository root (the server is the installed package, as in the tests)::

    python -m tests.browser.frames [--tasks 10000] [--seconds 10]

It starts a server, opens the page in Debian's Chromium (1280x800, headless), adds a watched
run of TASKS tasks in one nursery to the real feed (tests/browser/feedproxy.py), steps them at
the tracer's cap (5,000 steps a second) and records the time between animation frames: first
with the nursery collapsed (the default), then expanded (500 lanes drawn), then filtered to
one task, then collapsed again while 1,000 tasks a second exit and are replaced. Prints a
Markdown table. A benchmark, not a test: the numbers depend on the machine (run it on a quiet
one: on a loaded one the browser waits for a core, and that is what the gaps measure).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from .feedproxy import FeedProxy, percentile, start_pool, step_pool
from .harness import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, running_server

RUN = "w1"
# Tasks a second that exit and are replaced, in the last case (exited lanes are bounded).
CHURN = 1_000


def measure(url: str, tasks: int, seconds: float) -> list[tuple[str, list[float]]]:
    """Frame times (ms, sorted) per case: collapsed, expanded, filtered."""
    results: list[tuple[str, list[float]]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            feed = FeedProxy(page).open()
            start_pool(feed, RUN, tasks)
            nursery = page.locator(f'[data-testid="nursery"][data-run="{RUN}"]')
            expect(nursery).to_have_attribute("data-count", str(tasks))
            results.append(("collapsed", step_pool(feed, RUN, tasks, seconds)))
            nursery.click()
            expect(nursery).to_have_attribute("aria-expanded", "true")
            results.append(("expanded (500 lanes)", step_pool(feed, RUN, tasks, seconds)))
            page.get_by_test_id("tl-filter").fill(f"worker {tasks - 1}")
            expect(page.get_by_test_id("tl-matches")).to_have_text("1 found")
            results.append(("filtered to one", step_pool(feed, RUN, tasks, seconds)))
            page.get_by_test_id("tl-filter").fill("")
            nursery.click()
            expect(nursery).to_have_attribute("aria-expanded", "false")
            churn = step_pool(feed, RUN, tasks, seconds, churn=CHURN)
            results.append((f"collapsed, {CHURN:,} exits + spawns a second", churn))
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the nursery")
    parser.add_argument("--seconds", type=float, default=10.0, help="stepping time per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, running_server(Path(workdir)) as url:
        results = measure(url, args.tasks, args.seconds)
    print(f"| {args.tasks:,} stepping tasks | frames | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, gaps in results:
        cells = [percentile(gaps, q) for q in (0.5, 0.95, 0.99)] + [max(gaps, default=0.0)]
        print(f"| {case} | {len(gaps)} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
