"""Scheduler steps coalesced into ``step`` events, within a budget: the tracer's arithmetic.

Rules of this module:

* Pure, sans-IO: no trio, no clock.  The tracer (:mod:`app.tracer`, the Trio
  Instrument) measures each step of a watched task and hands it here as
  ``(lane, start, end)``; what comes out goes to the *emit* callback as a
  :class:`~app.feed.events.Step` and the time it began.  A test drives it
  with made-up times, without a loop (like :class:`~app.feed.ring.Ring`).
* One ``step`` event covers consecutive steps of one lane: a new one begins
  after a :data:`GAP` of idleness or once the window would cover more than
  :data:`WINDOW`.
* The whole process emits at most :data:`STEP_BUDGET` step events a second
  (a :class:`~app.feed.bucket.TokenBucket`); over budget a window just keeps
  growing until tokens come back.  So the feed rate is bounded whatever the
  task count: a busier scheduler gets coarser bars, not a faster feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from app.feed.bucket import TokenBucket
from app.feed.events import Step

# A task's steps closer together than this share one step event...
GAP: Final = 0.002
# ...until the event would cover more than this much time.
WINDOW: Final = 0.02
# Step events per second, for the whole process (also the burst).
STEP_BUDGET: Final = 5_000
# How often open windows of idle lanes are flushed (checked as steps end).
FLUSH_EVERY: Final = 0.05

#: Where finished windows go: the event, and the time (the caller's clock) it began.
Emit = Callable[[Step, float], object]


class Lane:
    """A watched task's lane: its totals, and its step window not yet emitted."""

    __slots__ = ("busy", "count", "id", "name", "run", "steps", "win_busy", "win_end", "win_start")

    def __init__(self, lane_id: int, run: str, name: str) -> None:
        self.id = lane_id
        self.run = run
        self.name = name
        #: Steps and seconds running, in total.
        self.steps = 0
        self.busy = 0.0
        #: Steps in the open window (0: none open), its span and its running time.
        self.count = 0
        self.win_start = 0.0
        self.win_end = 0.0
        self.win_busy = 0.0


class StepCoalescer:
    """Steps in, ``step`` events out (to *emit*), at most *budget* a second.

    *now* is the caller's clock at creation; every time given later is on the
    same clock.
    """

    def __init__(self, emit: Emit, now: float, *, budget: float = STEP_BUDGET) -> None:
        self._emit = emit
        self._tokens = TokenBucket(budget, budget)
        self._tokens.refill(now)
        self._last_flush = now
        # Lanes with a window not yet emitted, least recently stepped first (a dict
        # keeps insertion order; a lane is moved to the end at each step), so a flush
        # only visits lanes whose window is due.
        self._open: dict[Lane, None] = {}

    def add(self, lane: Lane, start: float, end: float) -> None:
        """One step of *lane* ran from *start* to *end*; windows that are due are emitted."""
        lane.steps += 1
        lane.busy += end - start
        if lane.count and (start - lane.win_end > GAP or end - lane.win_start > WINDOW):
            self._emit_window(lane)
        if not lane.count:
            lane.win_start = start
            lane.win_busy = 0.0
        self._open.pop(lane, None)
        self._open[lane] = None
        lane.count += 1
        lane.win_end = end
        lane.win_busy += end - start

    def tick(self, now: float) -> None:
        """A step (of any task) ended at *now*: flush idle windows if :data:`FLUSH_EVERY` passed."""
        if now - self._last_flush > FLUSH_EVERY:
            self.flush_idle(now)

    def flush_idle(self, now: float) -> None:
        """Earn the tokens since the last flush; emit the windows of lanes idle for a GAP."""
        self._tokens.refill(now)
        self._last_flush = now
        while self._open:
            lane = next(iter(self._open))
            if now - lane.win_end <= GAP:
                return  # every later lane stepped more recently still
            if not self._emit_window(lane):
                return

    def close(self, lane: Lane) -> None:
        """Emit *lane*'s open window now (its task is exiting), budget permitting."""
        if lane.count:
            self._emit_window(lane)
            lane.count = 0
            self._open.pop(lane, None)

    def close_all(self) -> None:
        """Emit every open window (budget permitting): step tracing is about to stop."""
        for lane in list(self._open):
            self.close(lane)

    def _emit_window(self, lane: Lane) -> bool:
        if not self._tokens.spend():
            return False  # over budget: the window keeps growing until tokens come back
        self._emit(
            Step(
                task=lane.id,
                run=lane.run,
                dur=round(lane.win_end - lane.win_start, 6),
                busy=round(lane.win_busy, 6),
                count=lane.count,
            ),
            lane.win_start,
        )
        lane.count = 0
        self._open.pop(lane, None)
        return True
