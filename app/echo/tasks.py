"""The task-per-connection echo engines: each connection is its own Trio task.

Two engines share this module's echo loop and differ only in how a connection
task waits for its socket:

* ``--engine tasks`` (Linux): through a private epoll and one waker task, as
  described below;
* ``--engine trio`` (anywhere Trio runs): through Trio's own I/O manager,
  :func:`trio.lowlevel.wait_readable` and :func:`~trio.lowlevel.wait_writable`,
  Trio's public API only.  It is the fallback where epoll is missing
  (:mod:`app.portability`) and selectable on Linux so that every test runs it.

``tasks`` is the engine to watch: every connection is a real Trio task, so the
scheduler tracer draws it as a lane of its own.  It skips the
``SocketStream`` layer (and its per-call allocations) and drives stdlib
sockets with try-first ``recv_into`` / ``send``.

Connection tasks do not wait through Trio's I/O manager
(``wait_readable``), which re-arms a one-shot epoll registration per wait
(an ``epoll_ctl`` call, and a few objects that live while the task is
parked: garbage the cyclic collector then scans, which at 10,000
connections costs more than the echo itself).  Instead each socket is
registered once, edge-triggered, in a private epoll that one waker task
watches; a connection task parks with
:func:`trio.lowlevel.wait_task_rescheduled` and the waker reschedules it
when its socket has news.  Edge-triggered means a read shorter than the
buffer has emptied the socket, so the task parks right away instead of
paying a read that fails with ``EAGAIN``; an edge that comes while its task
is busy is remembered, so none is lost.  Parking is still a plain Trio
checkpoint: cancellation, the tracer and every other task see nothing
unusual.

Every connection task reads into one buffer shared by the whole engine.
That is safe because a task never awaits between ``recv_into`` and the
``send`` that empties the buffer; if the send is partial, the rest is copied
out before the task waits.  So memory per connection does not include a
receive buffer, and a client that never reads holds at most one read's worth
of bytes (backpressure: the task stops reading until the send completes).

Stopping a connection (an abort: shutdown, idle sweep) wakes its parked task
with :data:`STOP` instead of cancelling it, when the waker parks it: the task
returns and closes its socket without a ``Cancelled`` raised through its
frames.  At shutdown that is every connection at once, and the exception
path (cancel delivery, unwinding, the ``except`` clauses) was most of the
Python work of tearing down 1,000 connection tasks, the work that made
``SIGTERM`` take over a second on a loaded machine.  A task that is running
when the abort comes (not parked) is cancelled as before.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import select
import socket
from collections.abc import Awaitable, Callable, Container, Iterator
from typing import Final, NamedTuple

import outcome
import trio

from app.echo import RECV_SIZE
from app.echo.conns import Conn, ConnTable
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
from app.echo.proxyread import greet, refuse_untrusted
from app.errors import PEER_GONE, describe
from app.net import accept_forever

log = logging.getLogger(__name__)

# Reads served back to back without yielding, when a peer keeps the socket
# readable; then the task checkpoints so the others get their turn.
FAIRNESS_BUDGET: Final = 8

#: Called with the lane id of each connection task as it starts (the tracer watches it).
OnTaskStart = Callable[[int], None]

#: Waits until the connection's socket has news (readable, or writable once asked for).
Wait = Callable[[], Awaitable[object]]
#: Asks (True) or stops asking (False) to be woken when the socket has room to write.
WantWrite = Callable[[bool], None]

# Socket events the waker takes per wake-up before yielding to the other tasks.
WAKE_BATCH: Final = 512


class Wake(enum.Enum):
    """What a :class:`Waker` wait returns besides ``None`` (news on the socket, or maybe)."""

    #: The connection was aborted while parked: return without another socket call.
    STOP = "stop"


#: The value a wait returns when the connection must stop (see the module docstring).
STOP: Final = Wake.STOP


class Waker:
    """Parks connection tasks until their socket has news, through one private epoll.

    Sync methods are called by the connection tasks; :meth:`run` is the
    waker's own task and must run for as long as any task may park.
    """

    def __init__(self, ep: select.epoll) -> None:
        self._ep = ep
        # Read from select at run time, not import time: the module imports where epoll is
        # missing too, for the portable engine.
        self._read = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
        self._read_write = self._read | select.EPOLLOUT
        #: Parked tasks by file descriptor.
        self._parked: dict[int, trio.lowlevel.Task] = {}
        #: Descriptors with an edge that came while their task was not parked.
        self._pending: set[int] = set()
        #: Descriptors whose peer half-closed (EPOLLRDHUP seen).  Data and FIN that
        #: arrive together make one edge: a short read then does not mean "empty",
        #: the EOF is still to be read, and no further edge will announce it.
        self.hung_up: set[int] = set()

    def add(self, fd: int) -> None:
        """Watch *fd* for reading (edge-triggered) until :meth:`remove`."""
        self._ep.register(fd, self._read)

    def remove(self, fd: int) -> None:
        """Stop watching *fd*; call before closing it, so that a reused number starts clean."""
        self._ep.unregister(fd)
        self._pending.discard(fd)
        self.hung_up.discard(fd)
        self._parked.pop(fd, None)

    def want_write(self, fd: int, on: bool) -> None:
        """Also wake for writability (while a send is partial), or stop doing so."""
        self._ep.modify(fd, self._read_write if on else self._read)

    def aborter(self, fd: int) -> Callable[[Callable[[], None]], trio.lowlevel.Abort]:
        """The abort function a task parked on *fd* gives Trio: made once per connection."""
        parked = self._parked

        def abort(_raise_cancel: Callable[[], None]) -> trio.lowlevel.Abort:
            del parked[fd]
            return trio.lowlevel.Abort.SUCCEEDED

        return abort

    async def wait(
        self, fd: int, abort: Callable[[Callable[[], None]], trio.lowlevel.Abort]
    ) -> Wake | None:
        """Park until *fd* has an event newer than the caller's last look at the socket.

        Always a checkpoint.  May return without anything to read (the event
        was a writability or an edge already consumed): the caller retries.

        Returns:
            :data:`STOP` if :meth:`stop` woke it: the caller must return at once.

        Cancellation: safe; the task is simply no longer parked.
        """
        if fd in self._pending:
            self._pending.discard(fd)
            await trio.lowlevel.checkpoint()
            return None
        self._parked[fd] = trio.lowlevel.current_task()
        woken: Wake | None = await trio.lowlevel.wait_task_rescheduled(abort)
        return woken

    def stop(self, fd: int) -> bool:
        """Wake the task parked on *fd* with :data:`STOP`; False if none is parked there.

        A task that is not parked is running or about to run: the caller
        cancels it instead (its next checkpoint raises ``Cancelled``).
        """
        task = self._parked.pop(fd, None)
        if task is None:
            return False
        trio.lowlevel.reschedule(task, outcome.Value(STOP))
        return True

    async def run(self) -> None:
        """Reschedule parked tasks as their sockets get events, until cancelled."""
        ep = self._ep
        parked = self._parked
        pending = self._pending
        hung_up = self.hung_up
        reschedule = trio.lowlevel.reschedule
        wait_readable = trio.lowlevel.wait_readable
        epfd = ep.fileno()
        while True:
            await wait_readable(epfd)
            for fd, events in ep.poll(0, WAKE_BATCH):
                if events & select.EPOLLRDHUP:
                    hung_up.add(fd)
                task = parked.pop(fd, None)
                if task is None:
                    pending.add(fd)
                else:
                    reschedule(task)


class Waits(NamedTuple):
    """How one connection task waits on its socket, whichever way the engine parks it."""

    readable: Wait
    writable: Wait
    want_write: WantWrite
    #: Descriptors whose peer half-closed since their last edge (the epoll waker's): an
    #: EOF that came with the data just read, in one edge.  Empty where waits are
    #: level-triggered (Trio's own I/O), since a pending EOF wakes those at once.
    hung_up: Container[int]


@contextlib.contextmanager
def _parking(sock: socket.socket, waker: Waker | None) -> Iterator[Waits]:
    """The waits of *sock*: through *waker* (registered meanwhile) or Trio's own I/O manager."""
    if waker is None:
        yield Waits(
            functools.partial(trio.lowlevel.wait_readable, sock),
            functools.partial(trio.lowlevel.wait_writable, sock),
            _no_write_interest,
            (),
        )
        return
    fd = sock.fileno()
    waker.add(fd)
    try:
        wait = functools.partial(waker.wait, fd, waker.aborter(fd))
        yield Waits(wait, wait, functools.partial(waker.want_write, fd), waker.hung_up)
    finally:
        waker.remove(fd)  # before the close: the number may be reused at once


