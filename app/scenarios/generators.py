"""The tutorial's generator ping-pong: ``work1`` and ``work2`` driven round-robin by ``next()``.

Generators are not tasks: one Trio task (the driver) owns both and decides
when each runs.  Nothing interleaves by itself; the driver's ``next()`` calls
are the only switches.  The driver pauses between rounds (a checkpoint) so
the page can show the rounds in time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import trio

from app.scenarios.base import RunContext
from app.scenarios.catalog import Param, ScenarioInfo

# Pause of the driver between rounds, so that the rounds are visible on a timeline.
ROUND_PAUSE: Final = 0.1

INFO: Final = ScenarioInfo(
    name="generators",
    title="Generators: work1 / work2 with yield",
    idea="A generator runs until its yield and hands control back to whoever called next(): "
    "cooperative switching, driven by hand.",
    watch="One task (the driver) prints both lines: ------work1---- and ------work2----- alternate "
    "strictly, because the driver alternates its next() calls.",
    params=(Param("rounds", "int", 5, "rounds of next(w1), next(w2)", 1, 1000),),
)


def work1() -> Iterator[str]:
    while True:
        yield "------work1----"


def work2() -> Iterator[str]:
    while True:
        yield "------work2-----"


async def run(ctx: RunContext, rounds: int) -> None:
    w1 = work1()
    w2 = work2()
    for _ in range(rounds):
        ctx.print(next(w1))
        ctx.print(next(w2))
        await trio.sleep(ROUND_PAUSE)
