""" "Ten thousand coroutines on one CPU": spawn N Trio tasks, let each sleep, join them all.

The page shows the summary (time to spawn, time to join, memory per task),
not N lanes: the tasks run in a quiet nursery the tracer does not draw.
Memory is the growth of the process's resident set while the tasks exist,
divided by N, so it includes Trio's own bookkeeping per task.
"""

from __future__ import annotations

import os
import time
from typing import Final

import trio

from app.scenarios.base import RunContext
from app.scenarios.catalog import Param, ScenarioInfo

# Each task sleeps this long, so that all N exist at the same time.
TASK_SLEEP: Final = 0.5

INFO: Final = ScenarioInfo(
    name="many-tasks",
    title="10,000 tasks on one core",
    idea="Coroutines are cheap: one thread runs ten thousand of them.",
    watch="The summary: spawn time, join time, and memory per task (a few KiB).",
    params=(Param("tasks", "int", 10_000, "how many tasks to spawn", 1, 100_000),),
    lanes=False,
)


def resident_bytes() -> int:
    """Resident set size of this process (Linux), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


async def sleeper(done: list[int]) -> None:
    await trio.sleep(TASK_SLEEP)
    done[0] += 1


async def run(ctx: RunContext, tasks: int) -> None:
    done = [0]
    before = resident_bytes()
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        ctx.quiet(nursery)
        for _ in range(tasks):
            nursery.start_soon(sleeper, done)
        spawned = time.perf_counter() - start
        per_task = max(resident_bytes() - before, 0) / tasks
        ctx.print(
            f"spawned {tasks} tasks in {spawned * 1000:.1f} ms, ~{per_task / 1024:.1f} KiB each"
        )
    joined = time.perf_counter() - start
    ctx.print(
        f"all {done[0]} tasks done; spawn, sleep {TASK_SLEEP} s and join: {joined * 1000:.0f} ms"
    )
    ctx.summary(
        tasks=tasks,
        finished=done[0],
        spawn_ms=round(spawned * 1000, 2),
        join_ms=round(joined * 1000, 2),
        bytes_per_task=round(per_task),
    )
