"""``serve`` watching its own loop: ``/api/tasks`` over HTTP, and its stall watchdog."""

from __future__ import annotations

import json
import logging
import time

import pytest
import trio

from app.child import self_command
from app.feed.events import Event, Stall

from conftest import start_server
from netclient import http_request


async def test_api_tasks_lists_the_servers_own_tree(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    with trio.fail_after(10):
        status, headers, body = await http_request(running.ports.http, "/api/tasks")
    assert status == 200 and headers["content-type"] == "application/json"
    (run,) = json.loads(body)["runs"]
    assert run["run"] == "serve"
    tasks = {t["name"]: t for t in run["tasks"]}
    assert {"ticker", "web front", "scenario runner"} <= set(tasks)
    ticker = tasks["ticker"]
    assert ticker["state"] in ("waiting", "running") and ticker["where"]
    assert ticker["where"][0]["function"] == "run_ticker"
    # Trio's own root and plumbing are not shown (pytest-trio's "<fixture ...>" tasks are).
    assert not {"<init>", "<TrioToken.run_sync_soon task>"} & set(tasks)
    # One task, by id, with its chain; the id is stable from one snapshot to the next.
    with trio.fail_after(10):
        status, _, body = await http_request(running.ports.http, f"/api/tasks/{ticker['id']}")
    assert status == 200
    one = json.loads(body)
    assert one["task"]["name"] == "ticker" and one["run"] == "serve"


async def test_a_stall_of_the_servers_loop_is_logged_and_published(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, stall_threshold=0.1)
    caplog.set_level(logging.WARNING, logger="app.watch.own")
    published: list[Event] = []
    running.hub.feed.add_tap(published.append)
    time.sleep(0.5)  # noqa: ASYNC251  OWN-STALL: the stall under test
    await trio.testing.wait_all_tasks_blocked()
    stalls = [e for e in published if isinstance(e, Stall)]
    assert stalls, "no stall event"
    assert stalls[0].seconds >= 0.1
    assert (
        stalls[0].frames[-1].function == "test_a_stall_of_the_servers_loop_is_logged_and_published"
    )
    assert any("stall: task" in r.getMessage() for r in caplog.records)


async def test_pstree_of_a_running_serve(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    # HOST:PORT is enough (http:// is assumed), as the page's URL is.
    with trio.fail_after(30):
        result = await trio.run_process(
            self_command("pstree", f"127.0.0.1:{running.ports.http}"),
            capture_stdout=True,
            capture_stderr=True,
        )
    tree = result.stdout.decode().splitlines()
    assert tree[0].startswith("run serve (pid ")
    ticker = next(line for line in tree if " ticker [" in line)
    assert "run_ticker" in ticker and "ticker.py:" in ticker


async def test_ps_of_nothing_is_one_line_and_exit_1() -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            self_command("ps", "http://127.0.0.1:9"), capture_stderr=True, check=False
        )
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert (
        line == "trio-echo ps: error: cannot reach http://127.0.0.1:9/api/tasks: Connection refused"
    )
