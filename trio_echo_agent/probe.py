"""The instrument added to every ``trio.run`` of a watched program, and the stall watchdog.

* :class:`LoopClock` knows when the loop's current batch of steps began
  (two hooks per batch, not per step) and, by sampling the loop thread's
  stack, which task's step holds it.  ``trio-echo serve`` installs one for
  its own watchdog.
* :class:`Probe` (a :class:`LoopClock`) also records, as plain tuples in the
  order of :mod:`trio_echo_agent.wire`, every task spawned and exited (with
  its parent task and nursery) and, while its :class:`StepHooks` are
  installed (someone watches the page, or ``--trace``), every step
  (coalesced per task into windows, at most :data:`STEP_BUDGET` records a
  second for the run) and every step over the block threshold.  Records go
  to *emit*, which never blocks (the exporter's bounded buffer); nothing
  here awaits, and no hook adds a checkpoint to any task.
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
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio

from trio_echo_agent.snapshot import task_frame, thread_frames, walk

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
# A gap between two of the watchdog's polls over this many polls is a silence of the
# thread (it did not run): kept for the lag probe (app/lagstats.py, whose shortest pause
# is three polls, so a silence of two is always recorded).
SILENCE_POLLS: Final = 2

Emit = Callable[[tuple[Any, ...]], None]
now = time.perf_counter


class LoopClock(trio.abc.Instrument):
    """When the loop's current batch of steps began; read by the watchdog thread.

    Trio runs the tasks that are ready in batches, each task at most one step
    per batch, between two waits for I/O.  ``before_io_wait``/``after_io_wait``
    are called once per batch, not once per step, so knowing when the batch
    began costs almost nothing; a batch that lasts past the stall threshold
    is where a stuck step hides, and :meth:`holder` names it by sampling the
    loop thread's stack.  When the step hooks are installed
    (:class:`StepHooks`: the page is open, or ``--trace``), ``current`` says
    exactly which step runs and since when.

    Attributes are replaced whole (one tuple, one float), so that a reader in
    another thread never sees half of an update.
    """

    def __init__(self, run: int) -> None:
        self.run = run
        #: ``(task, start)`` while a step runs and the step hooks are installed, else None.
        self.current: tuple[trio.lowlevel.Task, float] | None = None
        #: When the running batch began; None while the loop waits for I/O.
        self.batch_start: float | None = None
        #: The thread the run's loop runs in, its token and its root task (set by before_run,
        #: or by whoever installs the clock in a running loop).
        self.thread = 0
        self.token: trio.lowlevel.TrioToken | None = None
        self.root: trio.lowlevel.Task | None = None
        self.hook_errors = 0
        # The watchdog's last sample: (batch_start, outermost task frame, its start estimate,
        # when taken, how many samples in a row saw it).
        self.sample: tuple[float, types.FrameType | None, float, float, int] | None = None
        # A stall found by sampling and not yet closed: (batch_start, outermost frame, task,
        # start); the loop (at the batch's end) or the watchdog (seeing another step) closes it.
        self.open_stall: tuple[float, types.FrameType, trio.lowlevel.Task | None, float] | None = (
            None
        )
        self._closing = threading.Lock()

    def before_run(self) -> None:
        self.thread = threading.get_ident()
        self.batch_start = now()
        try:
            self.token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            self.hook_errors += 1  # no token yet: stacks on demand fall back to the watchdog's

    def before_io_wait(self, timeout: float) -> None:
        self.batch_start = None
        if self.open_stall is not None:
            self.close_stall(now())

    def close_stall(self, end: float) -> None:
        """The step of a sampled stall is over by *end*: report it (from either thread, once)."""
        with self._closing:
            stall, self.open_stall = self.open_stall, None
        if stall is not None:
            try:
                self.stall_closed(stall[2], stall[3], end)
            except Exception:
                self.hook_errors += 1

    def stall_closed(self, task: trio.lowlevel.Task | None, start: float, end: float) -> None:
        """A stall found by sampling ended; :class:`Probe` reports it as a ``block``."""

    def after_io_wait(self, timeout: float) -> None:
        self.batch_start = now()

    def after_run(self) -> None:
        self.batch_start = None

    def task_id(self, task: trio.lowlevel.Task) -> int:
        """The id of *task* on the wire (0: not shown)."""
        return 0

    def candidates(self) -> Iterable[trio.lowlevel.Task]:
        """Tasks a sampled frame may belong to (from another thread; may be incomplete)."""
        root = self.root
        if root is None:
            return []
        for _ in range(3):
            try:
                return list(walk(root))
            except RuntimeError:
                continue  # a nursery changed while walked: the loop moved on, try again
        return []

    def holder(self, t: float) -> tuple[trio.lowlevel.Task | None, float] | None:
        """The step holding the loop at time *t*, and when it began (estimated when sampled).

        None while the loop waits for I/O.  Safe from another thread.
        """
        current = self.current
        if current is not None:
            return current
        batch = self.batch_start
        if batch is None:
            return None
        outer = task_frame(sys._current_frames().get(self.thread))
        sample = self.sample
        if sample is not None and sample[0] == batch and outer is not None and sample[1] is outer:
            start = sample[2]
        else:
            start = batch
        return self.task_of(outer), start

    def task_of(self, outer: types.FrameType | None) -> trio.lowlevel.Task | None:
        """The task whose coroutine's outermost frame is *outer* (None if none is known)."""
        if outer is None:
            return None
        for task in self.candidates():
            if getattr(task.coro, "cr_frame", None) is outer:
                return task
        return None


