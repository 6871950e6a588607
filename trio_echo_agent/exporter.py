"""The watched program's side of the link: a bounded buffer and the thread that drains it.

Producers (instrument hooks in the loop thread, the watchdog thread, the
stdout/stderr tee) call :meth:`Exporter.put`, which appends a tuple to a
deque or, when :data:`CAPACITY` records wait already, drops it and counts
it.  It never blocks and never raises: a watched program must not slow
down or fail because its watcher is slow, stuck or gone.

The exporter thread connects to the Unix socket ``trio-echo watch`` listens
on, then every :data:`PERIOD` seconds sends what waits (JSON lines, see
:mod:`trio_echo_agent.wire`; ``["dropped", n]`` first when records were
dropped) and answers requests (``["tasks?", id, detail]`` with a snapshot;
``["steps", on]`` turns the per-step hooks on or off).

Why a thread, the one place besides the watchdog where a bare thread is
right: it must keep the link alive and answer while the program's loop is
stuck, and a task inside the loop would add checkpoints to the program.
It is a daemon thread; at exit :meth:`close` gives it a bounded time to
send the last records.  If the socket fails (``watch`` died), it stops and
:meth:`put` becomes a no-op: the program goes on running unobserved.

Imports only the standard library (and msgspec when the program has it):
it runs inside watched programs.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

# Records waiting for the thread; more are dropped and counted (~10 MB at worst).
CAPACITY: Final = 50_000
# How often the thread wakes to send and to read requests (seconds).
PERIOD: Final = 0.02
# Records per send; a batch is one sendall.
BATCH: Final = 2_000
# Longest request line accepted from the parent.
MAX_REQUEST: Final = 4096
# What the thread does at exit to send the last records (seconds).
CLOSE_TIMEOUT: Final = 1.0
# ...of which the last part is kept to tell the parent how many records did not make it.
CLOSE_MARGIN: Final = 0.25

try:  # msgspec is ~5x faster; the program's environment may not have it
    import msgspec

    _encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode
except ImportError:  # pragma: no cover - depends on the watched program's environment

    def _encode(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


#: ``(request) -> reply or None``: answers one request line (a JSON array); raises ValueError
#: for one it does not know.
Handle = Callable[[list[Any]], list[Any] | None]


class Exporter:
    """The bounded buffer and its thread; see the module docstring."""

    def __init__(self, path: str, handle: Handle) -> None:
        self._path = path
        self._handle = handle
        self._records: collections.deque[tuple[Any, ...]] = collections.deque()
        #: Records dropped because the buffer was full, not yet reported.
        self.dropped = 0
        #: The link is gone (or never came): records are no longer kept.
        self.broken = False
        self._closing = threading.Event()
        self._close_by = 0.0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trio-echo exporter", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (idempotent, thread-safe)."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def put(self, record: tuple[Any, ...]) -> None:
        """Queue *record* for the parent; never blocks, never raises."""
        if self.broken:
            return
        if len(self._records) < CAPACITY:
            self._records.append(record)
        else:
            self.dropped += 1

    def close(self) -> None:
        """Send what waits, for at most :data:`CLOSE_TIMEOUT` seconds, then stop (at exit)."""
        if not self._started:
            return
        self._close_by = time.monotonic() + CLOSE_TIMEOUT - CLOSE_MARGIN
        self._closing.set()
        self._closed.wait(CLOSE_TIMEOUT)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            self._give_up()
            return
        try:
            with sock:
                sock.sendall(_encode(["hello", os.getpid(), sys.argv]) + b"\n")
                self._serve(sock)
        except OSError:
            pass  # watch is gone: from now on nothing is kept
        finally:
            self._give_up()

    def _give_up(self) -> None:
        self.broken = True
        self._records.clear()
        self._closed.set()

    def _serve(self, sock: socket.socket) -> None:
        inbox = b""
        while True:
            closing = self._closing.is_set()
            if closing and time.monotonic() > self._close_by and self._records:
                # Out of time at exit: what is left is dropped, and said so.
                left = len(self._records)
                self._records.clear()
                self.dropped += left
            readable, _, _ = select.select([sock], [], [], 0 if closing else PERIOD)
            if readable:
                data = sock.recv(65536)
                if not data:
                    return  # watch closed the link
                inbox += data
                *requests, inbox = inbox.split(b"\n")
                if len(inbox) > MAX_REQUEST:
                    return  # not our parent speaking
                for line in requests:
                    self._reply(sock, line)
            self._send_batch(sock)
            if closing and not self._records:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return

    def _send_batch(self, sock: socket.socket, limit: int = BATCH) -> None:
        out = bytearray()
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            out += _encode(["dropped", dropped]) + b"\n"
        records = self._records
        for _ in range(min(limit, len(records))):
            out += _encode(records.popleft()) + b"\n"
        if out:
            sock.sendall(out)

    def _reply(self, sock: socket.socket, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, list) or not request:
                raise ValueError("not a JSON array")
            reply = self._handle(request)
        except (ValueError, TypeError, IndexError):
            return  # a request we do not understand gets no answer; the parent times out
        if reply is not None:
            # Records queued before the reply go first: the parent must know every task
            # a snapshot names (its spawn) before the snapshot arrives.
            self._send_batch(sock, limit=CAPACITY)
            sock.sendall(_encode(reply) + b"\n")
