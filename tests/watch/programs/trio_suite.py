"""A pytest-trio session to run under `trio-echo watch`: each test is its own trio.run."""

import pytest
import trio


@pytest.mark.trio
async def test_first() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0.01, name="first-child")


@pytest.mark.trio
async def test_second() -> None:
    print("second test prints")
    await trio.sleep(0.01)
