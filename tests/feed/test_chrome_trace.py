"""The Chrome trace of a real run: loads, a thread per task, parents linked, blocks as instants."""

from __future__ import annotations

import json

from app.feed.chrome_trace import chrome_trace
from app.feed.events import StackFrame, Stall

from run_harness import Harness, lanes


async def test_exported_trace_of_a_blocking_run(harness: Harness) -> None:
    record = await harness.run("blocking", mode="time.sleep", count=1, duration=0.1)
    trace = json.loads(json.dumps(chrome_trace(record.events)))  # what a file would hold
    events = trace["traceEvents"]
    threads = {e["tid"]: e["args"] for e in events if e["name"] == "thread_name" and e["tid"] != 0}
    spawned = lanes(record)
    # One thread per task, named after it, with its parent.
    assert set(threads) == set(spawned)
    for tid, args in threads.items():
        assert args["name"] == spawned[tid].name
        assert args["parent"] == spawned[tid].parent
    # Flow arrows from parent to child for every task that has a parent.
    starts = {e["id"]: e["tid"] for e in events if e.get("ph") == "s"}
    finishes = {e["id"]: e["tid"] for e in events if e.get("ph") == "f"}
    children = {tid for tid, s in spawned.items() if s.parent}
    assert set(starts) == set(finishes) == children
    assert all(starts[c] == spawned[c].parent and finishes[c] == c for c in children)
    # Steps are complete events on their task's thread; output lines are instants.
    assert {e["tid"] for e in events if e.get("ph") == "X"} <= set(spawned)
    assert any(e["ph"] == "i" and e["name"].startswith("worker-1 0") for e in events)
    blocks = [e for e in events if e["name"] == "block"]
    assert len(blocks) == 2
    for block in blocks:
        assert block["ph"] == "i"
        assert block["args"]["task"] in ("worker-1", "worker-2")
        assert block["args"]["duration_ms"] >= 100
        assert spawned[block["tid"]].name == block["args"]["task"]
    assert all(isinstance(e["ts"], float | int) for e in events if "ts" in e)


def test_a_stall_is_a_global_instant_with_its_innermost_frame() -> None:
    # issue 10: the watchdog's stall event, as trio-echo watch --trace writes it.
    stall = Stall(
        task=3,
        t=1.5,
        name="stuck",
        seconds=1.25,
        frames=[StackFrame("app.py", 4, "main"), StackFrame("app.py", 9, "stuck")],
    )
    (event,) = [e for e in chrome_trace([stall])["traceEvents"] if e["name"] == "stall"]
    assert (event["ph"], event["s"], event["tid"], event["ts"]) == ("i", "g", 3, 1_500_000)
    assert event["args"] == {"task": "stuck", "held_ms": 1250.0, "where": "app.py:9 in stuck"}
