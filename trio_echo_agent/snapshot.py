"""Where every task of a Trio run is suspended: what ``/api/tasks``, ``ps`` and ``pstree`` show.

Two ways to take it:

* :func:`take`, inside the loop (from a task, or a ``TrioToken.run_sync_soon``
  callback): walks the task tree from the root task, reads each task's
  await chain from its coroutines, and for one task asked by id extracts
  the chain with the nurseries and cancel scopes it sits in with
  stackscope.  Nothing runs meanwhile, so the picture is consistent.
* :func:`thread_frames` and :func:`coroutine_frames`, from another thread
  while the loop is stuck in one step: the stuck task's frames come from
  ``sys._current_frames()`` (the loop thread's real stack), the suspended
  ones from their coroutine objects, which the stuck step does not touch.
  Stackscope is not used there: its first use installs its Trio glue, which
  calls ``trio.run`` when no run is current in the calling thread.

A task entry is a dict (it goes to JSON as is): ``id``, ``name``, ``parent``
(0: the run's root), ``nursery``, ``state`` (``running``: scheduled to run
next; ``waiting``: suspended at an await; ``stalled``: its step holds the
loop now; ``exited``), ``where`` (``[{file, line, function}]``, innermost
last) and ``scopes`` (outermost first).

Imports only the standard library, trio and stackscope: it runs inside
watched programs.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable, Iterator
from typing import Any, Final

import trio

#: Frames kept per stack (the innermost ones; deeper recursion is cut from the outside).
MAX_FRAMES: Final = 64
#: Frames per task in the list (the innermost; one task asked by id gets MAX_FRAMES).
LIST_FRAMES: Final = 16
#: Frames walked down a thread's stack to find the scheduler (Python's default recursion limit).
MAX_DEPTH: Final = 1_000
#: Tasks listed in one snapshot (~20 us each, inside the loop: 20,000 hold it ~0.4 s); more
#: are left out and counted.
MAX_TASKS: Final = 20_000

# Frames from this folder down are Trio's scheduler and traps (cut from stacks read outside).
_TRIO_CORE: Final = os.path.join("trio", "_core", "")

FrameDict = dict[str, Any]
TaskId = Callable[[trio.lowlevel.Task], int]
NurseryId = Callable[[trio.Nursery], int]


def walk(root: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    """Every task under *root* (itself included), each parent before its children."""
    pending = [root]
    while pending:
        task = pending.pop()
        yield task
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)


def frame_dict(code: types.CodeType, line: int | None) -> FrameDict:
    """One frame as the wire and the page want it."""
    return {"file": code.co_filename, "line": line or 0, "function": code.co_name}


def take(
    root: trio.lowlevel.Task,
    task_id: TaskId,
    nursery_id: NurseryId,
    *,
    only: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Every task under *root* that *task_id* names (non-zero), with stacks; call inside the loop.

    The list (``/api/tasks``) gives each task its await chain read straight from
    its coroutines and the nurseries it opened: a few microseconds a task,
    since the loop waits meanwhile.  *only* (``/api/tasks/{id}``) gives that
    one task stackscope's full extraction: every frame with the nurseries and
    cancel scopes it sits in (a millisecond or more for a task whose nursery
    holds thousands).  Returns the entries and how many tasks were left out
    (over :data:`MAX_TASKS`).
    """
    entries: list[dict[str, Any]] = []
    left_out = 0
    for task in walk(root):
        tid = task_id(task)
        if not tid or (only and tid != only):
            continue
        if len(entries) >= MAX_TASKS:
            left_out += 1
            continue
        nursery = task.parent_nursery
        parent = task_id(nursery.parent_task) if nursery is not None else 0
        entry: dict[str, Any] = {
            "id": tid,
            "name": task.name,
            "parent": parent,
            "nursery": nursery_id(nursery) if nursery is not None else 0,
            "state": "running" if _scheduled(task) else "waiting",
            "where": [],
            "scopes": [],
        }
        if only:
            _extract(task, entry)
        else:
            entry["where"] = coroutine_frames(task.coro)[-LIST_FRAMES:]
            entry["scopes"] = [_describe(n) for n in task.child_nurseries]
        entries.append(entry)
    entries.sort(key=lambda e: int(e["id"]))  # child_tasks is a set: give a stable order
    return entries, left_out


def _extract(task: trio.lowlevel.Task, entry: dict[str, Any]) -> None:
    """Fill *entry*'s ``where`` and ``scopes`` with stackscope (the cheap walk without it)."""
    try:
        import stackscope  # first use costs ~50 ms; the program's environment may lack it
    except ImportError:
        entry["where"] = coroutine_frames(task.coro)
        entry["scopes"] = [_describe(n) for n in task.child_nurseries]
        return
    stack = stackscope.extract(task, with_contexts=True)
    entry["where"] = [frame_dict(f.pyframe.f_code, f.lineno) for f in stack.frames if not f.hide][
        -MAX_FRAMES:
    ]
    entry["scopes"] = [
        scope for f in stack.frames for c in f.contexts if (scope := _describe(c.obj))
    ]


def _scheduled(task: trio.lowlevel.Task) -> bool:
    # Trio sets _next_send_fn when it reschedules a task and clears it when the
    # task runs; no public API says "runnable".  Missing means "we cannot tell".
    return getattr(task, "_next_send_fn", None) is not None


def _describe(obj: object) -> str:
    """A nursery or cancel scope in a few words; other context managers are left out."""
    if isinstance(obj, trio.Nursery):
        return f"nursery ({len(obj.child_tasks)} tasks)"
    if isinstance(obj, trio.CancelScope):
        parts = ["cancel scope"]
        if obj.shield:
            parts.append("shielded")
        if obj.cancel_called:
            parts.append("cancelled")
        elif obj.deadline != math.inf:
            parts.append(f"deadline in {obj.deadline - trio.current_time():.3f} s")
        return ", ".join(parts)
    return ""


def _is_scheduler(code: types.CodeType) -> bool:
    return code.co_name == "unrolled_run" and code.co_filename.endswith("_run.py")


def task_frame(frame: types.FrameType | None) -> types.FrameType | None:
    """The outermost frame above Trio's scheduler in a loop thread's stack: the running task's
    coroutine frame (``task.coro.cr_frame``); None while the scheduler itself runs."""
    outer = None
    depth = 0
    while frame is not None and depth < MAX_DEPTH:
        if _is_scheduler(frame.f_code):
            return outer
        outer = frame
        frame = frame.f_back
        depth += 1
    return None


def thread_frames(frame: types.FrameType | None) -> list[FrameDict]:
    """The stack above Trio's scheduler in a thread running a task step, innermost last.

    *frame* is the thread's innermost frame (``sys._current_frames()[ident]``).
    Frames of the scheduler itself (``trio/_core/_run.py`` and below) are cut.
    Safe from another thread: it only reads the frames.
    """
    frames: list[FrameDict] = []
    while frame is not None and len(frames) < 4 * MAX_FRAMES:
        code = frame.f_code
        if _is_scheduler(code):
            break
        frames.append(frame_dict(code, frame.f_lineno))
        frame = frame.f_back
    frames.reverse()
    return frames[-MAX_FRAMES:]


def coroutine_frames(coro: object) -> list[FrameDict]:
    """The await chain of a suspended coroutine, outermost first (read from another thread)."""
    frames: list[FrameDict] = []
    while coro is not None and len(frames) < MAX_FRAMES:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        if _TRIO_CORE in frame.f_code.co_filename:
            break  # Trio's traps: where every task waits, not worth showing
        frames.append(frame_dict(frame.f_code, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
