"""gevent's ``spawn(f, 5)`` three times, then ``join``: a nursery is the join.

Without a checkpoint in ``f`` each task runs from start to end without
interruption: a Trio task only lets others run at a checkpoint.  With
``sleep > 0`` every ``trio.sleep`` is one, so the tasks interleave in rounds.
Trio promises nothing about which spawned task runs first, so only the order
within each task and the rounds are guaranteed, not the order of tasks.
"""

from __future__ import annotations

from typing import Final

import trio

from app.scenarios.base import RunContext, task_label
from app.scenarios.catalog import Param, ScenarioInfo

INFO: Final = ScenarioInfo(
    name="spawn-join",
    title="gevent spawn / join: tasks in a nursery",
    idea="g1 = gevent.spawn(f, 5) ... g1.join(): with gevent.sleep the greenlets interleave; "
    "without it each runs to the end.",
    watch="sleep 0: each lane prints 0..n-1 in one go. sleep > 0: all lanes print i before any "
    "prints i+1. Which task starts first is up to Trio (and varies).",
    params=(
        Param("tasks", "int", 3, "how many f(n) tasks to spawn", 1, 100),
        Param("n", "int", 5, "how many lines each task prints", 1, 1000),
        Param(
            "sleep", "float", 0.0, "seconds of trio.sleep after each line; 0 = no checkpoint", 0, 10
        ),
    ),
)


async def f(ctx: RunContext, n: int, sleep: float) -> None:
    for i in range(n):
        ctx.print(f"{task_label()} {i}")
        if sleep > 0:
            await trio.sleep(sleep)


async def run(ctx: RunContext, tasks: int, n: int, sleep: float) -> None:
    async with trio.open_nursery() as nursery:  # leaving the block is gevent's join
        for k in range(1, tasks + 1):
            nursery.start_soon(f, ctx, n, sleep, name=f"f({n}) #{k}")
