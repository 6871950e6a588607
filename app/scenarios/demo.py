"""``trio-echo demo NAME``: one scenario in the terminal, printed the way the tutorial printed it.

No server: a feed, the tracer and the runner, and a printer on the feed's tap
that prints each line at the moment the scenario prints it (stdout), with
blocks and the run's end as comments on stderr.  ``--trace FILE`` writes the
run's events as a Chrome trace.

Why a tap and not a reader task: a scenario may print far more lines in one
scheduler batch than the feed's ring holds (``spawn-join --tasks 100 --n
1000 --sleep 0`` prints 100,000 without a checkpoint); a reader would be
lapped and lose lines, while the tap sees every one, in order, like the
tutorial's ``print``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import trio

from app.config import BLOCK_THRESHOLD
from app.feed.chrome_trace import chrome_trace
from app.feed.events import Block, Event, Output, RunEnd
from app.feed.live import Feed
from app.scenarios import SCENARIOS
from app.scenarios.catalog import BadParams, validate_params
from app.scenarios.runner import Runner, RunRecord, RunRefused
from app.tracer import StepTracer


async def run_demo(
    name: str,
    params: dict[str, Any],
    *,
    out: TextIO,
    err: TextIO,
    trace_path: Path | None = None,
    block_threshold: float = BLOCK_THRESHOLD,
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
            # Before the run's task first runs, so no line is missed.
            feed.add_tap(_Printer(record, out, err))
            await record.finished.wait()
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(tracer)
    if trace_path is not None:
        trace = chrome_trace(record.events, title=f"trio-echo demo {name}")
        await trio.Path(trace_path).write_text(json.dumps(trace))
        print(f"# trace: {trace_path} ({len(trace['traceEvents'])} events)", file=err)
    return record


class _Printer:
    """A feed tap that prints one run's lines as they are published.

    Printing is synchronous, as ``print`` was in the tutorial: the line is out
    before the task that printed it goes on.  If the reader of stdout goes away
    (``trio-echo demo ... | head``), the run is cancelled instead of failing.
    """

    def __init__(self, record: RunRecord, out: TextIO, err: TextIO) -> None:
        self._record = record
        self._out = out
        self._err = err
        self._reader_gone = False

    def __call__(self, event: Event) -> None:
        record = self._record
        if self._reader_gone or event.run != record.id:
            return
        try:
            self._print(event, record.id)
        except BrokenPipeError:
            self._reader_gone = True
            record.scope.cancel()

    def _print(self, event: Event, run_id: str) -> None:
        if isinstance(event, Output):
            print(event.text, file=self._out, flush=True)
        elif isinstance(event, Block):
            ms = event.dur * 1000
            print(f"# block: {event.name} held the loop for {ms:.0f} ms", file=self._err)
        elif isinstance(event, RunEnd):
            detail = f": {event.error}" if event.error else ""
            summary = "".join(f" {k}={v}" for k, v in event.summary.items())
            print(f"# {run_id} {event.state}{detail}{summary}", file=self._err, flush=True)