class TaskEngine:
    """Serve echo connections from *listener*, a Trio task each, under *table*'s limits.

    *portable* chooses how a connection task waits: ``False`` through the private
    epoll waker (``--engine tasks``, Linux), ``True`` through Trio's own I/O manager
    (``--engine trio``, anywhere).
    """

    def __init__(
        self,
        listener: socket.socket,
        table: ConnTable,
        on_task_start: OnTaskStart | None = None,
        *,
        portable: bool = False,
        proxy: ProxyPolicy | None = None,
        refusals: ProxyCounts | None = None,
    ) -> None:
        self.name: Final = "trio" if portable else "tasks"
        self._portable = portable
        self._listener = listener
        self._table = table
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._on_task_start = on_task_start
        #: With a policy, each connection task first reads the PROXY header (see _greet).
        self._proxy = proxy
        self._refusals = refusals or ProxyRefusals("tcp echo").listener("tcp")
        self._greeting = 0

    async def run(self) -> None:
        """Accept and serve until cancelled; on cancellation every connection is closed.

        Cancellation: the usual way to stop it.  Connection tasks (and the
        waker) live in this function's nursery, so they are all gone when it
        returns.
        """
        with contextlib.ExitStack() as stack:
            waker = None if self._portable else Waker(stack.enter_context(select.epoll()))
            async with trio.open_nursery() as nursery:
                if waker is not None:
                    nursery.start_soon(waker.run, name="tcp echo waker")

                def on_accept(sock: socket.socket, peer: str) -> None:
                    if refuse_untrusted(self._proxy, self._refusals, sock, peer):
                        return
                    if self._proxy is not None:
                        if len(self._table) + self._greeting >= self._table.limit:
                            self._table.refusals.refuse(peer)
                            sock.close()
                        else:
                            self._greeting += 1
                            nursery.start_soon(
                                self._greet, sock, peer, waker, self._proxy, name=f"tcp {peer}"
                            )
                        return
                    scope = trio.CancelScope()
                    conn = self._table.admit(peer, _stopper(sock, scope, waker))
                    if conn is None:
                        sock.close()
                        return
                    nursery.start_soon(self._serve, sock, conn, scope, waker, name=f"tcp {peer}")

                await accept_forever(self._listener, on_accept)

    async def _greet(
        self, sock: socket.socket, peer: str, waker: Waker | None, proxy: ProxyPolicy
    ) -> None:
        """Read the PROXY header, then serve the connection as the client it carries.

        Cancellation: closes the socket; a connection not yet admitted leaves no trace.
        """
        reader = HeaderReader(proxy)
        try:
            header = await greet(
                sock,
                peer,
                self._refusals,
                functools.partial(self._read_header, sock, waker, reader),
            )
        finally:
            self._greeting -= 1
        if header is None:
            return
        scope = trio.CancelScope()
        conn = self._table.admit(carried_peer(header, peer), _stopper(sock, scope, waker))
        if conn is None:
            sock.close()
            return
        await self._serve(sock, conn, scope, waker, reader.leftover)

    async def _read_header(
        self, sock: socket.socket, waker: Waker | None, reader: HeaderReader
    ) -> ProxyHeader:
        """Read until *reader* has the whole header; the bytes after it stay in its ``leftover``.

        Raises:
            ProxyProtocolError: a bad header, EOF or a reset before it, or none
                within :data:`HEADER_TIMEOUT`.
        """
        with _parking(sock, waker) as waits, trio.move_on_after(HEADER_TIMEOUT):
            while True:
                try:
                    data = sock.recv(MAX_HEADER)
                except BlockingIOError:
                    await waits.readable()
                    continue
                except OSError as exc:
                    raise ProxyProtocolError(
                        f"connection failed before its PROXY header: {exc}"
                    ) from None
                header = reader.receive_data(data)
                if isinstance(header, ProxyHeader):
                    return header
        raise ProxyProtocolError(f"no whole PROXY header within {HEADER_TIMEOUT:g} s")

    async def _serve(
        self,
        sock: socket.socket,
        conn: Conn,
        scope: trio.CancelScope,
        waker: Waker | None,
        first: bytes = b"",
    ) -> None:
        if self._on_task_start is not None:
            self._on_task_start(conn.id)
        reason = "closed"
        try:
            with scope:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with _parking(sock, waker) as waits:
                    if first:  # bytes that came with the PROXY header
                        conn.bytes_in += len(first)
                        conn.msgs += 1
                        if await _send_rest(sock, first, waits.writable, waits.want_write):
                            conn.bytes_out += len(first)
                            await self._echo(sock, conn, waits)
                    else:
                        await self._echo(sock, conn, waits)
                reason = "eof"
        except PEER_GONE as exc:
            reason = self._table.socket_failed(conn, exc, gone=True)
        except Exception as exc:  # the per-connection boundary: only this one ends
            reason = "error"
            log.error("tcp echo: connection from %s failed: %s", conn.peer, describe(exc))
        finally:
            sock.close()
            self._table.close(conn, reason)

    async def _echo(
        self,
        sock: socket.socket,
        conn: Conn,
        waits: Waits,
    ) -> None:
        """Echo until the peer half-closes, then send what is left, EOF, and return.

        Also returns, at once and without EOF, when a wait says :data:`STOP`.
        """
        wait_readable = waits.readable
        wait_writable = waits.writable
        want_write = waits.want_write
        hung_up = waits.hung_up
        buf = self._buf
        size = len(buf)
        view = self._view
        recv_into = sock.recv_into
        send = sock.send
        fd = sock.fileno()
        budget = FAIRNESS_BUDGET
        while True:
            try:
                n = recv_into(buf)
            except BlockingIOError:
                budget = FAIRNESS_BUDGET
                if await wait_readable() is STOP:
                    return
                continue
            if n == 0:
                # Everything read so far was sent before this read: only EOF is left.
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the peer is gone already (ENOTCONN): the close is all that is left
                return
            conn.bytes_in += n
            conn.msgs += 1
            try:
                sent = send(view[:n] if n == size else buf[:n])
            except BlockingIOError:
                sent = 0
            if sent < n:
                # Copy out before waiting: other tasks reuse the shared buffer.
                if not await _send_rest(sock, bytes(view[sent:n]), wait_writable, want_write):
                    return
                conn.bytes_out += n
                continue  # the wait may have eaten a read edge: read before parking
            conn.bytes_out += n
            if n < size:
                if fd in hung_up:
                    continue  # the EOF that came with this data is still to be read
                # A short read emptied the socket, so park now (edge-triggered: must;
                # level-triggered: saves a read that would fail with EAGAIN).
                budget = FAIRNESS_BUDGET
                if await wait_readable() is STOP:
                    return
                continue
            budget -= 1
            if budget == 0:
                budget = FAIRNESS_BUDGET
                await trio.lowlevel.checkpoint()


