"""The scheduler made visible: a Trio Instrument that follows watched tasks into the feed.

Watched tasks are the tasks of scenario runs (everything spawned, at any
depth, inside a run's nursery) and the connection tasks of the ``tasks`` echo
engine; not Trio's system tasks, not the server's own plumbing, and not tasks
in a nursery marked quiet (``many-tasks`` spawns thousands there).

* :class:`TaskWatcher` gives each watched task a lane: ``spawn`` (with the
  parent's lane, so the page can draw the nursery tree) and ``exit``.  It is
  always installed: output is attributed through it.
* :class:`StepTracer` adds every scheduler step, while someone needs them (a
  scenario run is active, or a page watches): when it started, how long it
  ran.  The arithmetic of coalescing them into ``step`` events within a
  budget is pure and lives in :class:`app.feed.steps.StepCoalescer`; the
  hooks here only measure and hand over.  A step of any task that holds the
  loop longer than the threshold is a ``block`` event: every other task was
  stalled for that long.

Rules of the hooks: they only append and publish (never await), and each is
wrapped so that it cannot raise, because Trio removes an instrument for good
the first time one of its hooks raises.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from app.feed.events import Block, Exit, Spawn, Step
from app.feed.live import Feed
from app.feed.steps import Lane, StepCoalescer

log = logging.getLogger(__name__)


class TaskWatcher(trio.abc.Instrument):
    """Lanes for watched tasks: ``spawn`` and ``exit`` events, and who printed what."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        # A plain dict, looked up on every step; entries go when their task exits
        # (Trio calls task_exited for every task it spawned).
        self._lanes: dict[trio.lowlevel.Task, Lane] = {}
        self._roots: weakref.WeakKeyDictionary[trio.Nursery, str] = weakref.WeakKeyDictionary()
        self._quiet: weakref.WeakSet[trio.Nursery] = weakref.WeakSet()
        #: Exceptions swallowed inside hooks (each would otherwise remove the instrument).
        self.hook_errors = 0

    # -- what the runner and the engines tell it -------------------------------------------

    def watch_nursery(self, nursery: trio.Nursery, run: str) -> None:
        """Watch every task started in *nursery* from now on (and their children), as *run*."""
        self._roots[nursery] = run

    def quiet(self, nursery: trio.Nursery) -> None:
        """Give no lanes to tasks started in *nursery*."""
        self._quiet.add(nursery)

    def bind(self, task: trio.lowlevel.Task, lane_id: int, run: str) -> None:
        """Watch a task that already runs, under a lane its owner announced (an echo connection)."""
        self._lanes[task] = Lane(lane_id, run, task.name)

    def lane_of(self, task: trio.lowlevel.Task) -> Lane | None:
        """The lane of *task*, or ``None`` if it is not watched (``/api/tasks`` ids, issue 10)."""
        return self._lanes.get(task)

    def current_lane(self) -> int:
        """The calling task's lane id, 0 if it is not watched."""
        lane = self._lanes.get(trio.lowlevel.current_task())
        return lane.id if lane is not None else 0

    # -- Instrument hooks --------------------------------------------------------------------

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            nursery = task.parent_nursery
            if nursery is None or nursery in self._quiet:
                return
            parent = self._lanes.get(nursery.parent_task)
            run = self._roots.get(nursery)
            if run is None:
                if parent is None:
                    return
                run = parent.run
            lane = Lane(self._feed.new_id(), run, task.name)
            self._lanes[task] = lane
            self._feed.publish(
                Spawn(task=lane.id, run=run, name=task.name, parent=parent.id if parent else 0)
            )
        except Exception:
            self._hook_failed("task_spawned")

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        try:
            lane = self._lanes.pop(task, None)
            if lane is not None:
                self._exit(lane)
        except Exception:
            self._hook_failed("task_exited")

    @property
    def steps_installed(self) -> bool:
        """Whether each scheduler step is being traced now (never, for a plain watcher)."""
        return False

    @contextmanager
    def stepping(self) -> Iterator[None]:
        """Ask for step tracing while the block runs; a plain watcher traces none."""
        yield

    def _exit(self, lane: Lane) -> None:
        self._feed.publish(
            Exit(task=lane.id, run=lane.run, steps=lane.steps, busy=round(lane.busy, 6))
        )

    def _hook_failed(self, hook: str) -> None:
        self.hook_errors += 1
        if self.hook_errors == 1:
            log.exception("tracer: %s failed; the tracer stays installed", hook)


