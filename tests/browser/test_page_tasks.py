"""Issue 10 on the page: a watched program's task tree, 10,000 tasks, the stall banner, stacks.

What is real and what is not, test by test (until the `watch` backend merges):

* INJECTED: the task trees, steps and `stall` events are added to the real server's feed by
  :class:`FeedProxy` (the way test_page.py adds a `gap`), in the event shapes of the contract
  (docs/protocol.md): `spawn` with `parent` and `nursery`, `stall` with `task`, `name`,
  `seconds` and `frames` (innermost last). The real server keeps sending its own events.
* MOCKED: ``GET /api/tasks/{id}`` is answered by ``page.route`` in the task panel tests; the
  page's fetch, its parsing and its drawing are real.
* REAL: the model's bounds are checked by importing the page's own pure module
  (static/timeline-model.js) in Chromium.

The same page against a real watched program, nothing injected or mocked, is
test_page_watch.py (an expected failure until the `watch` backend is merged).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from .feedproxy import BASE_ID, FeedProxy, percentile, spawn, start_pool, step_pool
from .harness import start_run

pytestmark = pytest.mark.browser

SOME = re.compile(r"^[1-9]\d*$")
# static/timeline-layout.js: COLLAPSE_ABOVE, MAX_EXPANDED.
COLLAPSE_ABOVE = 200
MAX_EXPANDED = 500


@pytest.fixture
def feed(page: Page) -> Iterator[FeedProxy]:
    """The page, reloaded with its feed going through a proxy that can add events."""
    yield FeedProxy(page).open()


def label_rows(page: Page, run: str) -> list[dict[str, str]]:
    """The label column's rows of *run* (its header, nurseries and lanes), top to bottom."""
    rows: list[dict[str, str]] = page.get_by_test_id("tl-labels").evaluate(
        """(root, run) => [...root.children]
            .filter(row => row.dataset.run === run)
            .map(row => ({
                kind: row.dataset.testid || "", task: row.dataset.task || "",
                parent: row.dataset.parent || "", depth: row.dataset.depth || "",
                nursery: row.dataset.nursery || "", count: row.dataset.count || "",
                name: row.textContent.trim(),
            }))""",
        run,
    )
    return rows


def start_watched_run(feed: FeedProxy, run: str, program: str = "app.py") -> None:
    feed.send([{"kind": "run_start", "run": run, "scenario": program, "params": {}}])


def start_server_tree(feed: FeedProxy, run: str) -> None:
    """A watched run: main opens two nurseries (serve_tcp, ticker); serve_tcp's holds two
    handlers. Tasks 1 to 5 (main, serve_tcp, ticker, handler #1, handler #2), nurseries 1-3."""
    start_watched_run(feed, run)
    feed.send(
        [
            spawn(run, 1, "main", 0, 0),
            spawn(run, 2, "serve_tcp", 1, 1),
            spawn(run, 3, "ticker", 1, 2),
            spawn(run, 4, "handler #1", 2, 3),
            spawn(run, 5, "handler #2", 2, 3),
        ]
    )


def test_watched_run_shows_nested_nurseries(page: Page, feed: FeedProxy) -> None:
    """INJECTED. The tree as Trio holds it: a task, the nurseries it opened, their tasks.

    main opens two nurseries (a server with its handlers, and a ticker); the server's
    nursery holds two handlers. A task with one small nursery shows its children indented
    under it; a task with two shows each nursery as a row.
    """
    run = "w901"
    start_server_tree(feed, run)
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(5)
    rows = label_rows(page, run)
    shape = [(r["kind"], r["depth"], r["name"]) for r in rows]
    assert shape == [
        ("lane-group", "", f"{run} app.py running"),
        ("lane", "0", "main"),
        ("nursery", "1", "▾1 task · nursery 1"),
        ("lane", "2", "serve_tcp"),
        ("lane", "3", "handler #1"),
        ("lane", "3", "handler #2"),
        ("nursery", "1", "▾1 task · nursery 2"),
        ("lane", "2", "ticker"),
    ], shape
    handlers = [r for r in rows if r["name"].startswith("handler")]
    assert {r["parent"] for r in handlers} == {str(BASE_ID + 2)}
    assert {r["nursery"] for r in handlers} == {"3"}
    # A small nursery can be collapsed by hand, and opened again.
    first = page.locator(f'[data-testid="nursery"][data-run="{run}"]').first
    first.click()
    expect(first).to_have_attribute("aria-expanded", "false")
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(2)
    first.click()
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(5)


