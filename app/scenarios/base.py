"""What a scenario's code can use besides Trio: a console attributed to the current task.

A scenario is a module with ``INFO`` (:class:`~app.scenarios.catalog.ScenarioInfo`)
and ``async def run(ctx, **params)``.  It is plain Trio code that reads like
the tutorial's original; the only difference is that it prints with
``ctx.print`` (so each line lands in the feed, attributed to the Trio task that
printed it) instead of ``print``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio


class RunContext(Protocol):
    """The runner's side of a scenario run."""

    @property
    def run_id(self) -> str:
        """The id of this run (``r1``, ``r2``...), as events and the page name it."""
        ...

    def print(self, *parts: object) -> None:
        """Print one line, as the current Trio task.  Never blocks, never a checkpoint."""
        ...

    def quiet(self, nursery: trio.Nursery) -> None:
        """Tasks started in *nursery* get no lane of their own (for thousands of tasks)."""
        ...

    def summary(self, **values: Any) -> None:
        """Numbers the run reports when it ends (shown on the page, returned by ``demo``)."""
        ...


ScenarioFn = Callable[..., Awaitable[None]]


def task_label() -> str:
    """The current task as the tutorial printed greenlets: ``<Task f(5) #1>``."""
    return f"<Task {trio.lowlevel.current_task().name}>"
