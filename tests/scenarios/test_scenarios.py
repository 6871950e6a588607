"""Each scenario asserts only what Trio guarantees (order within a task, rounds, hand-offs)."""

from __future__ import annotations

import pytest
import trio

from app.scenarios.random_sleep import draws

from run_harness import Harness, blocks, lanes, lines, lines_by_task_name


async def test_generators_alternate_work1_and_work2(
    harness: Harness, autojump_clock: object
) -> None:
    record = await harness.run("generators", rounds=4)
    assert record.state == "done"
    assert lines(record) == ["------work1----", "------work2-----"] * 4
    # Generators are not tasks: one lane (the driver) printed every line.
    assert len(lanes(record)) == 1


async def test_switch_hands_off_strictly_between_a_and_b(
    harness: Harness, autojump_clock: object
) -> None:
    record = await harness.run("switch", rounds=5)
    assert record.state == "done"
    printed = lines_by_task_name(record)
    assert printed == [(side, f"{side} {i}") for i in range(5) for side in ("A", "B")]


async def test_spawn_join_without_checkpoint_runs_each_task_to_the_end(harness: Harness) -> None:
    record = await harness.run("spawn-join", tasks=3, n=5, sleep=0)
    printed = lines_by_task_name(record)
    assert len(printed) == 15
    # Trio may start the tasks in any order, but with no checkpoint inside f
    # nothing can come between a task's lines: each task's 5 lines are one block.
    for start in range(0, 15, 5):
        block = printed[start : start + 5]
        name = block[0][0]
        assert block == [(name, f"<Task {name}> {i}") for i in range(5)]
    assert {name for name, _ in printed} == {"f(5) #1", "f(5) #2", "f(5) #3"}


async def test_spawn_join_with_sleep_interleaves_in_rounds(
    harness: Harness, autojump_clock: object
) -> None:
    record = await harness.run("spawn-join", tasks=3, n=4, sleep=0.5)
    printed = lines_by_task_name(record)
    counters = [int(text.rsplit(" ", 1)[1]) for _, text in printed]
    # Every task prints i before any task prints i + 1 (the order within a round is Trio's).
    assert counters == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for name in ("f(4) #1", "f(4) #2", "f(4) #3"):
        assert [t for n, t in printed if n == name] == [f"<Task {name}> {i}" for i in range(4)]


async def test_spawn_join_lanes_form_the_nursery_tree(harness: Harness) -> None:
    record = await harness.run("spawn-join", tasks=3, n=1, sleep=0)
    spawned = lanes(record)
    roots = [s for s in spawned.values() if s.parent == 0]
    assert [r.name for r in roots] == ["spawn-join"]
    children = [s for s in spawned.values() if s.parent == roots[0].task]
    assert sorted(c.name for c in children) == ["f(1) #1", "f(1) #2", "f(1) #3"]


async def test_random_sleep_is_repeatable_with_a_seed(
    harness: Harness, autojump_clock: object
) -> None:
    first = await harness.run("random-sleep", count=6, scale=0.5, seed=42)
    second = await harness.run("random-sleep", count=6, scale=0.5, seed=42)
    for worker, number in (("worker-1", 1), ("worker-2", 2)):
        mine = [t for n, t in lines_by_task_name(first) if n == worker]
        assert mine == [t for n, t in lines_by_task_name(second) if n == worker]
        expected = [
            f"{worker} {i} sleeping {s * 1000:.0f} ms"
            for i, s in enumerate(draws(42, number, 6, 0.5))
        ]
        assert mine == expected
    assert first.summary["seed"] == 42


async def test_random_sleep_without_seed_reports_the_one_it_drew(
    harness: Harness, autojump_clock: object
) -> None:
    record = await harness.run("random-sleep", count=2, scale=0.1)
    assert isinstance(record.summary["seed"], int)
    assert record.params["seed"] is None


async def test_blocking_time_sleep_stalls_everything_and_is_flagged(harness: Harness) -> None:
    record = await harness.run("blocking", mode="time.sleep", count=2, duration=0.15)
    flagged = blocks(record)
    assert sorted(b.name for b in flagged) == ["worker-1", "worker-1", "worker-2", "worker-2"]
    assert all(b.dur >= 0.15 for b in flagged)
    # The heartbeat had no chance to beat while the workers held the loop: 0.6 s
    # of sleeps, yet it ticked about as often as in a single 50 ms interval.
    beats = [t for n, t in lines_by_task_name(record) if n == "heartbeat"]
    assert len(beats) <= 3


@pytest.mark.parametrize("mode", ["to_thread", "trio.sleep"])
async def test_blocking_cooperative_modes_do_not_stall(harness: Harness, mode: str) -> None:
    record = await harness.run("blocking", mode=mode, count=2, duration=0.15)
    assert blocks(record) == []
    beats = [t for n, t in lines_by_task_name(record) if n == "heartbeat"]
    assert len(beats) >= 4  # 0.3 s of worker sleeps at one beat per 50 ms


async def test_many_tasks_reports_a_summary_without_a_lane_per_task(harness: Harness) -> None:
    record = await harness.run("many-tasks", tasks=2000)
    assert record.state == "done"
    assert record.summary["tasks"] == record.summary["finished"] == 2000
    assert record.summary["spawn_ms"] <= record.summary["join_ms"]
    assert record.summary["bytes_per_task"] >= 0
    assert len(lanes(record)) == 1  # the driver only: the 2,000 run in a quiet nursery


async def test_output_is_attributed_to_the_task_that_printed(harness: Harness) -> None:
    record = await harness.run("switch", rounds=2)
    spawned = lanes(record)
    for event_task, text in [(e.task, e.text) for e in record.events if hasattr(e, "text")]:
        assert spawned[event_task].name == text.split()[0]


async def test_scenarios_run_alone_in_trio_too() -> None:
    """Scenario code is plain Trio: it runs with any RunContext, no server needed."""
    from app.scenarios.spawn_join import run

    printed: list[str] = []

    class Console:
        run_id = "test"

        def print(self, *parts: object) -> None:
            printed.append(" ".join(map(str, parts)))

        def quiet(self, nursery: trio.Nursery) -> None:
            pass

        def summary(self, **values: object) -> None:
            pass

    await run(Console(), tasks=2, n=2, sleep=0)
    assert sorted(printed) == [
        "<Task f(2) #1> 0",
        "<Task f(2) #1> 1",
        "<Task f(2) #2> 0",
        "<Task f(2) #2> 1",
    ]
