"""``trio-echo demo``: the tutorial's printout in the terminal, every line, no server."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from app.child import self_command
from app.feed.ring import DEFAULT_CAPACITY
from app.scenarios.demo import run_demo


async def test_spawn_join_prints_like_the_tutorial() -> None:
    out, err = io.StringIO(), io.StringIO()
    record = await run_demo("spawn-join", {"tasks": 3, "n": 4, "sleep": 0.01}, out=out, err=err)
    assert record.state == "done"
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(f"<Task f(4) #{t}> {i}" for t in (1, 2, 3) for i in range(4))
    # With a checkpoint after each line, every task prints i before any prints i + 1.
    counters = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert counters == sorted(counters)
    assert err.getvalue().splitlines()[-1] == f"# {record.id} done"


async def test_more_lines_in_one_batch_than_the_ring_holds_are_all_printed() -> None:
    """100 tasks x 1,000 lines without a checkpoint: one scheduler batch laps the ring."""
    tasks, n = 100, 1000
    assert tasks * n > DEFAULT_CAPACITY
    out, err = io.StringIO(), io.StringIO()
    record = await run_demo("spawn-join", {"tasks": tasks, "n": n}, out=out, err=err)
    assert record.state == "done"
    by_task: dict[str, list[int]] = {}
    for line in out.getvalue().splitlines():
        task, counter = line.rsplit(" ", 1)
        by_task.setdefault(task, []).append(int(counter))
    assert len(by_task) == tasks
    assert all(counters == list(range(n)) for counters in by_task.values())


async def test_blocks_go_to_stderr_and_the_trace_file_loads(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    trace_path = tmp_path / "run.json"
    params = {"mode": "time.sleep", "count": 1, "duration": 0.1}
    record = await run_demo("blocking", params, out=out, err=err, trace_path=trace_path)
    assert record.state == "done"
    blocks = [line for line in err.getvalue().splitlines() if line.startswith("# block:")]
    assert len(blocks) == 2  # one per worker
    trace = json.loads(trace_path.read_text())
    assert sum(1 for e in trace["traceEvents"] if e["name"] == "block") == 2


def test_the_command_line_runs_a_scenario_and_refuses_bad_parameters() -> None:
    demo = self_command("demo")
    done = subprocess.run([*demo, "switch", "--rounds", "2"], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.decode().splitlines()] == ["A", "B", "A", "B"]
    refused = subprocess.run([*demo, "switch", "--rounds", "0"], capture_output=True, timeout=30)
    assert refused.returncode == 2
    assert b"rounds" in refused.stderr
