"""What this operating system offers trio-echo, decided in one place.

Trio runs on Linux, macOS and Windows; trio-echo's fastest paths are Linux's (a private
``epoll`` per engine, ``/proc`` for memory).  Every part that leans on something only some
systems have asks :data:`CURRENT` instead of probing for itself, so that:

* the fallbacks are listed together, here, and each says what it costs;
* a test can make the platform look like another one by replacing :data:`CURRENT`
  (``monkeypatch.setattr(portability, "CURRENT", ...)``), which exercises every fallback
  on Linux; Trio itself keeps its own I/O manager whatever this module says.

Rules of this module: it reads the system once, at import, and never does I/O afterwards;
:func:`choose_engines` is pure.  docs/platforms.md lists which feature needs what.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Final

from app.config import EchoEngine, WsEngine

#: The TCP echo engine that runs anywhere Trio runs (Trio's public API only).
PORTABLE_ENGINE: Final[EchoEngine] = "trio"
#: The ``/ws/echo`` path that runs anywhere Trio runs (the websockets library's Trio connection).
PORTABLE_WS_ENGINE: Final[WsEngine] = "fast"
#: Engines that need :attr:`Capabilities.epoll`.
EPOLL_ENGINES: Final[frozenset[EchoEngine]] = frozenset({"epoll", "tasks"})


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the running system offers, as far as trio-echo cares."""

    #: ``select.epoll``: the multiplexed TCP and websocket engines and the tasks engine's
    #: waker (Linux).  Without it: ``--engine trio`` and ``--ws-engine fast``.
    epoll: bool
    #: ``SO_REUSEPORT``: several ``--workers`` processes sharing one port (Linux, macOS,
    #: the BSDs; not Windows).  Without it: ``--workers`` above 1 is refused.
    reuse_port: bool
    #: SIGTERM arrives as a signal from other processes (POSIX).  On Windows only Ctrl-C
    #: (SIGINT) stops the server gracefully; a terminated process just ends.
    sigterm: bool
    #: The ``resource`` module, to lift the open-file limit (POSIX).  Without it the
    #: system's default limit stays and accepts pause when it is reached.
    rlimit: bool
    #: ``/proc/self/statm``: resident memory for the many-tasks scenario (Linux).  Without
    #: it the scenario reports no memory figure.
    proc: bool
    #: ``fcntl`` and pollable standard input for the interactive client (POSIX).  Without
    #: it the client reads standard input in a worker thread.
    fcntl: bool

    def missing(self) -> list[str]:
        """The names of the capabilities this system lacks, for one log line."""
        return [name for name in self.__slots__ if not getattr(self, name)]


def detect() -> Capabilities:
    """Read what this system offers (cheap, no I/O but one ``os.path.exists``)."""
    return Capabilities(
        epoll=hasattr(select, "epoll"),
        reuse_port=hasattr(socket, "SO_REUSEPORT") and sys.platform != "win32",
        sigterm=sys.platform != "win32",
        rlimit=_importable("resource"),
        proc=os.path.exists("/proc/self/statm"),
        fcntl=_importable("fcntl"),
    )


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


#: This system, read once at import.  Tests replace it to look like another system.
CURRENT: Capabilities = detect()


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a server to stop: SIGINT, and SIGTERM where it can arrive."""
    if CURRENT.sigterm:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT,)


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """The engines a server runs, and the line that says why when they are not the ones asked."""

    engine: EchoEngine
    ws_engine: WsEngine
    #: One log line when a fallback replaced what was asked, else ``None``.
    note: str | None


def choose_engines(engine: EchoEngine, ws_engine: WsEngine, caps: Capabilities) -> EngineChoice:
    """The TCP and ``/ws/echo`` engines to run for the *engine* and *ws_engine* asked.

    Where epoll is missing, an epoll engine becomes its portable counterpart
    (:data:`PORTABLE_ENGINE`, :data:`PORTABLE_WS_ENGINE`) and :attr:`EngineChoice.note`
    says so; otherwise the choice is what was asked.  Pure.
    """
    if caps.epoll:
        return EngineChoice(engine, ws_engine, None)
    chosen: EchoEngine = PORTABLE_ENGINE if engine in EPOLL_ENGINES else engine
    ws_chosen: WsEngine = PORTABLE_WS_ENGINE if ws_engine == "epoll" else ws_engine
    if (chosen, ws_chosen) == (engine, ws_engine):
        return EngineChoice(engine, ws_engine, None)
    note = (
        f"epoll is not available on {sys.platform}: tcp echo runs --engine {chosen}, "
        f"/ws/echo runs --ws-engine {ws_chosen} (the portable engines; see docs/platforms.md)"
    )
    return EngineChoice(chosen, ws_chosen, note)
