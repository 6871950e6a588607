"""How the cyclic garbage collector runs in a serving process.

Why: CPython's defaults (a young collection every 700 net allocations of
container objects) suit short scripts.  A server holding 10,000 connections
keeps tens of thousands of long-lived containers (sockets, connection
records, parked tasks), and every parked Trio task holds a few objects that
survive young collections and get promoted, so the collector keeps
re-scanning live state: measured with the task-per-connection engine at
10,000 connections, collections took about a third of the CPU.  Most of the
server's garbage is acyclic and freed by reference counting at once; the
cyclic collector only has to find the rare cycles (an exception and its
traceback), so it can run far less often.

Rules: called once, by the ``serve`` command, after startup (tests run with
the interpreter's defaults).
"""

from __future__ import annotations

import gc
from typing import Final

# Young collections every 20,000 net container allocations instead of 700:
# a pass scans at most that many young objects (about a millisecond).
GEN0_THRESHOLD: Final = 20_000
# A middle-generation pass every 50 young ones (about a million allocations).
GEN1_THRESHOLD: Final = 50
# CPython's own: a full pass at most every 10 middle ones, and only when the
# objects promoted since the last exceed a quarter of the old ones, so cyclic
# garbage is still found within a bounded number of allocations.
GEN2_THRESHOLD: Final = 10


def tune_for_serving() -> None:
    """Freeze what startup built and space collections out (see the module docstring).

    ``gc.freeze()`` moves every object alive now (modules, functions,
    settings, the app) out of the collector's sight: they live as long as
    the process, and a full pass no longer walks them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
