"""greenlet's explicit ``switch()``, as two Trio tasks handing a baton back and forth.

greenlet switches by name (``gr2.switch()``); Trio has no such call, and the
idiomatic way to say "now you" is to hand something over a channel.  An
unbuffered memory channel is a rendezvous: the sender waits until the
receiver takes it, so A and B alternate strictly, whatever the scheduler does.
"""

from __future__ import annotations

from typing import Final

import trio

from app.scenarios.base import RunContext
from app.scenarios.catalog import Param, ScenarioInfo

INFO: Final = ScenarioInfo(
    name="switch",
    title="greenlet switch(): explicit hand-off",
    idea="gr1.switch() / gr2.switch(): each side decides exactly when the other runs.",
    watch="Two lanes, A and B, strictly alternating: A 0, B 0, A 1, B 1 ... The baton (an "
    "unbuffered channel) is the only thing that moves control between them.",
    params=(Param("rounds", "int", 5, "turns each side takes", 1, 1000),),
)


async def player(
    ctx: RunContext,
    name: str,
    rounds: int,
    my_turn: trio.MemoryReceiveChannel[None],
    next_turn: trio.MemorySendChannel[None],
    first: bool,
) -> None:
    for i in range(rounds):
        await my_turn.receive()
        ctx.print(f"{name} {i}")
        # The side that went first hands over after its last turn too, so the other gets its last.
        if first or i < rounds - 1:
            await next_turn.send(None)  # switch() to the other side


async def run(ctx: RunContext, rounds: int) -> None:
    to_a_send, to_a_receive = trio.open_memory_channel[None](0)
    to_b_send, to_b_receive = trio.open_memory_channel[None](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(player, ctx, "A", rounds, to_a_receive, to_b_send, True, name="A")
        nursery.start_soon(player, ctx, "B", rounds, to_b_receive, to_a_send, False, name="B")
        await to_a_send.send(None)  # A goes first, as gr1.switch() did