class StepTracer(TaskWatcher):
    """:class:`TaskWatcher` plus every scheduler step, coalesced, and the blocking detector.

    The step hooks are a second instrument, installed only while someone needs
    steps (:meth:`stepping`: a scenario run, a feed subscriber).  Trio calls
    ``before_task_step``/``after_task_step`` around every step of every task,
    and even a hook that does nothing costs about a microsecond; with nobody
    to show them to, tracing steps would be pure overhead.  The cost of that
    choice: a block that happens while no run is active and nobody watches is
    not attributed to its task; the ticker's lag probe reports the stall
    instead (:func:`app.ticker.run_ticker`), with one log line.
    """

    def __init__(self, feed: Feed, block_threshold: float) -> None:
        super().__init__(feed)
        self._hooks = StepHooks(self, block_threshold)
        self._demand = 0

    @property
    def steps_installed(self) -> bool:
        return self._demand > 0

    @contextmanager
    def stepping(self) -> Iterator[None]:
        """Trace steps for as long as this block runs (blocks nest; the last one out uninstalls).

        Must run inside Trio.  Not a checkpoint.
        """
        self._demand += 1
        if self._demand == 1:
            trio.lowlevel.add_instrument(self._hooks)
        try:
            yield
        finally:
            self._demand -= 1
            if self._demand == 0:
                self._hooks.coalescer.close_all()
                try:
                    trio.lowlevel.remove_instrument(self._hooks)
                except KeyError:
                    pass  # the run it was installed in is over; nothing left to remove

    def _exit(self, lane: Lane) -> None:
        self._hooks.coalescer.close(lane)
        super()._exit(lane)


class StepHooks(trio.abc.Instrument):
    """The per-step hooks of *tracer*: measure each step, report blocks, hand steps on.

    :class:`StepTracer` installs them only while someone needs steps (see
    there).  The coalescing of steps into events is
    :class:`~app.feed.steps.StepCoalescer`'s; this shell owns the clock.
    """

    def __init__(self, tracer: TaskWatcher, block_threshold: float) -> None:
        self._tracer = tracer
        self._feed = tracer._feed
        self._lanes = tracer._lanes  # the same dict: lanes come and go with their tasks
        self._threshold = block_threshold
        self._now = time.perf_counter
        self._step_start = 0.0
        self._step_task: trio.lowlevel.Task | None = None
        feed = self._feed

        def emit(step: Step, began: float) -> None:
            feed.publish(step, at=feed.to_feed_time(began))

        self.coalescer = StepCoalescer(emit, self._now())

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_task = task
        self._step_start = self._now()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        try:
            if task is not self._step_task:
                return  # the step began before this instrument was installed
            self._step_task = None
            end = self._now()
            start = self._step_start
            lane = self._lanes.get(task)
            if end - start > self._threshold:
                self._block(task, lane, start, end - start)
            if lane is not None:
                self.coalescer.add(lane, start, end)
            self.coalescer.tick(end)
        except Exception:
            self._tracer._hook_failed("after_task_step")

    def _block(
        self, task: trio.lowlevel.Task, lane: Lane | None, start: float, held: float
    ) -> None:
        self._feed.publish(
            Block(
                task=lane.id if lane else 0,
                run=lane.run if lane else "",
                name=task.name,
                dur=round(held, 6),
            ),
            at=self._feed.to_feed_time(start),
        )
