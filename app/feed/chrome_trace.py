"""A run's recorded events as Chrome Trace Event Format JSON (Perfetto, chrome://tracing).

Pure: events in, a JSON-ready dict out.  The mapping:

* one thread per lane (task), named by a ``thread_name`` metadata event whose
  args also carry ``parent`` (the parent lane), plus a flow arrow from the
  parent's thread to the child's at spawn time (Perfetto draws the nursery
  tree with those);
* ``step`` events as complete events (``"ph": "X"``), args ``busy_ms`` and
  ``steps``;
* printed lines as thread-scoped instant events named by their text;
* each ``block`` as a global instant event named ``block`` whose args give
  the task and the duration (in ms), on the blocking task's thread;
* each ``stall`` (``trio-echo watch``'s watchdog) likewise, named ``stall``,
  with the time held so far and the innermost frame;
* each ``notice`` (such as records a watched program dropped) as a global
  instant named ``notice`` with its level and text;
* run start and end as instant events on thread 0, named "run".

Timestamps are microseconds since the feed started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from app.feed.events import (
    Block,
    Event,
    Exit,
    Notice,
    Output,
    RunEnd,
    RunStart,
    Spawn,
    Stall,
    Step,
)

PID: Final = 1
RUN_THREAD: Final = 0


def _us(seconds: float) -> float:
    return round(seconds * 1_000_000, 3)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _instant(
    name: str, scope: str, tid: int, ts: float, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An instant event; *scope* is ``t`` (its thread), ``p`` (the process) or ``g`` (global)."""
    event: dict[str, Any] = {"name": name, "ph": "i", "s": scope, "pid": PID, "tid": tid, "ts": ts}
    if args is not None:
        event["args"] = args
    return event


def chrome_trace(events: Iterable[Event], *, title: str = "trio-echo") -> dict[str, Any]:
    """The trace of *events* (oldest first) as a Chrome Trace Event Format object."""
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": RUN_THREAD, "args": {"name": title}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": RUN_THREAD, "args": {"name": "run"}},
    ]
    names: dict[int, str] = {}
    for event in events:
        ts = _us(event.t)
        if isinstance(event, Spawn):
            names[event.task] = event.name
            out.append(
                {
                    "name": "thread_name",
                    "ph": "M",
                    "pid": PID,
                    "tid": event.task,
                    "args": {"name": event.name, "parent": event.parent},
                }
            )
            out.append(
                {
                    "name": "thread_sort_index",
                    "ph": "M",
                    "pid": PID,
                    "tid": event.task,
                    "args": {"sort_index": event.task},
                }
            )
            if event.parent:
                flow = {"name": "spawn", "cat": "nursery", "id": event.task, "pid": PID, "ts": ts}
                out.append({**flow, "ph": "s", "tid": event.parent})
                out.append({**flow, "ph": "f", "bp": "e", "tid": event.task})
        elif isinstance(event, Step):
            out.append(
                {
                    "name": "step",
                    "ph": "X",
                    "pid": PID,
                    "tid": event.task,
                    "ts": ts,
                    "dur": _us(event.dur),
                    "args": {"busy_ms": _ms(event.busy), "steps": event.count},
                }
            )
        elif isinstance(event, Output):
            out.append(_instant(event.text, "t", event.task, ts))
        elif isinstance(event, Block):
            args = {"task": event.name, "duration_ms": _ms(event.dur)}
            out.append(_instant("block", "g", event.task, ts, args))
        elif isinstance(event, Stall):
            top = event.frames[-1] if event.frames else None
            where = f"{top.file}:{top.line} in {top.function}" if top else ""
            args = {"task": event.name, "held_ms": _ms(event.seconds), "where": where}
            out.append(_instant("stall", "g", event.task, ts, args))
        elif isinstance(event, Notice):
            args = {"level": event.level, "text": event.text}
            out.append(_instant("notice", "g", RUN_THREAD, ts, args))
        elif isinstance(event, Exit):
            args = {"steps": event.steps, "busy_ms": _ms(event.busy)}
            out.append(_instant("exit", "t", event.task, ts, args))
        elif isinstance(event, RunStart):
            args = {"scenario": event.scenario, "params": event.params}
            out.append(_instant("run", "p", RUN_THREAD, ts, args))
        elif isinstance(event, RunEnd):
            args = {"state": event.state, "error": event.error, "summary": event.summary}
            out.append(_instant(f"run {event.state}", "p", RUN_THREAD, ts, args))
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": {"lanes": names}}
