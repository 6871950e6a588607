"""argv[1] tasks in one nursery, each stepping a few times: the agent and the link stay bounded."""

import sys

import trio


async def worker() -> None:
    for _ in range(3):
        await trio.lowlevel.checkpoint()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        for i in range(int(sys.argv[1])):
            nursery.start_soon(worker, name=f"worker-{i}")
    print("all done", flush=True)


trio.run(main)
