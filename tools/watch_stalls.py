"""The stall part of ``tools/watch_overhead.py``: N stalls in a row, each announced first.

``python watch_stalls.py N SECONDS``: N times, print ``{"stall": i, "start": perf_counter()}``
and block the loop with ``time.sleep(SECONDS)`` (the lesson, not a bug), then checkpoint a
little.  ``perf_counter`` is CLOCK_MONOTONIC: the benchmark compares it with its own clock.
"""

import json
import sys
import time

import trio


async def stalls(n: int, seconds: float) -> None:
    for i in range(n):
        print(json.dumps({"stall": i, "start": time.perf_counter()}), flush=True)
        time.sleep(seconds)  # noqa: ASYNC251 - the stall being measured
        await trio.sleep(0.3)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stalls, int(sys.argv[1]), float(sys.argv[2]), name="staller")


if __name__ == "__main__":
    trio.run(main)
