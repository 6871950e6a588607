"""The watched child process: its environment, its signals, its exit code.

The child runs COMMAND unmodified, with the terminal's stdin, stdout and
stderr (its output reaches the terminal byte for byte), plus:

* ``PYTHONPATH`` starting with the agent's ``_site`` folder, so that every
  Python process it starts loads the agent (``trio_echo_agent``);
* the agent's settings: the link's socket path and the thresholds.

Signals, like a shell's foreground job: Ctrl-C in a terminal reaches the
whole foreground process group, the child included, so the first SIGINT is
not forwarded when ``watch`` runs in a terminal's foreground group (the
child would get it twice); anywhere else (a script sending SIGINT to
``watch``) it is.  The child's own KeyboardInterrupt handling runs either
way.  A second SIGINT kills the child (SIGKILL).  SIGTERM is forwarded.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

import trio_echo_agent

log = logging.getLogger(__name__)


def agent_site() -> Path:
    """The folder that goes first on the child's ``PYTHONPATH`` (holds ``sitecustomize.py``)."""
    return Path(trio_echo_agent.__file__).resolve().parent / "_site"


def child_env(
    base: Mapping[str, str], socket_path: str, stall: float, block: float
) -> dict[str, str]:
    """The child's environment: *base* plus the agent's loader and settings."""
    env = dict(base)
    paths = [str(agent_site())]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[trio_echo_agent.SOCKET_ENV] = socket_path
    env[trio_echo_agent.STALL_ENV] = repr(stall)
    env[trio_echo_agent.BLOCK_ENV] = repr(block)
    return env


def exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _in_terminal_foreground() -> bool:
    """True when a terminal's Ctrl-C reaches our process group (and so the child too)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False  # no terminal: signals come from a script, to us alone


class Child:
    """COMMAND running as a child; :meth:`run` waits for it and handles the signals."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self._env = dict(env)
        self.process: trio.Process | None = None
        #: The child's exit code once it ended (shell convention for signals).
        self.code: int | None = None
        self._interrupts = 0
        #: Set once the child ended and :attr:`code` holds its exit code.
        self.exited = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> int:
        """Start the child, report its pid, and return its exit code when it ends.

        Raises:
            OSError: COMMAND could not be started (not found, not executable).

        Cancellation: kills the child (SIGKILL) and waits for it.
        """
        self.process = await trio.lowlevel.open_process(self.argv, env=self._env)
        task_status.started(self.process.pid)
        try:
            await self.process.wait()
        finally:
            if self.process.returncode is None:
                self.process.kill()
                with trio.CancelScope(shield=True):
                    await self.process.wait()
        returncode = self.process.returncode
        assert returncode is not None  # waited for
        self.code = exit_code(returncode)
        self.exited.set()
        return self.code

    def signal(self, signum: int) -> bool:
        """Pass a signal that ``watch`` received on to the child, as the module docstring says.

        Returns False when there is no child (any more) to pass it to.
        """
        process = self.process
        if process is None or process.returncode is not None:
            return False
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts >= 2:
                log.warning("watch: second interrupt; killing pid %d", process.pid)
                process.kill()
            elif not _in_terminal_foreground():
                process.send_signal(signal.SIGINT)
        else:
            process.send_signal(signum)
        return True
