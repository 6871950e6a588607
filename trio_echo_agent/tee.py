"""``sys.stdout``/``sys.stderr`` of a watched program: unchanged on the terminal, and each line
attributed to the Trio task that wrote it.

:class:`LineTee` writes everything through to the stream it wraps first, so
the program's output reaches the terminal (or the pipe, or pytest's
capture) byte for byte as before.  Then it cuts what was written into lines
and hands each complete line, with the task whose step was running in this
thread at the time (0 outside any task), to *emit*.  A line that grows
past :data:`MAX_LINE_CHARS` without a newline is handed over in pieces.

Limits: only writes through ``sys.stdout``/``sys.stderr`` are seen: not
``os.write(1, ...)``, not ``sys.stdout.buffer``, not child processes.  Lines
written from other threads than a loop's are attributed to task 0.

Imports only the standard library: it runs inside watched programs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TextIO

# Longest line handed over in one record; longer ones are cut (the terminal still gets all).
MAX_LINE_CHARS: Final = 4096

#: ``() -> (run, task)`` of the step running in the calling thread, ``(0, 0)`` outside one.
Attribution = Callable[[], tuple[int, int]]


class LineTee:
    """A text stream that writes to *stream* and reports each line; see the module docstring.

    Every attribute it does not define (``encoding``, ``buffer``, ``fileno``,
    ``isatty``, ...) is the wrapped stream's.
    """

    def __init__(
        self,
        stream: TextIO,
        name: str,
        attribution: Attribution,
        emit: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self._stream = stream
        self._name = name
        self._attribution = attribution
        self._emit = emit
        self._pending = ""
        self._pending_owner = (0, 0)

    @property
    def wrapped(self) -> TextIO:
        """The stream underneath."""
        return self._stream

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        try:
            self._take(text)
        except Exception:
            pass  # attribution is best effort; the write itself already happened
        return n

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def flush_pending(self) -> None:
        """Hand over a last line that never got its newline (at exit)."""
        if self._pending:
            self._send(self._pending_owner, self._pending)
            self._pending = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _take(self, text: str) -> None:
        if not text:
            return
        owner = self._attribution()
        if self._pending and owner != self._pending_owner:
            self._send(self._pending_owner, self._pending)  # another task's unfinished line
            self._pending = ""
        self._pending_owner = owner
        *lines, rest = (self._pending + text).split("\n")
        for line in lines:
            self._send(owner, line)
        while len(rest) > MAX_LINE_CHARS:
            self._send(owner, rest[:MAX_LINE_CHARS])
            rest = rest[MAX_LINE_CHARS:]
        self._pending = rest

    def _send(self, owner: tuple[int, int], line: str) -> None:
        run, task = owner
        self._emit(("out", run, task, self._name, line[:MAX_LINE_CHARS], time.perf_counter()))
