"""The instrument added to every ``trio.run`` of a watched program, and the stall watchdog.

* :class:`StepClock` only knows which task's step holds the loop now and
  since when.  ``trio-echo serve`` installs one for its own watchdog.
* :class:`Probe` (a :class:`StepClock`) also records, as plain tuples in the
  order of :mod:`trio_echo_agent.wire`, every task spawned and exited (with
  its parent task and nursery), every step (coalesced per task into windows,
  at most :data:`STEP_BUDGET` records a second for the run), and every step
  over the block threshold.  Records go to *emit*, which never blocks (the
  exporter's bounded buffer); nothing here awaits, and no hook adds a
  checkpoint to any task.
* :class:`Watchdog` is a thread that looks at every clock every
  :data:`POLL` seconds and reports a step that has held the loop longer
  than the stall threshold, with the loop thread's stack, then again every
  :data:`STALL_REPEAT` seconds until the step returns.

Every hook is wrapped so that it cannot raise: Trio removes an instrument
for good the first time one of its hooks raises, and a watched program must
never fail because it is watched.

Imports only the standard library and trio: it runs inside watched programs.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio

from trio_echo_agent.snapshot import thread_frames

# A task's steps closer together than this share one step record...
GAP: Final = 0.002
# ...until the record would cover more than this much time.
WINDOW: Final = 0.02
# Step records per second for one run; a busier scheduler gets coarser windows.
STEP_BUDGET: Final = 5_000
# How often open windows of idle tasks are flushed (checked at step ends).
FLUSH_EVERY: Final = 0.05
# Exited tasks a snapshot still lists (the page keeps its own, from the events).
EXITED_KEPT: Final = 100
# How often the watchdog looks (seconds): a stall is named within threshold + this.
POLL: Final = 0.1
# A stall still going is reported again this often (seconds), with a fresh stack.
STALL_REPEAT: Final = 1.0

Emit = Callable[[tuple[Any, ...]], None]
now = time.perf_counter


class StepClock(trio.abc.Instrument):
    """Which task's step holds the loop, and since when; read by the watchdog thread.

    ``current`` is one tuple, replaced whole at each step boundary, so that a
    reader in another thread never sees the task of one step with the start
    of another.
    """

    def __init__(self, run: int) -> None:
        self.run = run
        #: ``(task, start)`` while a step runs, else None.
        self.current: tuple[trio.lowlevel.Task, float] | None = None
        #: The thread the run's loop runs in (set by before_run).
        self.thread = 0
        #: The run's token, for running a callback inside the loop (set by before_run).
        self.token: trio.lowlevel.TrioToken | None = None
        self.hook_errors = 0

    def before_run(self) -> None:
        self.thread = threading.get_ident()
        try:
            self.token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            self.hook_errors += 1  # no token yet: stacks on demand fall back to the watchdog's

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.current = (task, now())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.current = None

    def task_id(self, task: trio.lowlevel.Task) -> int:
        """The id of *task* on the wire (0: not shown)."""
        return 0

    def task_name(self, task: trio.lowlevel.Task) -> str:
        """The name of *task* (Trio's)."""
        return task.name


class _Lane:
    __slots__ = (
        "busy",
        "count",
        "id",
        "name",
        "nursery",
        "parent",
        "steps",
        "win_busy",
        "win_end",
        "win_start",
    )

    def __init__(self, task_id: int, name: str, parent: int, nursery: int) -> None:
        self.id = task_id
        self.name = name
        self.parent = parent
        self.nursery = nursery
        self.steps = 0
        self.busy = 0.0
        self.count = 0
        self.win_start = 0.0
        self.win_end = 0.0
        self.win_busy = 0.0


class Probe(StepClock):
    """Everything one run does, as records for *emit*; see the module docstring."""

    def __init__(self, run: int, emit: Emit, block_threshold: float) -> None:
        super().__init__(run)
        self._emit = emit
        self._block = block_threshold
        self._ids = itertools.count(1)
        self._lanes: dict[trio.lowlevel.Task, _Lane] = {}
        self._nurseries: weakref.WeakKeyDictionary[trio.Nursery, int] = weakref.WeakKeyDictionary()
        self._open: dict[_Lane, None] = {}
        self._tokens = float(STEP_BUDGET)
        self._last_flush = now()
        self._root: trio.lowlevel.Task | None = None
        #: The last tasks that exited, as snapshot entries (state ``exited``).
        self.exited: collections.deque[dict[str, Any]] = collections.deque(maxlen=EXITED_KEPT)

    # -- ids, for snapshots --------------------------------------------------------------

    def task_id(self, task: trio.lowlevel.Task) -> int:
        lane = self._lanes.get(task)
        return lane.id if lane is not None else 0

    def nursery_id(self, nursery: trio.Nursery) -> int:
        """The id of *nursery* on the wire, given on first sight."""
        nid = self._nurseries.get(nursery)
        if nid is None:
            nid = self._nurseries[nursery] = next(self._ids)
        return nid

    def tasks(self) -> Iterable[tuple[trio.lowlevel.Task, int]]:
        """Every shown task and its id (a copy: safe from another thread)."""
        for _ in range(3):
            try:
                return [(task, lane.id) for task, lane in list(self._lanes.items())]
            except RuntimeError:
                continue  # changed size while copied: the loop is running, try again
        return []

    @property
    def root(self) -> trio.lowlevel.Task | None:
        """The run's root task (Trio's ``<init>``), once known."""
        return self._root

    # -- hooks ------------------------------------------------------------------------

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            nursery = task.parent_nursery
            if nursery is None:
                self._root = task  # <init>: Trio's root, not the program's
                return
            parent = nursery.parent_task
            plane = self._lanes.get(parent)
            if plane is None and task.name.startswith("<"):
                return  # Trio's own plumbing (the run_sync_soon task)
            lane = _Lane(
                next(self._ids), task.name, plane.id if plane else 0, self.nursery_id(nursery)
            )
            self._lanes[task] = lane
            self._emit(("spawn", self.run, lane.id, lane.name, lane.parent, lane.nursery, now()))
        except Exception:
            self.hook_errors += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        try:
            # Trio reports the exit inside the task's last step, before after_task_step:
            # account for that step now, while the task still has its lane.
            self._end_step(task)
            lane = self._lanes.pop(task, None)
            if lane is None:
                return
            self._close_window(lane)
            self.exited.append(
                {
                    "id": lane.id,
                    "name": lane.name,
                    "parent": lane.parent,
                    "nursery": lane.nursery,
                    "state": "exited",
                    "where": [],
                    "scopes": [],
                }
            )
            self._emit(("exit", self.run, lane.id, now(), lane.steps, round(lane.busy, 6)))
        except Exception:
            self.hook_errors += 1

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        try:
            self._end_step(task)
        except Exception:
            self.hook_errors += 1

    def _end_step(self, task: trio.lowlevel.Task) -> None:
        current = self.current
        self.current = None
        if current is None or current[0] is not task:
            return  # the step began before this instrument was installed, or is counted
        start = current[1]
        end = now()
        lane = self._lanes.get(task)
        if end - start > self._block:
            self._emit(
                (
                    "block",
                    self.run,
                    lane.id if lane else 0,
                    task.name,
                    start,
                    round(end - start, 6),
                )
            )
        if lane is not None:
            self._add_step(lane, start, end)
        if end - self._last_flush > FLUSH_EVERY:
            self._flush_idle(end)

    def after_run(self) -> None:
        try:
            for lane in list(self._open):
                self._close_window(lane)
        except Exception:
            self.hook_errors += 1

    # -- coalescing (the same rules as trio-echo's own tracer, app/tracer.py) -------------

    def _add_step(self, lane: _Lane, start: float, end: float) -> None:
        lane.steps += 1
        lane.busy += end - start
        if lane.count and (start - lane.win_end > GAP or end - lane.win_start > WINDOW):
            self._publish_window(lane)
        if not lane.count:
            lane.win_start = start
            lane.win_busy = 0.0
        self._open.pop(lane, None)
        self._open[lane] = None
        lane.count += 1
        lane.win_end = end
        lane.win_busy += end - start

    def _publish_window(self, lane: _Lane) -> bool:
        if self._tokens < 1:
            return False  # over budget: the window grows until tokens come back
        self._tokens -= 1
        self._emit(
            (
                "step",
                self.run,
                lane.id,
                lane.win_start,
                round(lane.win_end - lane.win_start, 6),
                round(lane.win_busy, 6),
                lane.count,
            )
        )
        lane.count = 0
        self._open.pop(lane, None)
        return True

    def _flush_idle(self, t: float) -> None:
        self._tokens = min(float(STEP_BUDGET), self._tokens + (t - self._last_flush) * STEP_BUDGET)
        self._last_flush = t
        while self._open:
            lane = next(iter(self._open))
            if t - lane.win_end <= GAP or not self._publish_window(lane):
                return

    def _close_window(self, lane: _Lane) -> None:
        if lane.count:
            self._publish_window(lane)
            lane.count = 0
            self._open.pop(lane, None)


class Watchdog:
    """A thread that names the step holding a loop too long; see the module docstring.

    Why a thread, the one place in trio-echo where a bare thread is right: it
    must see the loop while the loop is stuck (``time.sleep`` in a task, a
    ``while True`` without a checkpoint), and nothing inside the loop runs
    then.  It only reads: the clocks' ``current`` tuples and
    ``sys._current_frames()``.  It holds one entry per clock and stops with
    the process (a daemon thread).
    """

    def __init__(
        self,
        clocks: Callable[[], Iterable[StepClock]],
        threshold: float,
        on_stall: Callable[[StepClock, trio.lowlevel.Task, float, float, list[Any]], None],
    ) -> None:
        self._clocks = clocks
        self.threshold = threshold
        self._on_stall = on_stall
        # Per clock: the start of the step last reported, and when it was reported.
        self._reported: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trio-echo watchdog", daemon=True)

    def start(self) -> None:
        """Start watching (idempotent)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns at once (the thread ends within :data:`POLL`)."""
        self._stop.set()

    def _loop(self) -> None:
        poll = min(POLL, self.threshold / 2)
        while not self._stop.wait(poll):
            try:
                self.check(now())
            except Exception:
                pass  # a watchdog that raised would stop watching; the next poll retries

    def check(self, t: float) -> None:
        """Report every step over the threshold at time *t* (the thread's poll; tests call it)."""
        for clock in list(self._clocks()):
            current = clock.current
            if current is None:
                continue
            task, start = current
            held = t - start
            if held < self.threshold:
                continue
            last = self._reported.get(id(clock))
            if last is not None and last[0] == start and t - last[1] < STALL_REPEAT:
                continue
            self._reported[id(clock)] = (start, t)
            frame = sys._current_frames().get(clock.thread)
            self._on_stall(clock, task, start, held, thread_frames(frame))
        if len(self._reported) > 64:  # clocks of runs long gone
            self._reported.clear()
