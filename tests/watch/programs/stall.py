"""A task that blocks the loop: time.sleep (argv[1] == "sleep") or a loop with no checkpoint."""

import sys
import time

import trio


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # STALL-SPIN: no checkpoint here
        pass


async def stuck(how: str, seconds: float) -> None:
    print("about to stall", flush=True)
    if how == "sleep":
        time.sleep(seconds)  # noqa: ASYNC251  STALL-SLEEP: the lesson, not a bug
    else:
        spin(seconds)
    print("stall over", flush=True)


async def main() -> None:
    how, seconds = sys.argv[1], float(sys.argv[2])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stuck, how, seconds, name="stuck-task")
        nursery.start_soon(trio.sleep, 0.1, name="bystander")


trio.run(main)
