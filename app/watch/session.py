"""One watched process's messages turned into feed events: pure, no I/O.

The agent numbers runs and tasks per process (:mod:`trio_echo_agent.wire`);
the feed numbers lanes for the whole ``watch`` session.  A :class:`Session`
holds the mapping for one agent connection:

* each ``trio.run`` becomes a feed run ``w<N>`` (a ``run_start`` with
  ``scenario: "watch"`` and the process's pid and argv, then ``run_end``);
* each task gets a lane from the feed's counter; its ``parent`` and
  ``nursery`` are translated too, so the page draws Trio's tree;
* times are the child's ``perf_counter`` readings (the same monotonic clock
  in every process), converted to feed time.

Bounded: a run's mappings go when its ``run_end`` arrives; a process that
never ends its runs is bounded by the agent's own records (each task's
lane goes with its ``exit``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Final

from app.feed import events as ev
from trio_echo_agent import wire

#: Scenario name of every run of a watched program (``run_start.scenario``).
WATCH_SCENARIO: Final = "watch"
# Exited tasks whose lanes a snapshot can still name (the agent lists its last 100).
EXITED_KEPT: Final = 1_000


class Session:
    """The mapping for one agent connection; :meth:`handle` publishes through *publish*."""

    def __init__(
        self,
        publish: Callable[..., Any],
        new_id: Callable[[], int],
        to_feed_time: Callable[[float], float],
        new_run: Callable[[], str],
    ) -> None:
        self._publish = publish
        self._new_id = new_id
        self._time = to_feed_time
        self._new_run = new_run
        self.pid = 0
        self.argv: list[str] = []
        #: agent run -> feed run id, for live runs.
        self.runs: dict[int, str] = {}
        self._lanes: dict[tuple[int, int], int] = {}
        self._nurseries: dict[tuple[int, int], int] = {}
        # Lanes of tasks that exited lately, so that a snapshot can still name them.
        self._exited: collections.OrderedDict[tuple[int, int], int] = collections.OrderedDict()
        #: Records the agent dropped (its buffer was full), in total.
        self.dropped = 0
        #: Runs seen in total (a process that never calls trio.run has none).
        self.runs_seen = 0

    def lane(self, run: int, task: int) -> int:
        """The lane of the agent's *task* in *run* (0 for 0 or unknown)."""
        return self._lanes.get((run, task), 0) if task else 0

    def _nursery(self, run: int, nursery: int) -> int:
        key = (run, nursery)
        nid = self._nurseries.get(key)
        if nid is None:
            nid = self._nurseries[key] = self._new_id()
        return nid

    def handle(self, msg: wire.FromAgent) -> None:
        """Publish what *msg* means for the feed (never blocks)."""
        if isinstance(msg, wire.Step):
            lane = self.lane(msg.run, msg.task)
            if lane:
                self._publish(
                    ev.Step(
                        task=lane,
                        run=self.runs[msg.run],
                        dur=msg.dur,
                        busy=msg.busy,
                        count=msg.count,
                    ),
                    at=self._time(msg.t),
                )
        elif isinstance(msg, wire.Output):
            run = self.runs.get(msg.run, "")
            self._publish(
                ev.Output(
                    task=self.lane(msg.run, msg.task), run=run, text=msg.text, stream=msg.stream
                ),
                at=self._time(msg.t),
            )
        elif isinstance(msg, wire.Spawn):
            spawn_run = self.runs.get(msg.run)
            if spawn_run is None:
                return  # a run we never saw start (a record dropped): nothing to hang it on
            lane = self._lanes[(msg.run, msg.task)] = self._new_id()
            self._publish(
                ev.Spawn(
                    task=lane,
                    run=spawn_run,
                    name=msg.name,
                    parent=self.lane(msg.run, msg.parent),
                    nursery=self._nursery(msg.run, msg.nursery),
                ),
                at=self._time(msg.t),
            )
        elif isinstance(msg, wire.Exit):
            lane = self._lanes.pop((msg.run, msg.task), 0)
            if lane:
                self._exited[(msg.run, msg.task)] = lane
                if len(self._exited) > EXITED_KEPT:
                    self._exited.popitem(last=False)
                self._publish(
                    ev.Exit(task=lane, run=self.runs[msg.run], steps=msg.steps, busy=msg.busy),
                    at=self._time(msg.t),
                )
        elif isinstance(msg, wire.Block):
            self._publish(
                ev.Block(
                    task=self.lane(msg.run, msg.task),
                    run=self.runs.get(msg.run, ""),
                    name=msg.name,
                    dur=msg.dur,
                ),
                at=self._time(msg.t),
            )
        elif isinstance(msg, wire.Stall):
            self._publish(
                ev.Stall(
                    task=self.lane(msg.run, msg.task),
                    run=self.runs.get(msg.run, ""),
                    name=msg.name,
                    seconds=msg.seconds,
                    frames=[ev.StackFrame(f.file, f.line, f.function) for f in msg.frames],
                ),
                at=self._time(msg.t + msg.seconds),  # when the stack was taken
            )
        elif isinstance(msg, wire.RunStart):
            run = self._new_run()
            self.runs[msg.run] = run
            self.runs_seen += 1
            self._publish(
                ev.RunStart(
                    run=run,
                    scenario=WATCH_SCENARIO,
                    params={"pid": self.pid, "argv": self.argv},
                ),
                at=self._time(msg.t),
            )
        elif isinstance(msg, wire.RunEnd):
            self._end_run(msg.run, "error" if msg.error else "done", msg.error, self._time(msg.t))
        elif isinstance(msg, wire.Hello):
            self.pid = msg.pid
            self.argv = msg.argv
        elif isinstance(msg, wire.Dropped):
            self.dropped += msg.count
            self._publish(
                ev.Notice(
                    level="warning",
                    text=f"watch: pid {self.pid} dropped {msg.count} records "
                    f"(the link fell behind; {self.dropped} in all)",
                )
            )

    def _end_run(self, run: int, state: ev.RunState, error: str, at: float | None) -> None:
        feed_run = self.runs.pop(run, None)
        if feed_run is None:
            return
        for key in [k for k in self._lanes if k[0] == run]:
            del self._lanes[key]
        for key in [k for k in self._nurseries if k[0] == run]:
            del self._nurseries[key]
        self._publish(ev.RunEnd(run=feed_run, state=state, error=error), at=at)

    def close(self) -> None:
        """The process is gone: end the runs it never ended (killed, ``os._exit``)."""
        for run in list(self.runs):
            self._end_run(run, "error", "the process ended inside trio.run", None)

    def translate(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A ``tasks`` reply with the agent's ids replaced by feed ids (lanes, runs, nurseries)."""
        out = []
        for entry in runs:
            run = int(entry.get("run", 0))
            feed_run = self.runs.get(run)
            if feed_run is None:
                continue
            tasks = []
            for task in entry.get("tasks", []):
                key = (run, int(task.get("id", 0)))
                lane = self._lanes.get(key) or self._exited.get(key, 0)
                if not lane:
                    continue  # spawned after the reply was built, or its spawn was dropped
                tasks.append(
                    {
                        **task,
                        "id": lane,
                        "parent": self.lane(run, int(task.get("parent", 0))),
                        "nursery": self._nurseries.get((run, int(task.get("nursery", 0))), 0),
                    }
                )
            out.append({"run": feed_run, "pid": self.pid, "tasks": tasks})
        return out

    def find(self, lane: int) -> tuple[int, int] | None:
        """``(run, task)`` of *lane* in this process, or None."""
        for key, value in self._lanes.items():
            if value == lane:
                return key
        return None
