"""The tracer's arithmetic without a loop: steps coalesced into windows, within the budget.

Times are made up (seconds on the caller's clock); every expected number is worked out
in the comments from GAP = 2 ms, WINDOW = 20 ms, FLUSH_EVERY = 50 ms.
"""

from __future__ import annotations

import pytest

from app.feed.events import Step
from app.feed.steps import FLUSH_EVERY, GAP, WINDOW, Lane, StepCoalescer

MS = 0.001


def coalescer(budget: float = 1000) -> tuple[StepCoalescer, list[tuple[Step, float]]]:
    out: list[tuple[Step, float]] = []
    return StepCoalescer(lambda step, began: out.append((step, began)), 0.0, budget=budget), out


def test_steps_close_together_share_one_event_a_gap_starts_another() -> None:
    steps, out = coalescer()
    lane = Lane(7, "r1", "worker")
    steps.add(lane, 1 * MS, 1.5 * MS)
    steps.add(lane, 2 * MS, 2.5 * MS)  # 0.5 ms after: same window
    assert out == []
    steps.add(lane, 2.5 * MS + GAP + 1 * MS, 6 * MS)  # 3 ms idle > GAP: the first window goes
    [(step, began)] = out
    assert began == 1 * MS
    assert (step.task, step.run, step.count) == (7, "r1", 2)
    assert step.dur == pytest.approx(1.5 * MS) and step.busy == pytest.approx(1 * MS)
    assert (lane.steps, lane.count) == (3, 1)  # totals keep counting; one step is open


def test_a_busy_lane_is_cut_into_windows_of_at_most_window() -> None:
    steps, out = coalescer()
    lane = Lane(1, "r1", "spinner")
    # 100 back-to-back steps of 1/1024 s (exact in binary, unlike 1 ms): 20 of them span
    # 19.5 ms, 21 would span 20.5 ms > WINDOW, so windows of 20 steps, the fifth still open.
    tick = 1 / 1024
    for i in range(100):
        steps.add(lane, i * tick, (i + 1) * tick)
    assert len(out) == 4
    assert all(step.count == 20 and step.dur <= WINDOW for step, _ in out)
    steps.close(lane)
    assert len(out) == 5 and lane.count == 0


def test_idle_lanes_are_flushed_at_the_next_tick_after_flush_every() -> None:
    steps, out = coalescer()
    lane = Lane(1, "r1", "sleeper")
    steps.add(lane, 1 * MS, 2 * MS)
    steps.tick(2 * MS)
    assert out == []  # not yet FLUSH_EVERY since the start
    steps.tick(FLUSH_EVERY + 3 * MS)  # another task's step ends 51 ms later: due
    assert [step.count for step, _ in out] == [1]


def test_the_budget_bounds_the_events_and_windows_grow_instead() -> None:
    steps, out = coalescer(budget=3)
    lanes = [Lane(i, "r1", f"t{i}") for i in range(10)]
    for lane in lanes:
        steps.add(lane, 0.0, 0.1 * MS)
    steps.flush_idle(10 * MS)  # ten windows are due, three tokens (the burst) to spend
    assert len(out) == 3
    steps.flush_idle(10 * MS + 1.0)  # a second later: 3 more tokens (burst-capped)
    assert len(out) == 6
    steps.close_all()
    assert len(out) == 6  # no tokens left: the rest stay unsaid, their totals go in exit
    assert sum(lane.steps for lane in lanes) == 10
