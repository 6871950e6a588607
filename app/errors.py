"""Which failures are routine, and how an unexpected one is told in one log line.

A peer that is merely gone is the everyday end of a network connection, not
an error of ours: it is logged at debug level (if at all) and ends only that
connection.  Every part catches it by the one name :data:`PEER_GONE`; a bare
``except Exception`` is left for the per-connection boundary, which logs
what is *not* in this set as one line (:func:`describe`).
"""

from __future__ import annotations

from typing import Final

import trio

#: Errors that mean the peer is gone, nothing more (Hypercorn: "They're already gone,
#: nothing to do"):
#:
#: * ``ConnectionResetError`` (ECONNRESET: it sent RST, e.g. closed with unread data),
#:   ``ConnectionAbortedError`` (ECONNABORTED), ``BrokenPipeError`` (EPIPE: we wrote
#:   after it went), ``TimeoutError`` (ETIMEDOUT: retransmissions or keepalive gave up):
#:   what a plain non-blocking socket call raises (the echo engines);
#: * ``trio.BrokenResourceError``: a Trio stream's word for the same (the OS error is
#:   its ``__cause__``); ``trio.ClosedResourceError``: the stream was closed under a task
#:   still using it (our drain, or the front's write timeout cut it).
PEER_GONE: Final = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    TimeoutError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


def describe(exc: BaseException) -> str:
    """``Type: message`` of the first error inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
