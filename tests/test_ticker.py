"""The lag probe: a stall that the step tracer did not see is still reported, once."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from app.feed.events import Block, Notice
from app.tracer import StepTracer

from conftest import Running, start_server, wait_until
from netclient import ws_connect


def blocks_in(running: Running) -> list[Block]:
    return [e for e in running.events if isinstance(e, Block)]


def notices_in(running: Running) -> list[Notice]:
    return [e for e in running.events if isinstance(e, Notice)]


async def test_a_stall_nobody_traced_is_a_block_and_one_log_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery)
    assert not running.hub.tracer.steps_installed  # no run, no subscriber
    with trio.fail_after(5):
        await trio.sleep(0.15)  # the ticker is parked until its next probe
        time.sleep(0.3)  # noqa: ASYNC251 (the stall under test)
        await wait_until(lambda: bool(blocks_in(running)))
    [block] = blocks_in(running)
    assert block.task == 0 and block.run == ""
    assert 0.2 <= block.dur <= 0.35  # the probe sees at least the part past its wake-up
    stalls = [r for r in caplog.records if "event loop stalled" in r.getMessage()]
    assert len(stalls) == 1 and stalls[0].levelno == logging.WARNING
    assert notices_in(running) == []  # nobody was watching: no news for later pages


async def test_a_page_watching_an_untraced_server_is_told_of_stalls_at_a_bounded_rate(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, trace=False)  # a subscriber adds no step hooks
    with trio.fail_after(10):
        async with ws_connect(running.url("/ws/events")) as ws, trio.open_nursery() as page:

            async def read_like_a_page() -> None:
                while True:
                    await ws.get_message()

            page.start_soon(read_like_a_page)
            await wait_until(lambda: running.hub.feed.subscribers == 1)
            for count in (1, 2):
                await trio.sleep(0.15)  # the ticker is parked until its next probe
                time.sleep(0.2)  # noqa: ASYNC251 (the stall under test)
                await wait_until(lambda: len(blocks_in(running)) >= count)  # noqa: B023
            page.cancel_scope.cancel()
    stalls = [r for r in caplog.records if "event loop stalled" in r.getMessage()]
    assert len(stalls) >= 2  # the log gets every stall...
    # ...the page one notice, in the same words: the rest came within STALL_NOTICE_EVERY.
    [notice] = notices_in(running)
    assert notice.level == "warning" and notice.text == stalls[0].getMessage()


async def test_a_stall_the_tracer_saw_is_not_reported_twice(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    tracer = running.hub.tracer
    assert isinstance(tracer, StepTracer)
    with trio.fail_after(5), tracer.stepping():
        await trio.lowlevel.checkpoint()  # steps are seen from the next one on
        time.sleep(0.3)  # noqa: ASYNC251 (the stall under test)
        await trio.lowlevel.checkpoint()
        await trio.sleep(0.25)  # the ticker probes at least twice more
    [block] = blocks_in(running)
    assert "test_a_stall_the_tracer_saw_is_not_reported_twice" in block.name
    assert block.dur >= 0.3
