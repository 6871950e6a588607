"""``serve`` watching its own loop: the stall watchdog and ``/api/tasks`` for this process.

The same parts as inside a watched program (:mod:`trio_echo_agent.probe`,
:mod:`trio_echo_agent.snapshot`), wired to this process's feed:

* a :class:`~trio_echo_agent.probe.LoopClock` instrument (two hooks per
  scheduler batch, none per step) and the watchdog thread: a step over
  ``--stall-threshold`` is logged at once, from the thread (logging is
  thread-safe), with the stuck task's innermost frame,
  and published as a ``stall`` event through ``TrioToken.run_sync_soon``.
  While the loop is stuck nobody can read this server's page anyway, so
  the events arrive when the step returns; the log line is the live part.
* :meth:`OwnLoop.tasks`: the task tree with stacks, taken inside the loop.
  Task ids are the tracer's lanes where a task has one, otherwise fresh ids
  from the feed's counter, kept per task (weakly) so they stay stable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import trio

from app.feed.events import StackFrame, Stall
from app.feed.live import Feed
from app.tracer import TaskWatcher
from trio_echo_agent.probe import LoopClock, Watchdog
from trio_echo_agent.snapshot import take

log = logging.getLogger(__name__)

#: ``run`` of this server's own loop in ``/api/tasks``.
OWN_RUN: Final = "serve"


class OwnLoop:
    """The watchdog and the task snapshot of the loop it is installed in."""

    def __init__(self, feed: Feed, tracer: TaskWatcher, stall_threshold: float) -> None:
        self._feed = feed
        self._tracer = tracer
        self._ids: weakref.WeakKeyDictionary[trio.lowlevel.Task, int] = weakref.WeakKeyDictionary()
        self._nurseries: weakref.WeakKeyDictionary[trio.Nursery, int] = weakref.WeakKeyDictionary()
        self.clock = LoopClock(0)
        self.watchdog = Watchdog(lambda: (self.clock,), stall_threshold, self._on_stall)
        self._token: trio.lowlevel.TrioToken | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Watch the current loop while the block runs.  Must run inside Trio; not a checkpoint."""
        self._token = trio.lowlevel.current_trio_token()
        self.clock.thread = threading.get_ident()
        self.clock.root = trio.lowlevel.current_root_task()
        self.clock.batch_start = time.perf_counter()  # this batch: the one installing it
        trio.lowlevel.add_instrument(self.clock)
        self.watchdog.start()
        try:
            yield
        finally:
            self.watchdog.stop()
            try:
                trio.lowlevel.remove_instrument(self.clock)
            except KeyError:
                pass  # the run it was installed in is over

    def task_id(self, task: trio.lowlevel.Task) -> int:
        """The task's id as the feed uses it; 0 for Trio's own root and plumbing."""
        lane = self._tracer.lane_of(task)
        if lane is not None:
            return lane.id
        nursery = task.parent_nursery
        if task.name.startswith("<") and (
            nursery is None or nursery.parent_task.parent_nursery is None
        ):
            return 0  # <init> and the run_sync_soon task: Trio's, not the server's
        tid = self._ids.get(task)
        if tid is None:
            tid = self._ids[task] = self._feed.new_id()
        return tid

    def nursery_id(self, nursery: trio.Nursery) -> int:
        """The nursery's id, from the feed's counter, stable while it lives."""
        nid = self._nurseries.get(nursery)
        if nid is None:
            nid = self._nurseries[nursery] = self._feed.new_id()
        return nid

    async def tasks(self, lane: int = 0) -> list[dict[str, Any]]:
        """This loop's tasks with stacks (or only *lane*'s), as ``/api/tasks`` runs.

        Always a checkpoint first, so the caller's own step is over; the
        snapshot itself runs without yielding.  Cancellation: safe.
        """
        await trio.lowlevel.checkpoint()
        root = trio.lowlevel.current_root_task()
        assert root is not None  # inside a run there is always one
        entries, _ = take(root, self.task_id, self.nursery_id, only=lane)
        return [{"run": OWN_RUN, "pid": os.getpid(), "tasks": entries}]

    def _on_stall(
        self,
        clock: LoopClock,
        task: trio.lowlevel.Task | None,
        start: float,
        held: float,
        frames: list[dict[str, Any]],
    ) -> None:
        # Runs in the watchdog thread.
        where = frames[-1] if frames else {"file": "?", "line": 0, "function": "?"}
        name = task.name if task is not None else "?"
        log.warning(
            "stall: task %r has held the loop %.1f s, now at %s:%d in %s",
            name,
            held,
            where["file"],
            where["line"],
            where["function"],
        )
        lane = self._tracer.lane_of(task) if task is not None else None
        event = Stall(
            task=lane.id if lane else 0,
            run=lane.run if lane else "",
            name=name,
            seconds=round(held, 3),
            frames=[StackFrame(f["file"], f["line"], f["function"]) for f in frames],
        )
        token = self._token
        if token is None:
            return
        try:
            # Stamped with the time the stack was taken, not when the loop gets to publish it.
            at = self._feed.to_feed_time(start + held)
            token.run_sync_soon(lambda: self._feed.publish(event, at=at))
        except trio.RunFinishedError:
            pass  # the server is gone; the log line said it
