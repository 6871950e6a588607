"""The task-per-connection echo engine: each connection is its own Trio task.

This is the engine to watch: every connection is a real Trio task, so the
scheduler tracer draws it as a lane of its own.  It skips the
``SocketStream`` layer (and its per-call allocations) and drives stdlib
sockets with :func:`trio.lowlevel.wait_readable` / ``wait_writable``: try the
call first, wait only when the kernel says it would block.

Every connection task reads into one buffer shared by the whole engine.
That is safe because a task never awaits between ``recv_into`` and the
``send`` that empties the buffer; if the send is partial, the rest is copied
out before the task waits.  So memory per connection does not include a
receive buffer, and a client that never reads holds at most one read's worth
of bytes (backpressure: the task stops reading until the send completes).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Final

import trio

from app.echo.conns import Conn, ConnTable
from app.errors import describe
from app.net import accept_forever

log = logging.getLogger(__name__)

# Largest single read.  Reads of 128 KiB or more make glibc allocate with
# mmap/munmap on every call; 64 KiB matches Trio's own default receive size.
RECV_SIZE: Final = 64 * 1024
# Reads served back to back without yielding, when a peer keeps the socket
# readable; then the task checkpoints so the others get their turn.
FAIRNESS_BUDGET: Final = 8

# A peer that vanished mid-echo: nothing left to deliver, log at debug.
PEER_GONE: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)

#: Called with the lane id of each connection task as it starts (the tracer watches it).
OnTaskStart = Callable[[int], None]


class TaskEngine:
    """Serve echo connections from *listener*, a Trio task each, under *table*'s limits."""

    name: Final = "tasks"

    def __init__(
        self, listener: socket.socket, table: ConnTable, on_task_start: OnTaskStart | None = None
    ) -> None:
        self._listener = listener
        self._table = table
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._on_task_start = on_task_start

    async def run(self) -> None:
        """Accept and serve until cancelled; on cancellation every connection is closed.

        Cancellation: the usual way to stop it.  Connection tasks live in this
        function's nursery, so they are all gone when it returns.
        """
        async with trio.open_nursery() as nursery:

            def on_accept(sock: socket.socket, peer: str) -> None:
                scope = trio.CancelScope()
                conn = self._table.admit(peer, lambda _reason: scope.cancel())
                if conn is None:
                    sock.close()
                    return
                nursery.start_soon(self._serve, sock, conn, scope, name=f"tcp {peer}")

            await accept_forever(self._listener, on_accept)

    async def _serve(self, sock: socket.socket, conn: Conn, scope: trio.CancelScope) -> None:
        if self._on_task_start is not None:
            self._on_task_start(conn.id)
        reason = "closed"
        try:
            with scope:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await self._echo(sock, conn)
                reason = "eof"
        except PEER_GONE as exc:
            reason = "reset"
            log.debug("tcp echo: %s went away: %s", conn.peer, exc)
        except Exception as exc:  # the per-connection boundary: only this one ends
            reason = "error"
            log.error("tcp echo: connection from %s failed: %s", conn.peer, describe(exc))
        finally:
            sock.close()
            self._table.close(conn, reason)

    async def _echo(self, sock: socket.socket, conn: Conn) -> None:
        """Echo until the peer half-closes, then send what is left, EOF, and return."""
        buf = self._buf
        view = self._view
        recv_into = sock.recv_into
        send = sock.send
        wait_readable = trio.lowlevel.wait_readable
        budget = FAIRNESS_BUDGET
        while True:
            try:
                n = recv_into(buf)
            except BlockingIOError:
                budget = FAIRNESS_BUDGET
                await wait_readable(sock)
                continue
            if n == 0:
                # Everything read so far was sent before this read: only EOF is left.
                sock.shutdown(socket.SHUT_WR)
                return
            conn.bytes_in += n
            conn.msgs += 1
            try:
                sent = send(view[:n])
            except BlockingIOError:
                sent = 0
            if sent < n:
                # Copy out before waiting: other tasks reuse the shared buffer.
                await _send_rest(sock, bytes(view[sent:n]))
            conn.bytes_out += n
            budget -= 1
            if budget == 0:
                budget = FAIRNESS_BUDGET
                await trio.lowlevel.checkpoint()


async def _send_rest(sock: socket.socket, data: bytes) -> None:
    """Send all of *data*, waiting for room; meanwhile nothing more is read (backpressure).

    Cancellation: may leave part of *data* unsent; the caller closes the
    connection, it does not resume.
    """
    rest = memoryview(data)
    while rest:
        await trio.lowlevel.wait_writable(sock)
        try:
            rest = rest[sock.send(rest) :]
        except BlockingIOError:
            continue