def test_ten_thousand_stepping_tasks_collapse_expand_and_filter(
    page: Page, feed: FeedProxy, record_property: Any
) -> None:
    """INJECTED. 10,000 tasks in one nursery stepping at the tracer's cap: one row, not 10,000.

    Alongside, the real `many-tasks` scenario spawns 10,000 tasks in the server (a summary,
    no lanes: its nursery is quiet). The frame times while the tasks step are measured and
    recorded (``frame_p95_ms``); only behaviour is asserted: the page keeps drawing, the
    nursery collapses with its counts, expands on click, and the filter finds one task.
    """
    run = "w902"
    tasks = 10_000
    real = start_run(page, "many-tasks", tasks=tasks)
    start_pool(feed, run, tasks)
    nursery = page.locator(f'[data-testid="nursery"][data-run="{run}"]')
    expect(nursery).to_have_attribute("data-count", str(tasks))
    expect(nursery).to_have_attribute("aria-expanded", "false")
    expect(nursery).to_contain_text("10,000 tasks")
    lanes = page.locator(f'[data-testid="lane"][data-run="{run}"]')
    expect(lanes).to_have_count(1)  # main; its 10,000 children are one row

    # Step them at the tracer's cap (5,000 steps a second) for ~3 s.
    gaps = step_pool(feed, run, tasks, seconds=3.0)
    p95 = percentile(gaps, 0.95)
    record_property("frame_p95_ms", round(p95, 1))
    record_property("frames", len(gaps))
    print(f"10,000 stepping tasks: {len(gaps)} frames, p95 {p95:.1f} ms")
    assert len(gaps) >= 10, "the page stopped drawing while the tasks stepped"
    # The collapsed children's steps are drawn (the nursery's strip) and counted.
    expect(page.locator(f'[data-testid="lane-group"][data-run="{run}"]')).to_have_attribute(
        "data-bars", SOME
    )

    nursery.click()
    expect(nursery).to_have_attribute("aria-expanded", "true")
    expect(lanes).to_have_count(1 + MAX_EXPANDED)
    expect(page.get_by_test_id("nursery-more")).to_contain_text("+9,500 more")
    nursery.click()
    expect(lanes).to_have_count(1)

    search = page.get_by_test_id("tl-filter")
    search.fill("worker 9876")
    expect(lanes).to_have_count(2)  # the match and the task that holds it
    expect(lanes.last).to_have_text("worker 9876")
    expect(page.get_by_test_id("tl-matches")).to_have_text("1 found")
    search.fill("")
    expect(lanes).to_have_count(1)
    expect(page.get_by_test_id("tl-matches")).to_have_text("")
    # The real 10,000-task run ended as a summary row.
    expect(page.locator(f'[data-testid="run"][data-run="{real}"]')).to_have_attribute(
        "data-state", "done"
    )


