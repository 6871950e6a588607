"""A program whose task raises: the traceback is printed and the exit code is Python's (1)."""

import trio


async def fails() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom from a task")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fails, name="fails")


trio.run(main)
