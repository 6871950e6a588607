"""``monkey.patch_all()`` with ``time.sleep(random())``: in Trio, ``await trio.sleep(random())``.

gevent needs monkey-patching to make ``time.sleep`` cooperative; in Trio the
cooperative sleep is simply the one you await.  Each worker draws its sleeps
from its own generator seeded from ``seed`` and the worker's number, so the
same seed gives each worker the same draws, hence the same interleaving,
except where two wake-ups fall into the same clock tick: Trio runs those in
a random order on purpose.
"""

from __future__ import annotations

import random
from typing import Final

import trio

from app.scenarios.base import RunContext
from app.scenarios.catalog import Param, ScenarioInfo

WORKERS: Final = ("worker-1", "worker-2")

INFO: Final = ScenarioInfo(
    name="random-sleep",
    title="monkey.patch_all() + random sleeps",
    idea="With gevent's monkey-patching, time.sleep(random()) lets the other greenlets run.",
    watch="Irregular interleaving of the two lanes. Run twice with the same seed: the same "
    "sleeps, the same order (ties within one clock tick may swap).",
    params=(
        Param("count", "int", 10, "lines per worker", 1, 1000),
        Param("scale", "float", 1.0, "each sleep is random() * scale seconds", 0, 10),
        Param(
            "seed", "int", None, "seed for the draws; empty picks one", 0, 2**31 - 1, optional=True
        ),
    ),
)


def draws(seed: int, worker: int, count: int, scale: float) -> list[float]:
    """The sleeps worker number *worker* takes: the same for the same seed, always."""
    rng = random.Random(seed * 1_000 + worker)
    return [rng.random() * scale for _ in range(count)]


async def worker(ctx: RunContext, name: str, sleeps: list[float]) -> None:
    for i, seconds in enumerate(sleeps):
        ctx.print(f"{name} {i} sleeping {seconds * 1000:.0f} ms")
        await trio.sleep(seconds)


async def run(ctx: RunContext, count: int, scale: float, seed: int | None) -> None:
    if seed is None:
        seed = random.randrange(2**31)
    ctx.summary(seed=seed)
    async with trio.open_nursery() as nursery:
        for number, name in enumerate(WORKERS, start=1):
            nursery.start_soon(worker, ctx, name, draws(seed, number, count, scale), name=name)
