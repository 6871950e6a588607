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
* run start and end as instant events on thread 0, named "run".

Timestamps are microseconds since the feed started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from app.events import Block, Event, Exit, Output, RunEnd, RunStart, Spawn, Step

PID: Final = 1
RUN_THREAD: Final = 0


def _us(seconds: float) -> float:
    return round(seconds * 1_000_000, 3)


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
                    "args": {"busy_ms": round(event.busy * 1000, 3), "steps": event.count},
                }
            )
        elif isinstance(event, Output):
            out.append(
                {"name": event.text, "ph": "i", "s": "t", "pid": PID, "tid": event.task, "ts": ts}
            )
        elif isinstance(event, Block):
            out.append(
                {
                    "name": "block",
                    "ph": "i",
                    "s": "g",
                    "pid": PID,
                    "tid": event.task,
                    "ts": ts,
                    "args": {"task": event.name, "duration_ms": round(event.dur * 1000, 3)},
                }
            )
        elif isinstance(event, Exit):
            out.append(
                {
                    "name": "exit",
                    "ph": "i",
                    "s": "t",
                    "pid": PID,
                    "tid": event.task,
                    "ts": ts,
                    "args": {"steps": event.steps, "busy_ms": round(event.busy * 1000, 3)},
                }
            )
        elif isinstance(event, RunStart):
            out.append(
                {
                    "name": "run",
                    "ph": "i",
                    "s": "p",
                    "pid": PID,
                    "tid": RUN_THREAD,
                    "ts": ts,
                    "args": {"scenario": event.scenario, "params": event.params},
                }
            )
        elif isinstance(event, RunEnd):
            out.append(
                {
                    "name": f"run {event.state}",
                    "ph": "i",
                    "s": "p",
                    "pid": PID,
                    "tid": RUN_THREAD,
                    "ts": ts,
                    "args": {"state": event.state, "error": event.error, "summary": event.summary},
                }
            )
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": {"lanes": names}}
