"""Runs scenarios as worker tasks: bounded in number and in time, cancellable, recorded.

::

    Runner.serve                 (in the server's root nursery)
    └── runner nursery
        └── run r3               one task per run, under a CancelScope with a deadline
            └── run nursery      watched by the tracer: every task in it gets a lane
                └── spawn-join   the scenario's own code, and whatever it spawns

Each run's start and end (``done``, ``cancelled``, ``timeout`` or ``error``)
are feed events.  A scenario that raises ends its run with ``error`` and one
log line; it never takes the runner, or the server, with it.  The events of
recent runs are kept (bounded) for the trace download.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from app.errors import describe
from app.feed.events import Event, Output, RunEnd, RunStart, RunState
from app.feed.live import Feed
from app.scenarios import SCENARIOS, Scenario
from app.scenarios.catalog import BadParams, validate_params
from app.tracer import TaskWatcher

log = logging.getLogger(__name__)

# Runs whose events are kept for the trace download; older ones are dropped.
KEEP_RUNS: Final = 8
# Events kept per run; beyond that the recording stops (and says so).
MAX_RECORDED: Final = 50_000
# A printed line longer than this is cut (and marked).
MAX_LINE: Final = 2_000


class RunRefused(ValueError):
    """A run could not be started or cancelled; the message says why, for the client."""


@dataclass(eq=False)
class RunRecord:
    """One run: what was asked, where it stands, and what it emitted."""

    id: str
    scenario: str
    params: dict[str, Any]
    state: RunState = "running"
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    truncated: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cancel_requested: bool = False
    #: Set once the run has ended and its ``run_end`` is published; await it to wait for the end.
    finished: trio.Event = field(default_factory=trio.Event)

    def describe(self) -> dict[str, Any]:
        """The run as ``hello.runs`` and replies list it (the page needs no replay to show it)."""
        return {
            "id": self.id,
            "scenario": self.scenario,
            "params": self.params,
            "state": self.state,
            "error": self.error,
            "summary": self.summary,
        }


class _Context:
    """The :class:`~app.scenarios.base.RunContext` of one run."""

    def __init__(self, record: RunRecord, feed: Feed, watcher: TaskWatcher) -> None:
        self._record = record
        self._feed = feed
        self._watcher = watcher

    @property
    def run_id(self) -> str:
        return self._record.id

    def print(self, *parts: object) -> None:
        text = " ".join(str(p) for p in parts)
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + " [cut]"
        self._feed.publish(
            Output(task=self._watcher.current_lane(), run=self._record.id, text=text)
        )

    def quiet(self, nursery: trio.Nursery) -> None:
        self._watcher.quiet(nursery)

    def summary(self, **values: Any) -> None:
        self._record.summary.update(values)


class Runner:
    """Starts, bounds, cancels and records scenario runs."""

    def __init__(
        self,
        feed: Feed,
        watcher: TaskWatcher,
        *,
        max_runs: int,
        run_timeout: float,
        scenarios: Mapping[str, Scenario] = SCENARIOS,
    ) -> None:
        self._feed = feed
        self._watcher = watcher
        self._max_runs = max_runs
        self._run_timeout = run_timeout
        self._scenarios = scenarios
        self._nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        feed.add_tap(self._record)

    @property
    def scenarios(self) -> Mapping[str, Scenario]:
        """Every scenario this runner can start, by name."""
        return self._scenarios

    @property
    def active(self) -> int:
        """How many runs are running now (at most ``max_runs``)."""
        return sum(1 for r in self._runs.values() if r.state == "running")

    def runs(self) -> list[dict[str, Any]]:
        """Recent runs, oldest first."""
        return [r.describe() for r in self._runs.values()]

    def get(self, run_id: str) -> RunRecord | None:
        """Run *run_id* if it is one of the recent runs still kept, else ``None``."""
        return self._runs.get(run_id)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the runs' nursery until cancelled; cancelling it cancels every run."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, name: str, params: Mapping[str, Any]) -> RunRecord:
        """Validate and start a run now.  Never blocks.

        Raises:
            RunRefused: unknown scenario, bad parameters, or too many runs.
        """
        if self._nursery is None:
            raise RunRefused("the runner is not running")
        scenario = self._scenarios.get(name)
        if scenario is None:
            raise RunRefused(f"no scenario {name!r}; expected one of {', '.join(self._scenarios)}")
        try:
            values = validate_params(scenario.info, params)
        except BadParams as exc:
            raise RunRefused(str(exc)) from None
        if self.active >= self._max_runs:
            raise RunRefused(f"{self._max_runs} runs are already running; cancel one or wait")
        record = RunRecord(id=f"r{next(self._ids)}", scenario=name, params=values)
        self._runs[record.id] = record
        while len(self._runs) > KEEP_RUNS:
            oldest = next(iter(self._runs.values()))
            if oldest.state == "running":
                break
            del self._runs[oldest.id]
        self._nursery.start_soon(self._run, scenario, record, name=f"run {record.id}")
        return record

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a running run (it ends with ``cancelled``).

        Raises:
            RunRefused: no such run, or it has already ended.
        """
        record = self._runs.get(run_id)
        if record is None:
            raise RunRefused(f"no run {run_id!r}")
        if record.state != "running":
            raise RunRefused(f"run {run_id} has already ended ({record.state})")
        record.cancel_requested = True
        record.scope.cancel()
        return record

    async def _run(self, scenario: Scenario, record: RunRecord) -> None:
        feed = self._feed
        feed.publish(RunStart(run=record.id, scenario=record.scenario, params=record.params))
        record.scope.deadline = trio.current_time() + self._run_timeout
        try:
            with record.scope, self._watcher.stepping():
                async with trio.open_nursery() as nursery:
                    self._watcher.watch_nursery(nursery, record.id)
                    context = _Context(record, feed, self._watcher)
                    nursery.start_soon(
                        _call, scenario, context, record.params, name=scenario.info.name
                    )
            if record.scope.cancelled_caught:
                record.state = "cancelled" if record.cancel_requested else "timeout"
            else:
                record.state = "done"
        except Exception as exc:  # the run boundary: one run's failure ends only that run
            record.state = "error"
            record.error = describe(exc)
            log.warning("run %s (%s) failed: %s", record.id, record.scenario, record.error)
        finally:
            feed.publish(
                RunEnd(
                    run=record.id, state=record.state, error=record.error, summary=record.summary
                )
            )
            record.finished.set()

    def _record(self, event: Event) -> None:
        record = self._runs.get(event.run) if event.run else None
        if record is None or record.truncated:
            return
        if len(record.events) >= MAX_RECORDED:
            record.truncated = True
            return
        record.events.append(event)


async def _call(scenario: Scenario, context: _Context, params: dict[str, Any]) -> None:
    await scenario.run(context, **params)
