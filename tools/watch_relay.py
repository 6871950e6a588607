"""The scheduler-bound microbenchmark of ``tools/watch_overhead.py``: run plain or under watch.

``python watch_relay.py TASKS HOPS``: TASKS tasks in a ring of memory channels pass one token
HOPS times in all; prints one JSON line ``{"tasks", "hops", "seconds", "hops_per_s"}``.  Every
hop is a send, a receive and two scheduler steps, so the instrument's per-step cost dominates.
"""

import json
import sys
import time

import trio


async def relay(receive: trio.MemoryReceiveChannel[int], send: trio.MemorySendChannel[int]) -> None:
    async for token in receive:
        await send.send(token - 1)
        if token <= 0:
            return


async def main(tasks: int, hops: int) -> None:
    sends, receives = zip(*(trio.open_memory_channel[int](1) for _ in range(tasks)), strict=True)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(relay, receives[i], sends[(i + 1) % tasks], name=f"relay-{i}")
        await sends[0].send(hops)
    seconds = time.perf_counter() - start
    result = {"tasks": tasks, "hops": hops, "seconds": seconds, "hops_per_s": hops / seconds}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
