"""A watched program for the page's end-to-end test: nested nurseries, many named tasks, a stall.

main opens two nurseries: one holds ``server``, whose own nursery holds 250 ``handler N``
tasks that wait forever (no steps, so the server's replay still holds every spawn when the
page connects); the other holds ``ticker``. Each line on stdin makes the ticker block the loop
for 2.5 s with ``time.sleep`` (the stall); EOF ends the program.
"""

import sys
import time

import trio

HANDLERS = 250
STALL_SECONDS = 2.5


async def handler() -> None:
    await trio.sleep_forever()


async def server() -> None:
    async with trio.open_nursery() as nursery:
        for n in range(HANDLERS):
            nursery.start_soon(handler, name=f"handler {n}")


async def ticker(lines: trio.MemoryReceiveChannel[str]) -> None:
    async for _ in lines:
        time.sleep(STALL_SECONDS)  # noqa: ASYNC251  THE-STALL: the lesson, not a bug


async def read_lines(send: trio.MemorySendChannel[str]) -> None:
    async with send:
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            await send.send(line)


async def main() -> None:
    send, receive = trio.open_memory_channel[str](1)
    async with trio.open_nursery() as outer:
        outer.start_soon(server, name="server")
        async with trio.open_nursery() as inner:
            inner.start_soon(ticker, receive, name="ticker")
            await read_lines(send)
        outer.cancel_scope.cancel()


trio.run(main)