class StepHooks(trio.abc.Instrument):
    """The per-step hooks of a :class:`Probe`, installed only while steps are wanted.

    Trio calls them around every step of every task; even hooks that do
    nothing cost a few microseconds a step, which is most of the overhead a
    scheduler-bound program would see, so they come and go with demand
    (:meth:`Probe.set_steps`).
    """

    def __init__(self, probe: Probe) -> None:
        self._probe = probe

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._probe.current = (task, now())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        try:
            self._probe.end_step(task)
        except Exception:
            self._probe.hook_errors += 1


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


class Probe(LoopClock):
    """Everything one run does, as records for *emit*; see the module docstring."""

    def __init__(self, run: int, emit: Emit, block_threshold: float) -> None:
        super().__init__(run)
        #: The per-step hooks, installed while steps are wanted (:meth:`set_steps`).
        self.step_hooks = StepHooks(self)
        self.steps_on = False
        self._emit = emit
        self._block = block_threshold
        self._ids = itertools.count(1)
        self._lanes: dict[trio.lowlevel.Task, _Lane] = {}
        self._nurseries: weakref.WeakKeyDictionary[trio.Nursery, int] = weakref.WeakKeyDictionary()
        self._open: dict[_Lane, None] = {}
        self._tokens = float(STEP_BUDGET)
        self._last_flush = now()
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

    def candidates(self) -> Iterable[trio.lowlevel.Task]:
        return [task for task, _ in self.tasks()]

    def set_steps(self, on: bool) -> None:
        """Install or remove the step hooks; call inside the loop (``run_sync_soon``)."""
        if on == self.steps_on:
            return
        self.steps_on = on
        try:
            if on:
                trio.lowlevel.add_instrument(self.step_hooks)
            else:
                trio.lowlevel.remove_instrument(self.step_hooks)
                self.current = None
                for lane in list(self._open):
                    self._close_window(lane)
        except (RuntimeError, KeyError):
            self.hook_errors += 1  # the run is ending

    # -- hooks ------------------------------------------------------------------------

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            nursery = task.parent_nursery
            if nursery is None:
                self.root = task  # <init>: Trio's root, not the program's
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
            self.end_step(task)
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

    def stall_closed(self, task: trio.lowlevel.Task | None, start: float, end: float) -> None:
        lane = self._lanes.get(task) if task is not None else None
        name = task.name if task is not None else "?"
        self._emit(("block", self.run, lane.id if lane else 0, name, start, round(end - start, 6)))

    def end_step(self, task: trio.lowlevel.Task) -> None:
        """The step of *task* ended: count it, and report it if it was a block."""
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
        super().after_run()
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
    then.  It only reads: the clocks' state and ``sys._current_frames()``
    (and writes each clock's ``sample``).  It holds one entry per clock and
    stops with the process (a daemon thread).

    Without step hooks a stall is found by sampling: once a batch has run
    longer than :data:`POLL`, every poll notes which task's coroutine is at
    the bottom of the loop thread's stack.  Each task steps at most once per
    batch, so two samples of one batch that see the same task see the same
    step; it began after the last sample that saw another one (or with the
    batch).  The estimate is early by at most one poll.
    """

    def __init__(
        self,
        clocks: Callable[[], Iterable[LoopClock]],
        threshold: float,
        on_stall: Callable[[LoopClock, trio.lowlevel.Task | None, float, float, list[Any]], None],
    ) -> None:
        self._clocks = clocks
        self.threshold = threshold
        self._on_stall = on_stall
        # Per clock: the start of the step last reported, and when it was reported.
        self._reported: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trio-echo watchdog", daemon=True)
        #: Seconds between two polls of the thread.
        self.poll = min(POLL, threshold / 2)
        #: The thread's newest poll (:func:`now`): its heartbeat.
        self.last_beat = 0.0
        #: Its last gap between two polls far over :attr:`poll` (start, end): this thread
        #: did not run either, so the whole process was paused (SIGSTOP, a VM pause), not
        #: just its loop (``serve``'s lag probe asks, app/lagstats.py).
        self.silence = (0.0, 0.0)

    def start(self) -> None:
        """Start watching (idempotent)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns at once (the thread ends within :data:`POLL`)."""
        self._stop.set()

    def _loop(self) -> None:
        poll = self.poll
        self.last_beat = now()
        while not self._stop.wait(poll):
            beat = now()
            if beat - self.last_beat > SILENCE_POLLS * poll:
                self.silence = (self.last_beat, beat)
            self.last_beat = beat
            try:
                self.check(now())
            except Exception:
                pass  # a watchdog that raised would stop watching; the next poll retries

    def check(self, t: float) -> None:
        """Report every step over the threshold at time *t* (the thread's poll; tests call it)."""
        for clock in list(self._clocks()):
            current = clock.current
            frame = None
            sampled_batch = 0.0
            if current is not None:
                task: trio.lowlevel.Task | None = current[0]
                start = current[1]
            else:
                batch = clock.batch_start
                if batch is None or t - batch < POLL:
                    clock.sample = None
                    continue
                frame = sys._current_frames().get(clock.thread)
                outer = task_frame(frame)
                stall = clock.open_stall
                if stall is not None and (stall[0] != batch or stall[1] is not outer):
                    clock.close_stall(t)  # another step holds the loop now: that one ended
                last = clock.sample
                if last is not None and last[0] == batch and outer is not None and last[1] is outer:
                    start, seen = last[2], last[4] + 1
                else:
                    start, seen = (last[3] if last is not None and last[0] == batch else batch), 1
                clock.sample = (batch, outer, start, t, seen)
                sampled_batch = batch
                if seen < 2 or outer is None:
                    continue  # one sample may be a short step passing by
                task = None  # looked up below, only when it is a stall
            held = t - start
            if held < self.threshold:
                continue
            last_report = self._reported.get(id(clock))
            if (
                last_report is not None
                and last_report[0] == start
                and t - last_report[1] < STALL_REPEAT
            ):
                continue
            self._reported[id(clock)] = (start, t)
            if frame is None:
                frame = sys._current_frames().get(clock.thread)
            if current is None:
                outer = task_frame(frame)
                task = clock.task_of(outer)
                if outer is not None and clock.open_stall is None:
                    clock.open_stall = (sampled_batch, outer, task, start)
            self._on_stall(clock, task, start, held, thread_frames(frame))
        if len(self._reported) > 64:  # clocks of runs long gone
            self._reported.clear()