def test_exited_tasks_stay_for_a_bounded_while(page: Page) -> None:
    """REAL (the page's pure model, imported in Chromium): the dead stay, but only 2,000."""
    kept = page.evaluate(
        """async () => {
            const { TimelineModel, MAX_EXITED_LANES } = await import("/timeline-model.js");
            const model = new TimelineModel();
            model.onRunStart({ run: "w1", scenario: "churn.py", t: 0 });
            for (let task = 1; task <= 3000; task += 1) {
                model.onSpawn({ run: "w1", task, name: `t${task}`, parent: 0, t: task / 1000 });
            }
            for (let task = 1; task <= 2500; task += 1) {
                model.onExit({ run: "w1", task, t: 3 + task / 1000 });
            }
            model.prune(10);
            const lanes = [...model.lanes.values()];
            return {
                bound: MAX_EXITED_LANES,
                alive: lanes.filter((lane) => lane.end === null).length,
                exited: lanes.filter((lane) => lane.end !== null).map((lane) => lane.task),
                grouped: model.groups.get("w1").lanes.length,
            };
        }"""
    )
    assert kept["bound"] == 2_000
    assert kept["alive"] == 500  # the living are never pruned for the dead
    # The ones that exited last stay; the first 500 to exit are forgotten.
    assert sorted(kept["exited"]) == list(range(501, 2501))
    assert kept["grouped"] == 2_500


def test_stall_banner_names_the_task_and_its_stack_until_the_block(
    page: Page, feed: FeedProxy
) -> None:
    """INJECTED. `stall` every second while a step holds the loop; the `block` closes it."""
    run = "w903"
    start_watched_run(feed, run, "stuck.py")
    feed.send([spawn(run, 1, "main", 0, 0), spawn(run, 2, "spinner", 1, 1)])
    frames = [
        {"file": "/home/u/stuck.py", "line": 30, "function": "main"},
        {"file": "/home/u/stuck.py", "line": 12, "function": "spinner"},
        {"file": "/usr/lib/python3.13/time.py", "line": 0, "function": "sleep"},
    ]
    stall = {"kind": "stall", "run": run, "task": BASE_ID + 2, "name": "spinner"}
    feed.send([{**stall, "seconds": 1.2, "frames": frames}])
    banner = page.get_by_test_id("stall-banner")
    expect(banner).to_have_count(1)
    expect(banner).to_have_attribute("data-run", run)
    expect(banner.get_by_test_id("stall-task")).to_have_text("spinner")
    expect(banner.get_by_test_id("stall-where")).to_have_text(
        "/usr/lib/python3.13/time.py:0 in sleep"
    )
    expect(banner.get_by_test_id("stall-frames").locator("li")).to_have_text(
        [
            "/home/u/stuck.py:30 in main",
            "/home/u/stuck.py:12 in spinner",
            "/usr/lib/python3.13/time.py:0 in sleep",
        ]
    )
    # A second later the watchdog says it again, with a fresh stack: one banner, updated.
    frames2 = [*frames[:2], {"file": "/home/u/stuck.py", "line": 14, "function": "spinner"}]
    feed.send([{**stall, "seconds": 2.2, "frames": frames2}])
    expect(banner).to_have_count(1)
    expect(banner.get_by_test_id("stall-where")).to_have_text("/home/u/stuck.py:14 in spinner")
    expect(banner.get_by_test_id("stall-seconds")).to_have_text(re.compile(r"^2\.\d\d s"))

    # The step returns: the block with the full duration closes the banner.
    group = page.locator(f'[data-testid="lane-group"][data-run="{run}"]')
    feed.send(
        [
            {
                "kind": "block",
                "run": run,
                "task": BASE_ID + 2,
                "name": "spinner",
                "t": feed.now() - 2.5,
                "dur": 2.5,
            }
        ]
    )
    expect(banner).to_have_count(0)
    expect(group).to_have_attribute("data-blocks", SOME)


