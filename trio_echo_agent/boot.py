"""Instrument a program from its first line: what ``sitecustomize`` runs under ``trio-echo watch``.

:func:`install` (called once, from :mod:`trio_echo_agent._site.sitecustomize`
when ``TRIO_ECHO_AGENT_SOCKET`` is set):

* puts a finder on ``sys.meta_path`` that, when the program first imports
  ``trio``, lets Trio load as usual and then replaces ``trio.run`` with a
  wrapper that adds a :class:`~trio_echo_agent.probe.Probe` to its
  ``instruments``.  Every ``trio.run`` is covered, also those bound early
  (``from trio import run``, pytest-trio's ``run=trio.run``), since the
  patch lands before any other module sees ``trio``.  A program that never
  imports Trio pays for one failed-name check and nothing else.
* wraps ``sys.stdout`` and ``sys.stderr`` in :class:`~trio_echo_agent.tee.LineTee`;
* starts the exporter and the watchdog threads at the first ``trio.run``;
* at exit, sends the last records (bounded by the exporter's close timeout).

Imports only the standard library and trio (when the program imports it).
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, Final

from trio_echo_agent import BLOCK_ENV, SOCKET_ENV, STALL_ENV
from trio_echo_agent.exporter import Exporter
from trio_echo_agent.tee import LineTee

# How long a request for stacks waits for the loop before the watchdog's view answers.
IN_LOOP_WAIT: Final = 0.5
# A step already running this long answers from the watchdog's view at once.
STUCK_AFTER: Final = 0.1


class Agent:
    """Everything the agent holds in one process: live runs, the exporter, the watchdog."""

    def __init__(self, path: str, stall: float, block: float) -> None:
        import trio

        from trio_echo_agent.probe import Watchdog  # imports trio: only once the program has

        # Looked up per write, not per step: a thread-local read inside a task.
        self._current_task = trio.lowlevel.current_task
        self.exporter = Exporter(path, self.handle)
        #: Whether the parent wants every step (someone watches the page, or --trace).
        self.steps_wanted = False
        self._stall = stall
        self._block = min(block, stall)
        self._runs = itertools.count(1)
        self._live: dict[int, Any] = {}  # run -> Probe
        self._by_thread: dict[int, Any] = {}  # thread ident -> Probe
        self.watchdog = Watchdog(lambda: list(self._live.values()), stall, self._on_stall)

    # -- runs ---------------------------------------------------------------------------

    def wrap_run(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """``trio.run``, with a probe added to every call."""
        from trio_echo_agent.probe import Probe

        @functools.wraps(original)
        def run(
            async_fn: Callable[..., Any], *args: Any, instruments: Sequence[Any] = (), **kw: Any
        ) -> Any:
            probe = Probe(next(self._runs), self.exporter.put, self._block)
            added: tuple[Any, ...] = (probe,)
            if self.steps_wanted:
                probe.steps_on = True
                added = (probe, probe.step_hooks)
            self._begin(probe)
            error = ""
            try:
                return original(async_fn, *args, instruments=(*instruments, *added), **kw)
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                self._end(probe, error)

        return run

    def _begin(self, probe: Any) -> None:
        self._live[probe.run] = probe
        self._by_thread[threading.get_ident()] = probe
        self.exporter.put(("run_start", probe.run, time.perf_counter()))
        self.exporter.start()
        self.watchdog.start()

    def _end(self, probe: Any, error: str) -> None:
        self._live.pop(probe.run, None)
        self._by_thread.pop(threading.get_ident(), None)
        self.exporter.put(("run_end", probe.run, time.perf_counter(), error))

    def attribution(self) -> tuple[int, int]:
        """``(run, task)`` of the step running in the calling thread; ``(0, 0)`` if none."""
        probe = self._by_thread.get(threading.get_ident())
        if probe is None:
            return (0, 0)
        try:
            task = self._current_task()
        except RuntimeError:
            return (probe.run, 0)  # inside trio.run but outside any task (an instrument, a hook)
        return (probe.run, probe.task_id(task))

    def _on_stall(
        self, probe: Any, task: Any, start: float, held: float, frames: list[Any]
    ) -> None:
        tid, name = (probe.task_id(task), task.name) if task is not None else (0, "?")
        self.exporter.put(("stall", probe.run, tid, name, start, round(held, 3), frames))

    # -- requests from the parent (called in the exporter thread) -------------------------

    def handle(self, request: list[Any]) -> list[Any] | None:
        """Answer one request: ``["tasks?", id, detail]`` or ``["steps", on]`` (no answer).

        Raises:
            ValueError: not a request this agent knows.
        """
        op = request[0]
        if op == "tasks?":
            return ["tasks", request[1], self.answer(int(request[2]) if len(request) > 2 else 0)]
        if op == "steps":
            self.set_steps(bool(request[1]))
            return None
        raise ValueError(f"expected 'tasks?' or 'steps', got {op!r}")

    def set_steps(self, on: bool) -> None:
        """Install (or remove) the step hooks in every live run, and in runs to come."""
        self.steps_wanted = on
        for probe in list(self._live.values()):
            if probe.token is not None:
                try:
                    probe.token.run_sync_soon(probe.set_steps, on)
                except Exception:  # RunFinishedError: that run is over
                    pass

    # -- stacks on demand (called in the exporter thread) ---------------------------------

    def answer(self, detail: int) -> list[dict[str, Any]]:
        """Every live run's tasks with stacks: in the loop if it answers, else from outside."""
        runs = []
        for probe in list(self._live.values()):
            tasks = self._in_loop(probe, detail)
            if tasks is None:
                tasks = self._from_outside(probe, detail)
            if not detail:
                tasks.extend(probe.exited)
            runs.append({"run": probe.run, "pid": os.getpid(), "tasks": tasks})
        return runs

    def _in_loop(self, probe: Any, detail: int) -> list[dict[str, Any]] | None:
        if probe.token is None or probe.root is None:
            return None
        t = time.perf_counter()
        holder = probe.holder(t)
        if holder is not None and t - holder[1] > STUCK_AFTER:
            return None
        from trio_echo_agent.snapshot import take

        box: list[list[dict[str, Any]]] = []
        done = threading.Event()

        def snapshot() -> None:
            try:
                box.append(take(probe.root, probe.task_id, probe.nursery_id, only=detail)[0])
            except Exception:
                pass  # never let a snapshot crash the run it looks at
            done.set()

        try:
            probe.token.run_sync_soon(snapshot)
        except Exception:  # the run finished meanwhile (RunFinishedError)
            return None
        done.wait(IN_LOOP_WAIT)
        return box[0] if box else None

    def _from_outside(self, probe: Any, detail: int) -> list[dict[str, Any]]:
        from trio_echo_agent.snapshot import coroutine_frames, thread_frames

        t = time.perf_counter()
        holder = probe.holder(t)
        stuck = holder[0] if holder is not None else None
        # The task whose step holds the loop: "stalled" past the threshold, else "running".
        held = t - holder[1] if holder is not None else 0.0
        stuck_state = "stalled" if held >= self._stall else "running"
        tasks = []
        for task, tid in probe.tasks():
            if detail and tid != detail:
                continue
            nursery = task.parent_nursery
            if task is stuck:
                state = stuck_state
                where = thread_frames(sys._current_frames().get(probe.thread))
            else:
                state = "waiting"
                where = coroutine_frames(task.coro)
            tasks.append(
                {
                    "id": tid,
                    "name": task.name,
                    "parent": probe.task_id(nursery.parent_task) if nursery else 0,
                    "nursery": probe.nursery_id(nursery) if nursery else 0,
                    "state": state,
                    "where": where,
                    "scopes": [],
                }
            )
        return tasks

    # -- exit -----------------------------------------------------------------------------

    def close(self) -> None:
        """Send the last records (at exit)."""
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, LineTee):
                try:
                    stream.flush_pending()
                except Exception:
                    pass  # the program may have closed it
        self.watchdog.stop()
        try:
            self.exporter.close()
        except KeyboardInterrupt:
            pass  # Ctrl-C while the last records go out: the program exits as it would have


