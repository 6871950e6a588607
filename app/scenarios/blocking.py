""" "Blocking I/O blocks the whole program": ``time.sleep`` in a task stalls every task.

Two workers each sleep ``count`` times, and a heartbeat task ticks every
:data:`HEARTBEAT` seconds.  With ``time.sleep`` the heartbeat stops while a
worker sleeps (the scheduler never gets the thread back) and the tracer
reports each sleep as a ``block``.  ``trio.to_thread.run_sync(time.sleep)``
sleeps in a worker thread while the task waits at a checkpoint: the
heartbeat keeps ticking.  ``trio.sleep`` is the plain cooperative version.
"""

from __future__ import annotations

import time
from typing import Final

import trio

from app.scenarios.base import RunContext
from app.scenarios.catalog import Param, ScenarioInfo

HEARTBEAT: Final = 0.05
MODES: Final = ("time.sleep", "to_thread", "trio.sleep")

INFO: Final = ScenarioInfo(
    name="blocking",
    title="Blocking calls stall everything",
    idea="A blocking call inside a coroutine blocks the whole program; give it to a thread.",
    watch="time.sleep: the heartbeat lane goes silent during every sleep and each sleep is "
    "flagged as a block. to_thread or trio.sleep: the heartbeat keeps ticking.",
    params=(
        Param("mode", "choice", "time.sleep", "how the workers sleep", choices=MODES),
        Param("count", "int", 5, "sleeps per worker", 1, 100),
        Param("duration", "float", 0.2, "seconds per sleep", 0, 5),
    ),
)


async def worker(ctx: RunContext, name: str, mode: str, count: int, duration: float) -> None:
    for i in range(count):
        ctx.print(f"{name} {i} {mode}({duration})")
        if mode == "time.sleep":
            # The lesson, not a bug: this stalls every task for `duration`.
            time.sleep(duration)  # noqa: ASYNC251
            await trio.lowlevel.checkpoint()
        elif mode == "to_thread":
            await trio.to_thread.run_sync(time.sleep, duration)
        else:
            await trio.sleep(duration)


async def heartbeat(ctx: RunContext) -> None:
    beat = 0
    while True:
        ctx.print(f"heartbeat {beat}")
        beat += 1
        await trio.sleep(HEARTBEAT)


async def run(ctx: RunContext, mode: str, count: int, duration: float) -> None:
    async with trio.open_nursery() as outer:
        outer.start_soon(heartbeat, ctx, name="heartbeat")
        async with trio.open_nursery() as workers:
            for name in ("worker-1", "worker-2"):
                workers.start_soon(worker, ctx, name, mode, count, duration, name=name)
        outer.cancel_scope.cancel()