def test_stall_banner_goes_with_a_gap_or_the_runs_end(page: Page, feed: FeedProxy) -> None:
    """INJECTED. A stall whose block may be lost in a gap is not left on screen forever."""
    run = "w904"
    start_watched_run(feed, run, "stuck.py")
    stall = {"kind": "stall", "run": run, "task": BASE_ID + 9, "name": "loop", "seconds": 1.0}
    feed.send([{**stall, "frames": [{"file": "a.py", "line": 3, "function": "loop"}]}])
    banner = page.get_by_test_id("stall-banner")
    expect(banner).to_have_count(1)
    assert feed.route is not None
    feed.route.send(json.dumps({"type": "gap", "missed": 10, "resume": feed.seq}))
    expect(banner).to_have_count(0)
    feed.send([{**stall, "seconds": 2.0, "frames": []}])
    expect(banner).to_have_count(1)
    expect(banner.get_by_test_id("stall-frames").locator("li")).to_have_count(0)
    feed.send([{"kind": "run_end", "run": run, "state": "error", "error": "killed"}])
    expect(banner).to_have_count(0)


TASK_ANSWER = {
    "id": BASE_ID + 4,
    "name": "handler #1",
    "parent": BASE_ID + 2,
    "nursery": 3,
    "state": "waiting",
    "where": [
        {"file": "/home/u/app.py", "line": 40, "function": "handler"},
        {"file": "/venv/trio/_highlevel_generic.py", "line": 88, "function": "receive_some"},
    ],
    "scopes": ["nursery (2 tasks)", "cancel scope, deadline in 4.500 s"],
}


def test_click_a_task_shows_where_it_is_suspended(page: Page, feed: FeedProxy) -> None:
    """INJECTED tree, MOCKED ``GET /api/tasks/{id}``: click a lane, see its await chain."""
    asked: list[str] = []

    def answer(route: Route) -> None:
        asked.append(route.request.url)
        if route.request.url.endswith(f"/api/tasks/{BASE_ID + 4}"):
            route.fulfill(json=TASK_ANSWER)
        else:
            route.fulfill(status=404, json={"error": "no such task"})

    page.route(re.compile(r"/api/tasks/\d+$"), answer)
    run = "w905"
    start_server_tree(feed, run)
    lane = page.locator(f'[data-testid="lane"][data-task="{BASE_ID + 4}"]')
    lane.click()
    panel = page.get_by_test_id("task-detail")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("task-detail-title")).to_have_text(
        f"handler #1 (task {BASE_ID + 4}, {run})"
    )
    expect(panel).to_have_attribute("data-state", "waiting")
    expect(page.get_by_test_id("task-where").locator("li")).to_have_text(
        [
            "/home/u/app.py:40 in handler",
            "/venv/trio/_highlevel_generic.py:88 in receive_some",
        ]
    )
    expect(page.get_by_test_id("task-scopes").locator("li")).to_have_text(
        ["nursery (2 tasks)", "cancel scope, deadline in 4.500 s"]
    )
    assert asked[-1].endswith(f"/api/tasks/{BASE_ID + 4}")

    # A task the server no longer knows: said in words, the old stack gone.
    page.locator(f'[data-testid="lane"][data-task="{BASE_ID + 5}"]').click()
    expect(panel).to_have_attribute("data-phase", "gone")
    expect(page.get_by_test_id("task-detail-status")).to_contain_text("has exited")
    expect(page.get_by_test_id("task-where").locator("li")).to_have_count(0)
    page.get_by_role("button", name="Close the task's details").click()
    expect(panel).to_be_hidden()

    # A click (not a drag) on the task's lane on the canvas asks the same.
    lane.scroll_into_view_if_needed()
    # Where the lane's row is, read in one go in the page (the labels are rebuilt as the
    # layout changes, so a node found in one call may be replaced by the next).
    x, y = page.evaluate(
        """(task) => {
            const label = document.querySelector(`[data-testid="lane"][data-task="${task}"]`);
            const row = label.getBoundingClientRect();
            const canvas = document.querySelector('[data-testid="tl-canvas"]');
            const box = canvas.getBoundingClientRect();
            return [box.left + box.width / 2, row.top + row.height / 2];
        }""",
        BASE_ID + 4,
    )
    page.mouse.click(x, y)
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-task", str(BASE_ID + 4))
    expect(page.get_by_test_id("task-where").locator("li")).to_have_count(2)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def test_a_failing_task_request_is_explained(page: Page, feed: FeedProxy) -> None:
    """MOCKED ``GET /api/tasks/{id}`` answering 500: the panel says so; nothing breaks."""
    page.route(re.compile(r"/api/tasks/\d+$"), lambda route: route.fulfill(status=500))
    run = "w906"
    start_watched_run(feed, run)
    feed.send([spawn(run, 1, "main", 0, 0)])
    page.locator(f'[data-testid="lane"][data-task="{BASE_ID + 1}"]').click()
    expect(page.get_by_test_id("task-detail")).to_have_attribute("data-phase", "error")
    expect(page.get_by_test_id("task-detail-status")).to_contain_text("HTTP 500")


