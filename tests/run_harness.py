"""Run scenarios the way the server does (feed, tracer, runner) and collect what they emit."""

from __future__ import annotations

from typing import Any

from app.config import BLOCK_THRESHOLD
from app.feed.events import Block, Event, Output, Spawn, Step
from app.feed.live import Feed
from app.scenarios.runner import Runner, RunRecord
from app.tracer import StepTracer


class Harness:
    """A feed, a step tracer (installed) and a runner, as in one server."""

    def __init__(self, *, max_runs: int = 4, run_timeout: float = 60.0) -> None:
        self.feed = Feed()
        self.recorded: list[Event] = []
        self.feed.add_tap(self.recorded.append)
        self.tracer = StepTracer(self.feed, BLOCK_THRESHOLD)
        self.runner = Runner(self.feed, self.tracer, max_runs=max_runs, run_timeout=run_timeout)

    async def run(self, name: str, **params: Any) -> RunRecord:
        """Run one scenario to its end (the runner must be serving)."""
        record = self.runner.start(name, params)
        await record.finished.wait()
        return record

    def events(self) -> list[Event]:
        """Every event published so far, in order."""
        return list(self.recorded)


def lines(record: RunRecord) -> list[str]:
    return [e.text for e in record.events if isinstance(e, Output)]


def lanes(record: RunRecord) -> dict[int, Spawn]:
    return {e.task: e for e in record.events if isinstance(e, Spawn)}


def lines_by_task_name(record: RunRecord) -> list[tuple[str, str]]:
    """(task name, text) for every printed line, in feed order."""
    names = {lane: spawn.name for lane, spawn in lanes(record).items()}
    return [(names.get(e.task, "?"), e.text) for e in record.events if isinstance(e, Output)]


def blocks(record: RunRecord) -> list[Block]:
    return [e for e in record.events if isinstance(e, Block)]


def steps(record: RunRecord) -> list[Step]:
    return [e for e in record.events if isinstance(e, Step)]
