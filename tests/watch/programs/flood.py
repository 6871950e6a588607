"""Floods stdout from a task: argv[1] lines, as fast as print goes."""

import sys

import trio


async def flood(n: int) -> None:
    for i in range(n):
        print(f"line {i}")
    sys.stdout.flush()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood, int(sys.argv[1]), name="flooder")


trio.run(main)
