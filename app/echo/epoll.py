"""The multiplexed echo engine: one Trio task serves every connection through a private epoll.

Why: a Trio task per connection costs a task switch, an epoll re-registration
and a few allocations per message, and several KiB of memory per connection.
Here one task waits (a Trio checkpoint, like any other) for a private epoll
object to become readable, then serves a bounded batch of ready sockets with
plain non-blocking calls into one shared buffer.  It stays structured: the
task lives in the server's nursery, is cancelled with it (closing every
socket), and obeys the same :class:`~app.echo.conns.ConnTable` limits and
counters as the task engine.

Per-connection state is a socket, its :class:`~app.echo.conns.Conn` and at
most one pending partial write.  While a write is pending the socket is
polled for writability only, so a client that does not read stops being read
(backpressure) and holds at most one read's worth of server memory.
"""

from __future__ import annotations

import logging
import select
import socket
from typing import Final

import trio

from app.echo import RECV_SIZE
from app.echo.conns import ConnTable
from app.echo.multiplex import MAX_EVENTS, POLL_IN, Link, Multiplexed
from app.net import ACCEPT_CAPACITY_SLEEP, accept_batch

log = logging.getLogger(__name__)


class EpollEngine(Multiplexed[Link]):
    """Serve echo connections from *listener* in one task, under *table*'s limits."""

    name: Final = "epoll"

    def __init__(self, listener: socket.socket, table: ConnTable) -> None:
        super().__init__(table)
        self._listener = listener
        self._lfd = listener.fileno()
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._accept_paused_until = 0.0

    async def run(self) -> None:
        """Accept and serve until cancelled; on the way out every connection is closed.

        Cancellation: the usual way to stop it.
        """
        with select.epoll() as ep:
            self._epoll = ep
            ep.register(self._lfd, POLL_IN)
            try:
                await self._loop(ep)
            finally:
                self.drop_all()
                self._epoll = None

    async def _loop(self, ep: select.epoll) -> None:
        lfd = self._lfd
        links = self._links
        buf = self._buf
        view = self._view
        wait_readable = trio.lowlevel.wait_readable
        while True:
            if self._accept_paused_until:
                # Keep serving connections while accepting is paused.
                with trio.move_on_at(self._accept_paused_until):
                    await wait_readable(ep.fileno())
                if trio.current_time() >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    ep.modify(lfd, POLL_IN)
            else:
                await wait_readable(ep.fileno())
            for fd, _events in ep.poll(0, MAX_EVENTS):
                if fd == lfd:
                    if accept_batch(self._listener, self._admit):
                        # Out of descriptors: stop polling the listener for a while.
                        ep.modify(lfd, 0)
                        self._accept_paused_until = trio.current_time() + ACCEPT_CAPACITY_SLEEP
                    continue
                link = links.get(fd)
                if link is None:
                    continue  # closed earlier in this batch
                if link.pending is not None:
                    link.conn.bytes_out += self._flush(link) or 0
                    continue
                n = self._recv(link, buf)
                if n is None:
                    continue
                conn = link.conn
                if n == 0:
                    self._finish(link)
                    continue
                conn.bytes_in += n
                conn.msgs += 1
                sent = self._send(link, view[:n])
                if sent is None:
                    continue
                if sent < n:
                    self._park(link, memoryview(bytes(view[sent:n])))
                    conn.bytes_out += sent
                else:
                    conn.bytes_out += n

    def _admit(self, sock: socket.socket, peer: str) -> None:
        fd = sock.fileno()
        conn = self._table.admit(peer, lambda reason: self._abort(fd, reason))
        if conn is None:
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._register(Link(sock, conn))

    def _finish(self, link: Link) -> None:
        """The peer half-closed and nothing is pending: send EOF and close."""
        try:
            link.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset: the close below is all that is left
        self._drop(link, "eof")

    def _abort(self, fd: int, reason: str) -> None:
        link = self._links.get(fd)
        if link is not None:
            self._drop(link, reason)
