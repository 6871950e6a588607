"""The feed: publishing is synchronous and never a checkpoint; readers wake when it moves."""

from __future__ import annotations

import trio
import trio.testing

from app.feed.events import Output
from app.feed.live import REPLAY, Feed


async def test_publish_is_not_a_checkpoint_even_with_readers_parked() -> None:
    feed = Feed()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.wait_new, 0)
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_no_checkpoints():
            event = feed.publish(Output(task=1, text="work1 0"))
    assert event.seq == 1
    assert event.t >= 0


async def test_wait_new_wakes_every_parked_reader() -> None:
    feed = Feed()
    woken: list[int] = []

    async def reader(i: int) -> None:
        await feed.wait_new(0)
        woken.append(i)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(reader, i)
            await trio.testing.wait_all_tasks_blocked()
            assert woken == []
            feed.publish(Output(task=1, text="x"))
    assert sorted(woken) == [0, 1, 2]


async def test_wait_new_is_a_checkpoint_when_there_is_already_news() -> None:
    feed = Feed()
    feed.publish(Output(task=1, text="x"))
    with trio.testing.assert_checkpoints():
        await feed.wait_new(0)


def test_start_cursor_replays_recent_history_or_resumes() -> None:
    feed = Feed(capacity=10 * REPLAY)
    for i in range(REPLAY + 10):
        feed.publish(Output(task=1, text=str(i)))
    assert feed.start_cursor(None) == 10
    assert feed.start_cursor(5) == 5
    assert feed.start_cursor(10**9) == feed.last_seq


def test_time_is_relative_to_the_feed_start() -> None:
    now = [100.0]
    feed = Feed(clock=lambda: now[0])
    now[0] = 101.5
    assert feed.publish(Output(task=1, text="x")).t == 1.5
    assert feed.publish(Output(task=1, text="y"), at=0.25).t == 0.25


def test_gaps_are_counted_as_dropped() -> None:
    feed = Feed(capacity=4)
    for i in range(10):
        feed.publish(Output(task=1, text=str(i)))
    feed.read_encoded(0, 10)
    assert feed.dropped == 6
