"""The runner: bounded, cancellable, time-limited runs whose failures stay inside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from app.feed.events import RunEnd, RunStart
from app.scenarios import SCENARIOS, Scenario
from app.scenarios.catalog import Param, ScenarioInfo
from app.scenarios.runner import MAX_RECORDED, Runner, RunRefused

from run_harness import Harness


async def test_unknown_scenario_and_bad_params_are_refused(harness: Harness) -> None:
    runner = harness.runner
    with pytest.raises(RunRefused, match="no scenario 'nope'; expected one of generators"):
        runner.start("nope", {})
    with pytest.raises(RunRefused, match=r"tasks: 1000000 is outside 1\.\.100,000"):
        runner.start("many-tasks", {"tasks": 1_000_000})
    with pytest.raises(RunRefused, match="spawn-join has no parameter 'speed'"):
        runner.start("spawn-join", {"speed": 2})
    with pytest.raises(RunRefused, match="sleep: expected a number, got 'fast'"):
        runner.start("spawn-join", {"sleep": "fast"})
    assert runner.runs() == []


async def test_cancel_ends_a_run_as_cancelled(harness: Harness) -> None:
    runner = harness.runner
    record = runner.start("random-sleep", {"count": 1000, "scale": 1.0, "seed": 1})
    await trio.sleep(0.05)
    assert record.state == "running"
    runner.cancel(record.id)
    with trio.fail_after(2):
        await record.finished.wait()
    assert record.state == "cancelled"
    with pytest.raises(RunRefused, match="has already ended"):
        runner.cancel(record.id)
    with pytest.raises(RunRefused, match="no run 'r99'"):
        runner.cancel("r99")


async def test_a_run_past_its_deadline_ends_as_timeout(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    h = Harness(run_timeout=5)
    await nursery.start(h.runner.serve)
    record = await h.run("random-sleep", count=1000, scale=1.0, seed=3)
    assert record.state == "timeout"


async def test_at_most_max_runs_at_once(nursery: trio.Nursery) -> None:
    h = Harness(max_runs=2)
    await nursery.start(h.runner.serve)
    a = h.runner.start("random-sleep", {"count": 100, "seed": 1})
    h.runner.start("random-sleep", {"count": 100, "seed": 2})
    with pytest.raises(RunRefused, match="2 runs are already running"):
        h.runner.start("switch", {})
    h.runner.cancel(a.id)
    await a.finished.wait()
    h.runner.start("switch", {}).scope.cancel()


def failing_scenario(exc: Callable[[], Exception]) -> Scenario:
    async def run(ctx: Any) -> None:
        ctx.print("about to fail")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise exc()

    return Scenario(ScenarioInfo("boom", "Boom", "fails", "the error"), run)


async def test_a_failing_scenario_ends_its_run_with_error_and_the_runner_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness()
    scenarios = {**SCENARIOS, "boom": failing_scenario(lambda: ValueError("bad luck"))}
    h.runner = Runner(h.feed, h.tracer, max_runs=4, run_timeout=10, scenarios=scenarios)
    await nursery.start(h.runner.serve)
    record = await h.run("boom")
    assert record.state == "error"
    assert record.error == "ValueError: bad luck"
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
        "run r1 (boom) failed: ValueError: bad luck"
    ]
    ok = await h.run("switch", rounds=1)
    assert ok.state == "done"


async def test_start_and_end_are_events_with_the_validated_params(harness: Harness) -> None:
    record = await harness.run("spawn-join", n=1)
    start = next(e for e in record.events if isinstance(e, RunStart))
    end = next(e for e in record.events if isinstance(e, RunEnd))
    assert start.params == {"tasks": 3, "n": 1, "sleep": 0.0}
    assert (start.run, end.run, end.state) == (record.id, record.id, "done")


async def test_recordings_are_bounded(nursery: trio.Nursery) -> None:
    chatty = ScenarioInfo(
        "chatty", "Chatty", "prints a lot", "", (Param("lines", "int", 10, "", 1, 10**6),)
    )

    async def run(ctx: Any, lines: int) -> None:
        for i in range(lines):
            ctx.print(i)

    h = Harness()
    h.runner = Runner(
        h.feed, h.tracer, max_runs=1, run_timeout=10, scenarios={"chatty": Scenario(chatty, run)}
    )
    await nursery.start(h.runner.serve)
    record = await h.run("chatty", lines=MAX_RECORDED + 100)
    assert len(record.events) == MAX_RECORDED
    assert record.truncated
