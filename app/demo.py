"""``trio-echo demo NAME``: one scenario in the terminal, printed the way the tutorial printed it.

No server: a feed, the tracer and the runner, and a printer task that reads
the feed and prints each line as the scenario printed it (stdout), with
blocks and the run's end as comments on stderr.  ``--trace FILE`` writes the
run's events as a Chrome trace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import trio

from app.events import Block, Output, RunEnd
from app.feed import Feed
from app.scenarios import SCENARIOS
from app.scenarios.catalog import BadParams, validate_params
from app.scenarios.runner import Runner, RunRecord, RunRefused
from app.trace_export import chrome_trace
from app.tracer import StepTracer


async def run_demo(
    name: str,
    params: dict[str, Any],
    *,
    out: TextIO,
    err: TextIO,
    trace_path: Path | None = None,
    block_threshold: float = 0.05,
    run_timeout: float = 600.0,
) -> RunRecord:
    """Run scenario *name* once and print it; returns the finished run.

    Raises:
        RunRefused: unknown scenario or bad parameters (before anything runs).
    """
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise RunRefused(f"no scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    try:
        validate_params(scenario.info, params)
    except BadParams as exc:
        raise RunRefused(str(exc)) from None
    feed = Feed()
    tracer = StepTracer(feed, block_threshold)
    runner = Runner(feed, tracer, max_runs=1, run_timeout=run_timeout)
    trio.lowlevel.add_instrument(tracer)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.serve)
            record = runner.start(name, params)
            await _print_run(feed, record.id, out, err)
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(tracer)
    if trace_path is not None:
        trace = chrome_trace(record.events, title=f"trio-echo demo {name}")
        await trio.Path(trace_path).write_text(json.dumps(trace))
        print(f"# trace: {trace_path} ({len(trace['traceEvents'])} events)", file=err)
    return record


async def _print_run(feed: Feed, run_id: str, out: TextIO, err: TextIO) -> None:
    """Print the run's lines in feed order until it ends."""
    cursor = 0
    while True:
        await feed.wait_new(cursor)
        events = feed.ring.read(cursor, 10_000)
        assert isinstance(events, list), "a demo feed never laps its only reader"
        for event in events:
            cursor = event.seq
            if event.run != run_id:
                continue
            if isinstance(event, Output):
                print(event.text, file=out, flush=True)
            elif isinstance(event, Block):
                print(
                    f"# block: {event.name} held the loop for {event.dur * 1000:.0f} ms", file=err
                )
            elif isinstance(event, RunEnd):
                detail = f": {event.error}" if event.error else ""
                summary = "".join(f" {k}={v}" for k, v in event.summary.items())
                print(f"# {run_id} {event.state}{detail}{summary}", file=err, flush=True)
                return
