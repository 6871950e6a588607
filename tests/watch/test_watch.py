"""``trio-echo watch -- python PROGRAM`` end to end: real child programs (tests/watch/programs),
the real agent inside them, the page's feed and ``/api/tasks`` read over real sockets.

Rules: port 0; every wait bounded by ``fail_after`` (generously: the machine is shared); no
assertion on how fast anything is, except that a stall is reported while it is still going.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from app.child import self_command

from netclient import http_request, ws_connect
from watched import (
    PROGRAMS,
    events_until,
    kinds,
    line_of,
    spawned,
    start_watch,
)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def get_json(url: str, path: str) -> Any:
    status, _, body = await http_request(port_of(url), path)
    assert status == 200, body
    return json.loads(body)


async def run_cli(*args: str) -> str:
    result = await trio.run_process(self_command(*args), capture_stdout=True, capture_stderr=True)
    return result.stdout.decode()


async def test_tree_output_tasks_ps_pstree_and_exit(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "tree.py")
    names = {"__main__.main", "branch", "leaf-1", "leaf-2"}
    with trio.fail_after(30):
        async with ws_connect(watched.url.replace("http", "ws") + "/ws/events") as ws:
            events = await events_until(
                ws,
                lambda seen: (
                    names <= set(spawned(seen))
                    and {"leaf 1 says hi", "leaf 2 says hi", "main ready"}
                    <= {e["text"] for e in kinds(seen, "output")}
                ),
            )
        # The tree as Trio holds it: main -> branch -> (leaf-1, leaf-2) in one nursery.
        spawns = spawned(events)
        main, branch = spawns["__main__.main"], spawns["branch"]
        leaf1, leaf2 = spawns["leaf-1"], spawns["leaf-2"]
        assert main.get("parent", 0) == 0
        assert branch["parent"] == main["task"]
        assert leaf1["parent"] == leaf2["parent"] == branch["task"]
        assert leaf1["nursery"] == leaf2["nursery"] != branch["nursery"]
        assert len({main["run"], branch["run"], leaf1["run"]}) == 1
        starts = kinds(events, "run_start")
        assert starts[0]["scenario"] == "watch" and starts[0]["params"]["pid"] == watched.pid
        # Every line attributed to the task that printed it.
        by_text = {e["text"]: e for e in kinds(events, "output")}
        assert by_text["leaf 1 says hi"]["task"] == leaf1["task"]
        assert by_text["leaf 2 says hi"]["task"] == leaf2["task"]
        assert by_text["main ready"]["task"] == main["task"]
        assert by_text["main ready"]["stream"] == "stdout"

        # Stacks on demand, over HTTP: each leaf waits in sleep_forever at its own line.
        body = await get_json(watched.url, "/api/tasks")
        (run,) = body["runs"]
        assert run["pid"] == watched.pid and run["run"] == main["run"]
        tasks = {t["name"]: t for t in run["tasks"]}
        assert names <= set(tasks)
        leaf_line = line_of("tree.py", "await trio.sleep_forever()")
        assert tasks["leaf-1"]["id"] == leaf1["task"]
        assert tasks["leaf-1"]["parent"] == branch["task"]
        assert tasks["leaf-1"]["state"] == "waiting"
        assert any(
            f["file"].endswith("tree.py") and f["line"] == leaf_line and f["function"] == "leaf"
            for f in tasks["leaf-1"]["where"]
        )
        assert any(s.startswith("nursery") for s in tasks["branch"]["scopes"])
        one = await get_json(watched.url, f"/api/tasks/{leaf2['task']}")
        assert one["task"]["name"] == "leaf-2" and one["task"]["where"]
        status, _, _ = await http_request(port_of(watched.url), "/api/tasks/999999")
        assert status == 404

        # ps and pstree print the same as text.
        table = await run_cli("ps", watched.url)
        header, *rows = table.splitlines()
        assert header.split()[:6] == ["RUN", "PID", "TASK", "PARENT", "STATE", "NAME"]
        leaf_row = next(r for r in rows if " leaf-1 " in r)
        assert leaf_row.split()[:4] == [
            main["run"],
            str(watched.pid),
            str(leaf1["task"]),
            str(branch["task"]),
        ]
        assert f"tree.py:{leaf_line}" in leaf_row
        tree = (await run_cli("pstree", watched.url)).splitlines()
        assert tree[0].startswith(f"run {main['run']} (pid {watched.pid}")
        depth = {
            name: next(len(row) - len(row.lstrip("│├└─ ")) for row in tree if f" {name} [" in row)
            for name in names
        }
        assert depth["__main__.main"] < depth["branch"] < depth["leaf-1"] == depth["leaf-2"]

        # The child ends (stdin closed): its stderr line is attributed; the page stays up.
        assert watched.proc.stdin is not None
        await watched.proc.stdin.aclose()
        await watched.wait_output(b"exited with code 0")
        async with ws_connect(watched.url.replace("http", "ws") + "/ws/events") as ws:
            events = await events_until(ws, lambda seen: bool(kinds(seen, "run_end")))
        done = {e["text"]: e for e in kinds(events, "output")}["main done"]
        assert done["stream"] == "stderr" and done["task"] == main["task"]
        assert kinds(events, "run_end")[0]["state"] == "done"
        assert (await get_json(watched.url, "/api/tasks"))["runs"] == []
        # ps says so on stderr; its table (the header) stays on stdout for scripts.
        after = await trio.run_process(
            self_command("ps", watched.url), capture_stdout=True, capture_stderr=True
        )
        assert after.stdout.decode().split() == [
            "RUN",
            "PID",
            "TASK",
            "PARENT",
            "STATE",
            "NAME",
            "WHERE",
        ]
        assert after.stderr.decode() == f"no trio.run is running at {watched.url}\n"
        watched.proc.send_signal(signal.SIGINT)
        assert await watched.proc.wait() == 0


@pytest.mark.parametrize(("how", "marker"), [("sleep", "STALL-SLEEP"), ("spin", "STALL-SPIN")])
async def test_stall_is_named_while_still_stuck(
    nursery: trio.Nursery, how: str, marker: str
) -> None:
    # A 6 s stall with a 0.5 s threshold: stall events at ~0.5, 1.5, 2.5 ... s, then the block.
    watched = await start_watch(
        nursery, "stall.py", how, "6", options=("--stall-threshold", "0.5", "--exit")
    )
    line = line_of("stall.py", marker)
    with trio.fail_after(60):
        async with ws_connect(watched.url.replace("http", "ws") + "/ws/events") as ws:
            events = await events_until(ws, lambda seen: len(kinds(seen, "stall")) >= 2)
            # Still stuck now: nothing has closed the stall yet.
            assert not [b for b in kinds(events, "block") if b["name"] == "stuck-task"]
            stall = kinds(events, "stall")[0]
            assert stall["name"] == "stuck-task"
            assert stall["task"] == spawned(events)["stuck-task"]["task"]
            assert stall["seconds"] >= 0.5
            innermost = stall["frames"][-1]
            assert innermost["file"].endswith("stall.py") and innermost["line"] == line
            assert kinds(events, "stall")[1]["seconds"] > stall["seconds"]
            # /api/tasks while stuck: answered from outside the loop, the stuck task 'stalled'.
            body = await get_json(watched.url, "/api/tasks")
            tasks = {t["name"]: t for run in body["runs"] for t in run["tasks"]}
            assert tasks["stuck-task"]["state"] == "stalled"
            assert tasks["stuck-task"]["where"][-1]["line"] == line
            table = await run_cli("ps", watched.url)
            assert f"stall.py:{line}" in next(r for r in table.splitlines() if "stuck-task" in r)
            # And one line in watch's own terminal, while still stuck (told once, not per report).
            told = b"task stuck-task has held the event loop for "
            await watched.wait_err(told)
            assert f"stall.py:{line} in ".encode() in watched.err
            # Then the step returns: the block with the full duration closes it.
            events += await events_until(
                ws, lambda seen: any(b["name"] == "stuck-task" for b in kinds(seen, "block"))
            )
        block = next(b for b in kinds(events, "block") if b["name"] == "stuck-task")
        assert block["dur"] >= 6
        assert await watched.proc.wait() == 0
        assert watched.err.count(told) == 1, watched.err


async def test_crash_keeps_traceback_and_exit_code(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "crash.py", options=("--exit",))
    with trio.fail_after(30):
        assert await watched.proc.wait() == 1
    await trio.testing.wait_all_tasks_blocked()
    assert b"ValueError: boom from a task" in watched.err
    assert b"Traceback (most recent call last)" in watched.err


async def test_ctrl_c_goes_to_the_child(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "interrupt.py", options=("--exit",))
    with trio.fail_after(30):
        await watched.wait_output(b"ready")
        watched.proc.send_signal(signal.SIGINT)
        assert await watched.proc.wait() == 5  # the program's own KeyboardInterrupt handling
    assert b"got KeyboardInterrupt" in watched.out


async def test_second_ctrl_c_ends_the_child(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "interrupt.py", "stubborn", options=("--exit",))
    with trio.fail_after(30):
        await watched.wait_output(b"ready")
        watched.proc.send_signal(signal.SIGINT)
        await watched.wait_output(b"ignoring SIGINT")
        watched.proc.send_signal(signal.SIGINT)
        assert await watched.proc.wait() == 128 + signal.SIGKILL


async def test_program_without_trio_run(nursery: trio.Nursery) -> None:
    command = [sys.executable, "-c", "print('plain'); raise SystemExit(4)"]
    watched = await start_watch(nursery, "", command=command, options=("--no-web",))
    with trio.fail_after(30):
        assert await watched.proc.wait() == 4
    await trio.testing.wait_all_tasks_blocked()
    assert b"plain\n" in watched.out
    assert b"never called trio.run; nothing was traced" in watched.err


async def test_flooding_child_output_unchanged(nursery: trio.Nursery, tmp_path: Path) -> None:
    n = 200_000
    trace = tmp_path / "flood.json"
    watched = await start_watch(
        nursery, "flood.py", str(n), options=("--no-web", "--trace", str(trace))
    )
    with trio.fail_after(120):
        assert await watched.proc.wait() == 0
    await trio.testing.wait_all_tasks_blocked()
    lines = watched.out.decode().splitlines()
    printed = [line for line in lines if line.startswith("line ")]
    assert printed == [f"line {i}" for i in range(n)]  # the terminal got every byte, in order
    body = json.loads(trace.read_text())
    seen = [e for e in body["traceEvents"] if e.get("ph") == "i" and e["name"].startswith("line ")]
    dropped = [
        e for e in body["traceEvents"] if e["name"] == "notice" and "dropped" in e["args"]["text"]
    ]
    # Bounded: what the link could not carry is counted, not kept: every line either arrived
    # or is in the count (other records, such as the flood's stall reports, may be too).
    counted = int(re.findall(r"(\d+) in all", dropped[-1]["args"]["text"])[0]) if dropped else 0
    assert len(seen) <= n <= len(seen) + counted


async def test_pytest_trio_session_each_test_a_run(nursery: trio.Nursery, tmp_path: Path) -> None:
    trace = tmp_path / "pytest.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        "/dev/null",
        "--rootdir",
        str(PROGRAMS),
        "-s",
        str(PROGRAMS / "trio_suite.py"),
    ]
    watched = await start_watch(
        nursery, "", command=command, options=("--no-web", "--trace", str(trace))
    )
    with trio.fail_after(120):
        assert await watched.proc.wait() == 0, watched.out.decode()
    await trio.testing.wait_all_tasks_blocked()
    assert b"2 passed" in watched.out
    body = json.loads(trace.read_text())
    runs = [e for e in body["traceEvents"] if e.get("name") == "run" and e.get("ph") == "i"]
    assert len(runs) == 2
    names = {e["args"]["name"] for e in body["traceEvents"] if e.get("name") == "thread_name"}
    assert "first-child" in names
    outputs = [e for e in body["traceEvents"] if e.get("name") == "second test prints"]
    assert outputs and outputs[0]["tid"] != 0


def gone_or_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def test_the_child_outlives_a_dead_watch(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "tree.py", options=("--no-web",))
    with trio.fail_after(30):
        await watched.wait_output(b"main ready")
        watched.proc.kill()  # watch dies without a word; the link breaks under the child
        await watched.proc.wait()
        assert not gone_or_zombie(watched.pid)
        assert watched.proc.stdin is not None
        await watched.proc.stdin.aclose()  # the child's stdin too: it ends by itself
        while not gone_or_zombie(watched.pid):  # noqa: ASYNC110 - another process's end
            await trio.sleep(0.05)
    await trio.testing.wait_all_tasks_blocked()
    assert b"main done" in watched.err  # it wrote after the link was gone, and went on
    assert b"Traceback" not in watched.err


async def test_ten_thousand_tasks_stay_bounded(nursery: trio.Nursery, tmp_path: Path) -> None:
    trace = tmp_path / "many.json"
    watched = await start_watch(
        nursery, "ten_thousand.py", "10000", options=("--no-web", "--trace", str(trace))
    )
    with trio.fail_after(120):
        assert await watched.proc.wait() == 0
    await trio.testing.wait_all_tasks_blocked()
    assert b"all done" in watched.out
    events = json.loads(trace.read_text())["traceEvents"]
    workers = [
        e for e in events if e["name"] == "thread_name" and e["args"]["name"].startswith("worker-")
    ]
    dropped = [e for e in events if e["name"] == "notice" and "dropped" in e["args"]["text"]]
    # Every task arrived, or what did not was counted; never more than there were.
    assert len(workers) == 10_000 or dropped
    assert len(workers) <= 10_000


async def test_a_command_that_cannot_start_is_one_line_and_127(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program")
    with trio.fail_after(30):
        result = await trio.run_process(
            self_command("watch", "--no-web", "--", missing),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 127
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"trio-echo watch: error: cannot run {missing}: ")


async def test_a_snapshot_of_ten_thousand_tasks(nursery: trio.Nursery) -> None:
    watched = await start_watch(nursery, "ten_thousand.py", "10000", "wait")
    with trio.fail_after(120):
        await watched.wait_output(b"all waiting")
        body = await get_json(watched.url, "/api/tasks")
        (run,) = body["runs"]
        workers = [t for t in run["tasks"] if t["name"].startswith("worker-")]
        assert len(workers) == 10_000  # one reply of several MB, over the same link
        assert all(t["where"] and t["state"] == "waiting" for t in workers[:10])
        assert watched.proc.stdin is not None
        await watched.proc.stdin.aclose()
        await watched.wait_output(b"exited with code 0")  # the page stays: Ctrl-C quits
        watched.proc.send_signal(signal.SIGINT)
        assert await watched.proc.wait() == 0