def _no_write_interest(_on: bool) -> None:
    """Trio's own wait_writable needs no standing registration: nothing to switch."""


async def _send_rest(
    sock: socket.socket, data: bytes, wait_writable: Wait, want_write: WantWrite
) -> bool:
    """Send all of *data*, waiting for room; meanwhile nothing more is read (backpressure).

    Returns:
        True once all is sent; False if a wait said :data:`STOP` (the rest is
        dropped: the connection is being cut).

    Cancellation: may leave part of *data* unsent; the caller closes the
    connection, it does not resume.
    """
    rest = memoryview(data)
    want_write(True)
    try:
        while rest:
            if await wait_writable() is STOP:
                return False
            try:
                rest = rest[sock.send(rest) :]
            except BlockingIOError:
                continue
    finally:
        want_write(False)
    return True


def _stopper(
    sock: socket.socket, scope: trio.CancelScope, waker: Waker | None
) -> Callable[[str], None]:
    """The abort a connection registers in its table: wake its task with :data:`STOP`.

    Through the waker only when the task is parked there; otherwise (running,
    or the portable engine, whose tasks wait in Trio's I/O manager) its scope
    is cancelled.
    """
    if waker is None:
        return lambda _reason: scope.cancel()
    fd = sock.fileno()

    def abort(_reason: str) -> None:
        if not waker.stop(fd):
            scope.cancel()

    return abort
