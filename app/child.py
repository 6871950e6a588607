"""How trio-echo starts itself as a child process: workers, benchmarks and tests use this.

Why ``-P``: ``python -m app`` puts the working folder first on ``sys.path``, and a folder
with its own ``app/`` package (a very common layout) would then run that package instead
of trio-echo. ``-P`` (Python 3.11+) leaves the working folder off the path.
"""

from __future__ import annotations

import sys


def self_command(*args: str) -> list[str]:
    """The argv that runs ``trio-echo ARGS...`` in this interpreter, immune to the working folder.

    Returns ``[sys.executable, "-P", "-m", "app", *args]``.
    """
    return [sys.executable, "-P", "-m", "app", *args]
