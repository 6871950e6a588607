"""The tracer: lanes and parents, steps, blocks, a bounded rate, and hooks that never raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio
import trio.testing

from app.feed.events import Block, Event, Exit, Spawn, Step
from app.feed.live import Feed
from app.feed.steps import STEP_BUDGET
from app.tracer import StepHooks, StepTracer, TaskWatcher

from run_harness import Harness, blocks, lanes, steps


def recorded(feed: Feed) -> list[Event]:
    """Every event *feed* publishes from now on, in order (a tap: no ring to lap)."""
    events: list[Event] = []
    feed.add_tap(events.append)
    return events


@contextmanager
def installed(instrument: trio.abc.Instrument) -> Iterator[None]:
    """*instrument* is installed for the block, and removed however it ends."""
    trio.lowlevel.add_instrument(instrument)
    try:
        yield
    finally:
        trio.lowlevel.remove_instrument(instrument)


async def test_steps_are_attributed_to_the_lane_that_ran_them(harness: Harness) -> None:
    record = await harness.run("spawn-join", tasks=2, n=3, sleep=0.01)
    spawned = lanes(record)
    by_lane: dict[int, list[Step]] = {}
    for step in steps(record):
        by_lane.setdefault(step.task, []).append(step)
    # Every watched task ran at least once, and each f task ran once per line at least
    # (three prints separated by sleeps): steps are merged, but not across a 10 ms sleep.
    assert set(by_lane) == set(spawned)
    for lane, spawn in spawned.items():
        if spawn.name.startswith("f("):
            assert sum(s.count for s in by_lane[lane]) >= 3
            assert len(by_lane[lane]) >= 3
            assert all(0 <= s.busy <= s.dur + 1e-6 for s in by_lane[lane])
    exits = {e.task: e for e in record.events if isinstance(e, Exit)}
    assert set(exits) == set(spawned)
    for lane, exit_event in exits.items():
        assert exit_event.steps == sum(s.count for s in by_lane[lane])


async def test_nested_nurseries_keep_the_parent_links(harness: Harness) -> None:
    record = await harness.run("blocking", mode="trio.sleep", count=1, duration=0.01)
    spawned = {s.name: s for s in lanes(record).values()}
    root = spawned["blocking"]
    assert root.parent == 0
    # heartbeat and the workers live in nurseries opened by the root task.
    assert {spawned[n].parent for n in ("heartbeat", "worker-1", "worker-2")} == {root.task}


async def test_block_fires_for_time_sleep_not_for_trio_sleep_or_to_thread(harness: Harness) -> None:
    for mode, expected in (("time.sleep", 2), ("trio.sleep", 0), ("to_thread", 0)):
        record = await harness.run("blocking", mode=mode, count=1, duration=0.2)
        found = blocks(record)
        assert len(found) == expected, mode
        for block in found:
            assert block.name in ("worker-1", "worker-2")
            assert 0.2 <= block.dur < 1.0
            assert lanes(record)[block.task].name == block.name


async def test_block_names_unwatched_tasks_too() -> None:
    feed = Feed()
    published = recorded(feed)
    tracer = StepTracer(feed, block_threshold=0.05)
    with installed(tracer), tracer.stepping():
        await trio.lowlevel.checkpoint()  # steps are seen from the next one on
        time.sleep(0.1)  # noqa: ASYNC251 (the block under test)
        await trio.lowlevel.checkpoint()
    found = [e for e in published if isinstance(e, Block)]
    assert len(found) == 1
    assert found[0].task == 0 and "test_block_names_unwatched_tasks_too" in found[0].name


async def test_hooks_fed_garbage_do_not_raise_and_the_tracer_stays_installed(
    nursery: trio.Nursery,
) -> None:
    feed = Feed()
    published = recorded(feed)
    tracer = StepTracer(feed, block_threshold=0.05)
    with installed(tracer), tracer.stepping():
        bogus = object()
        tracer.task_spawned(bogus)  # type: ignore[arg-type]
        hooks = StepHooks(tracer, block_threshold=0.05)  # what stepping() installed, fed by hand
        hooks.before_task_step(bogus)  # type: ignore[arg-type]
        hooks.after_task_step(bogus)  # type: ignore[arg-type]
        tracer.task_exited(bogus)  # type: ignore[arg-type]
        assert tracer.hook_errors == 1  # task_spawned tripped on it; nothing escaped
        # Still installed and working: a watched nursery's task gets its lane and steps.
        async with trio.open_nursery() as watched:
            tracer.watch_nursery(watched, "r1")
            watched.start_soon(trio.sleep, 0, name="after-garbage")
    events = list(published)
    assert [e.name for e in events if isinstance(e, Spawn)] == ["after-garbage"]
    assert any(isinstance(e, Step) for e in events)
    assert any(isinstance(e, Exit) for e in events)


async def test_step_events_stay_within_the_budget_whatever_the_task_count() -> None:
    feed = Feed()
    tracer = StepTracer(feed, block_threshold=10)
    # Counted as published, not read back from the ring: on a loaded machine the run takes
    # longer, the budget allows more events, and they could lap the ring.
    step_events = 0

    def count(event: Event) -> None:
        nonlocal step_events
        step_events += isinstance(event, Step)

    feed.add_tap(count)

    async def busy() -> None:
        for _ in range(50):
            await trio.lowlevel.checkpoint()
            await trio.sleep(0.003)  # a gap, so each step would want its own event

    start = time.perf_counter()
    with installed(tracer), tracer.stepping():
        async with trio.open_nursery() as nursery:
            tracer.watch_nursery(nursery, "r1")
            for i in range(400):
                nursery.start_soon(busy, name=f"busy {i}")
    elapsed = time.perf_counter() - start
    # 400 tasks x ~100 steps would be ~40,000 events; the budget holds it to
    # STEP_BUDGET a second (plus the initial burst and one flush per exiting task).
    assert 0 < step_events <= STEP_BUDGET * (elapsed + 1) + 400


async def test_watcher_alone_gives_lanes_without_steps() -> None:
    feed = Feed()
    published = recorded(feed)
    watcher = TaskWatcher(feed)
    with installed(watcher):
        async with trio.open_nursery() as nursery:
            watcher.watch_nursery(nursery, "r9")
            nursery.start_soon(trio.sleep, 0.01, name="sleeper")
    events = list(published)
    assert [type(e).__name__ for e in events] == ["Spawn", "Exit"]
    spawn, exit_ = events
    assert isinstance(spawn, Spawn) and (spawn.name, spawn.run) == ("sleeper", "r9")
    assert (exit_.task, exit_.run) == (spawn.task, "r9")


async def test_quiet_nurseries_get_no_lanes() -> None:
    feed = Feed()
    published = recorded(feed)
    watcher = TaskWatcher(feed)
    with installed(watcher):
        async with trio.open_nursery() as outer:
            watcher.watch_nursery(outer, "r1")

            async def parent() -> None:
                async with trio.open_nursery() as inner:
                    watcher.quiet(inner)
                    for _ in range(10):
                        inner.start_soon(trio.sleep, 0)

            outer.start_soon(parent, name="parent")
    spawned = [e.name for e in published if isinstance(e, Spawn)]
    assert spawned == ["parent"]


async def test_step_hooks_are_installed_only_while_someone_needs_them() -> None:
    feed = Feed()
    published = recorded(feed)
    tracer = StepTracer(feed, block_threshold=0.05)

    async def steps_of(name: str) -> int:
        async with trio.open_nursery() as nursery:
            tracer.watch_nursery(nursery, "r1")
            nursery.start_soon(trio.sleep, 0.01, name=name)
        events = list(published)
        lane = next(e.task for e in events if isinstance(e, Spawn) and e.name == name)
        return sum(1 for e in events if isinstance(e, Step) and e.task == lane)

    with installed(tracer):
        assert await steps_of("nobody needs steps") == 0
        with tracer.stepping(), tracer.stepping():  # demand nests
            assert tracer.steps_installed
            assert await steps_of("a run or a watcher") > 0
        assert not tracer.steps_installed
        assert await steps_of("nobody again") == 0
        # Lanes and exits go on either way.
        kinds = {type(e).__name__ for e in published}
        assert {"Spawn", "Exit"} <= kinds