class _PatchTrioOnImport(importlib.abc.MetaPathFinder):
    """Let ``trio`` load as usual, then hand the module to *patch*, once."""

    def __init__(self, patch: Callable[[types.ModuleType], None]) -> None:
        self._patch = patch

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "trio":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self._patch)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[types.ModuleType], None]):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except Exception as exc:
            _say(f"not watching: {type(exc).__name__}: {exc}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _say(text: str) -> None:
    try:
        sys.__stderr__.write(f"trio-echo watch: {text}\n")  # type: ignore[union-attr]
    except Exception:
        pass  # nowhere to say it


def install() -> Agent | None:
    """Instrument this process (see the module docstring); None if the environment says no."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    stall = float(os.environ.get(STALL_ENV, "1.0"))
    block = float(os.environ.get(BLOCK_ENV, "0.05"))
    holder: list[Agent] = []

    def patch(trio: types.ModuleType) -> None:
        agent = Agent(path, stall, block)
        holder.append(agent)
        trio.run = agent.wrap_run(trio.run)  # type: ignore[attr-defined]
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, LineTee):
                setattr(sys, name, LineTee(stream, name, agent.attribution, agent.exporter.put))
        atexit.register(agent.close)

    if "trio" in sys.modules:
        patch(sys.modules["trio"])
    else:
        sys.meta_path.insert(0, _PatchTrioOnImport(patch))
    return holder[0] if holder else None
