"""argv[1] tasks in one nursery, each stepping a few times: the agent and the link stay bounded.

With argv[2] == "wait", the tasks then wait until stdin closes (for a snapshot of all of them).
"""

import sys

import trio
import trio.testing


async def worker(wait: bool) -> None:
    for _ in range(3):
        await trio.lowlevel.checkpoint()
    if wait:
        await trio.sleep_forever()


async def main() -> None:
    wait = sys.argv[2:] == ["wait"]
    async with trio.open_nursery() as nursery:
        for i in range(int(sys.argv[1])):
            nursery.start_soon(worker, wait, name=f"worker-{i}")
        if wait:
            await trio.testing.wait_all_tasks_blocked()
            print("all waiting", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()
    print("all done", flush=True)


trio.run(main)