def test_tasks_started_before_the_page_are_loaded_on_request(page: Page, feed: FeedProxy) -> None:
    """INJECTED steps of tasks whose spawn the page never saw, MOCKED ``GET /api/tasks``.

    A page opened while a watched program runs gets the server's replay, which may hold only
    steps: the run's row offers to ask for the tree, and one click brings the lanes.
    """
    run = "w907"

    def live(task: int, name: str, parent: int, nursery: int) -> dict[str, Any]:
        return {
            "id": BASE_ID + task,
            "name": name,
            "parent": BASE_ID + parent if parent else 0,
            "nursery": nursery,
            "state": "waiting",
            "where": [],
            "scopes": [],
        }

    tasks = [live(1, "main", 0, 1), live(2, "server", 1, 2), live(3, "ticker", 1, 3)]
    tree = {"runs": [{"run": run, "pid": 4242, "tasks": [*tasks, live(4, "handler", 2, 4)]}]}
    asked: list[str] = []

    def answer(route: Route) -> None:
        asked.append(route.request.url)
        route.fulfill(json=tree)

    page.route(re.compile(r"/api/tasks$"), answer)
    start_watched_run(feed, run)
    step = {"kind": "step", "run": run, "dur": 0.001, "busy": 0.001}
    feed.send([{**step, "task": BASE_ID + task} for task in (2, 3, 4, 4)])
    load = page.locator(f'[data-testid="load-tree"][data-run="{run}"]')
    expect(load).to_have_attribute("data-count", "3")
    expect(load).to_contain_text("3 tasks started before this page")
    assert not asked  # never asked without a click: the tree is taken inside the loop
    load.click()
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(4)
    expect(load).to_have_count(0)
    expect(page.get_by_test_id("notice-message").last).to_contain_text("4 tasks added")
    assert len(asked) == 1
    rows = label_rows(page, run)
    assert [(r["kind"], r["depth"]) for r in rows][:4] == [
        ("lane-group", ""),
        ("lane", "0"),
        ("nursery", "1"),
        ("lane", "2"),
    ]


def test_a_watched_programs_lines_in_the_console(page: Page, feed: FeedProxy) -> None:
    """INJECTED `output` with `stream`: attributed to its task; stderr lines are marked."""
    run = "w908"
    start_watched_run(feed, run)
    feed.send([spawn(run, 1, "main", 0, 0), spawn(run, 2, "worker", 1, 1)])
    feed.send(
        [
            {"kind": "output", "run": run, "task": BASE_ID + 2, "text": "ok", "stream": "stdout"},
            {"kind": "output", "run": run, "task": BASE_ID + 2, "text": "oops", "stream": "stderr"},
        ]
    )
    lines = page.locator(f'[data-testid="console-line"][data-run="{run}"]')
    expect(lines).to_have_count(2)
    expect(lines.locator(".who")).to_have_text([f"{run} worker", f"{run} worker"])
    expect(lines.nth(0)).not_to_have_class(re.compile(r"\bstderr\b"))
    expect(lines.nth(1)).to_have_class(re.compile(r"\bstderr\b"))
    expect(lines.nth(1)).to_have_attribute("data-stream", "stderr")
