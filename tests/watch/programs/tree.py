"""Nested nurseries and named tasks; prints from each task, then waits for stdin to close."""

import sys

import trio


async def leaf(n: int) -> None:
    print(f"leaf {n} says hi", flush=True)
    await trio.sleep_forever()


async def branch() -> None:
    async with trio.open_nursery() as inner:
        inner.start_soon(leaf, 1, name="leaf-1")
        inner.start_soon(leaf, 2, name="leaf-2")


async def main() -> None:
    async with trio.open_nursery() as outer:
        outer.start_soon(branch, name="branch")
        print("main ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
        print("main done", file=sys.stderr, flush=True)
        outer.cancel_scope.cancel()


trio.run(main)
