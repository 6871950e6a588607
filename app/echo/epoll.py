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
from app.echo.proxy import (
    HEADER_TIMEOUT,
    MAX_HEADER,
    HeaderReader,
    ProxyCounts,
    ProxyHeader,
    ProxyPolicy,
    ProxyProtocolError,
    ProxyRefusals,
    carried_peer,
)
from app.echo.proxyread import refuse_untrusted
from app.net import ACCEPT_CAPACITY_SLEEP, accept_batch

log = logging.getLogger(__name__)


# Connections still sending their PROXY header are checked for the timeout this often.
GREETING_SWEEP: Final = 1.0


class Greeting:
    """A connection whose PROXY header is not whole yet: not echoed, not in the table."""

    __slots__ = ("deadline", "peer", "reader", "sock")

    def __init__(
        self, sock: socket.socket, peer: str, reader: HeaderReader, deadline: float
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.reader = reader
        self.deadline = deadline


class EpollEngine(Multiplexed[Link]):
    """Serve echo connections from *listener* in one task, under *table*'s limits.

    With *proxy*, every connection must first send a PROXY protocol header
    (from a trusted address): until it is whole the connection is a
    :class:`Greeting`, outside the hot loop's table, so the per-message path
    is the same with or without it.  *refusals* counts and logs the
    connections closed for their header.
    """

    name: Final = "epoll"

    def __init__(
        self,
        listener: socket.socket,
        table: ConnTable,
        proxy: ProxyPolicy | None = None,
        refusals: ProxyCounts | None = None,
    ) -> None:
        super().__init__(table)
        self._listener = listener
        self._lfd = listener.fileno()
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._accept_paused_until = 0.0
        self._proxy = proxy
        self._refusals = refusals or ProxyRefusals("tcp echo").listener("tcp")
        self._greetings: dict[int, Greeting] = {}
        self._sweep_at = 0.0

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
                for greeting in self._greetings.values():
                    greeting.sock.close()
                self._greetings.clear()
                self._epoll = None

    async def _loop(self, ep: select.epoll) -> None:
        lfd = self._lfd
        links = self._links
        buf = self._buf
        view = self._view
        wait_readable = trio.lowlevel.wait_readable
        greetings = self._greetings
        while True:
            if self._accept_paused_until or greetings:
                await self._wait_with_timers(ep)
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
                    if fd in greetings:
                        self._read_header(greetings[fd])
                    continue  # or closed earlier in this batch
                if link.pending is not None:
                    link.conn.bytes_out += self._flush(link) or 0
                    continue
                # The base's _recv/_send, written out: two Python calls per echo were 2-8% of
                # s2 (A/B against this inlined loop, docs/performance.md).  Same rules: would
                # block is not an error, any other OSError drops this connection alone.
                try:
                    n = link.sock.recv_into(buf)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._lost(link, exc)
                    continue
                conn = link.conn
                if n == 0:
                    self._finish(link)
                    continue
                conn.bytes_in += n
                conn.msgs += 1
                try:
                    sent = link.sock.send(view[:n])
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._lost(link, exc)
                    continue
                if sent < n:
                    self._park(link, memoryview(bytes(view[sent:n])))
                    conn.bytes_out += sent
                else:
                    conn.bytes_out += n

    async def _wait_with_timers(self, ep: select.epoll) -> None:
        """Wait for the epoll, but also wake when accepting may resume or greetings may expire."""
        deadline = self._accept_paused_until or float("inf")
        if self._greetings:
            deadline = min(deadline, self._sweep_at)
        with trio.move_on_at(deadline):
            await trio.lowlevel.wait_readable(ep.fileno())
        now = trio.current_time()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            ep.modify(self._lfd, POLL_IN)
        if self._greetings and now >= self._sweep_at:
            self._sweep_at = now + GREETING_SWEEP
            for greeting in [g for g in self._greetings.values() if now >= g.deadline]:
                self._refuse(greeting, f"no whole PROXY header within {HEADER_TIMEOUT:g} s")

    def _admit(self, sock: socket.socket, peer: str) -> None:
        if self._proxy is not None:
            self._greet(sock, peer, self._proxy)
            return
        self._open(sock, peer)

    def _open(self, sock: socket.socket, peer: str) -> Link | None:
        fd = sock.fileno()
        conn = self._table.admit(peer, lambda reason: self._abort(fd, reason))
        if conn is None:
            sock.close()
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(sock, conn)
        self._register(link)
        return link

    # -- the PROXY protocol header (cold path: once per connection) ------------------------------

    def _greet(self, sock: socket.socket, peer: str, proxy: ProxyPolicy) -> None:
        if refuse_untrusted(proxy, self._refusals, sock, peer):
            return
        table = self._table
        if len(table) + len(self._greetings) >= table.limit:
            table.refusals.refuse(peer)
            sock.close()
            return
        now = trio.current_time()
        if not self._greetings:
            self._sweep_at = now + GREETING_SWEEP
        greeting = Greeting(sock, peer, HeaderReader(proxy), now + HEADER_TIMEOUT)
        self._greetings[sock.fileno()] = greeting
        assert self._epoll is not None
        self._epoll.register(sock.fileno(), POLL_IN)

    def _read_header(self, greeting: Greeting) -> None:
        try:
            data = greeting.sock.recv(MAX_HEADER)
        except BlockingIOError:
            return
        except OSError as exc:
            self._refuse(greeting, f"connection failed before its PROXY header: {exc}")
            return
        try:
            header = greeting.reader.receive_data(data)
        except ProxyProtocolError as exc:
            self._refuse(greeting, str(exc))
            return
        if isinstance(header, ProxyHeader):
            self._greeted(greeting, header)

    def _forget_greeting(self, greeting: Greeting) -> None:
        fd = greeting.sock.fileno()
        del self._greetings[fd]
        assert self._epoll is not None
        self._epoll.unregister(fd)

    def _refuse(self, greeting: Greeting, reason: str) -> None:
        self._forget_greeting(greeting)
        greeting.sock.close()
        self._refusals.refuse(greeting.peer, reason)

    def _greeted(self, greeting: Greeting, header: ProxyHeader) -> None:
        """The header is whole: the connection joins the table as the client it carries."""
        self._forget_greeting(greeting)
        self._refusals.accept()
        link = self._open(greeting.sock, carried_peer(header, greeting.peer))
        rest = greeting.reader.leftover
        if link is None or not rest:
            return
        # Bytes that came with the header: echo them as the loop would have.
        conn = link.conn
        conn.bytes_in += len(rest)
        conn.msgs += 1
        try:
            sent = link.sock.send(rest)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(link, exc)
            return
        conn.bytes_out += sent
        if sent < len(rest):
            self._park(link, memoryview(rest)[sent:])

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
