"""The multiplexed websocket echo engine: one Trio task serves every ``/ws/echo`` connection.

Why: a websocket connection driven by its own tasks (websockets' Trio
connection runs a reader task and a writer per connection) pays a few task
switches, a ``SocketStream`` call and an epoll re-registration per message.
Here, as in :mod:`app.echo.epoll`, one task waits for a private epoll object
to become readable and serves the ready sockets with plain non-blocking calls.
Each connection is the websockets library's sans-IO ``ServerProtocol`` (the
same RFC 6455 framing, validation and close handshake as the library's own
servers) plus a socket, its :class:`~app.echo.conns.Conn`, and at most one
pending partial write.

Who does what:

* The web front's per-connection task does the opening handshake
  (:meth:`WsEchoEngine.handshake`): it is bounded by a timeout, happens once
  per connection, and may await.  On success it hands the socket to the
  engine and ends; from then on the connection has no task of its own.
* The engine echoes each message as one frame, text as text, binary as
  binary: fragments are put together first, bounded as a whole by
  ``--max-message-size`` (1009 beyond it).  Text must be UTF-8 (1007 if
  not).  Pings are answered and close frames echoed by the protocol object.
* Limits and counters are the ``ws`` :class:`~app.echo.conns.ConnTable`'s:
  connection limit (503 at the handshake), idle sweep (closed with 1000
  ``idle``), feed events on open and close.  When the server drains, every
  connection is closed with 1001.

Backpressure: while a write is pending the socket is polled for writability
only, so a client that does not read stops being read; memory per connection
is bounded by one message being assembled plus one read's worth of echo.

Timers are one sweep, not a timer per connection: every
:data:`SWEEPS_PER_INTERVAL`-th of the shorter of ``--ws-ping-interval`` and
``--write-timeout``, the engine pings connections that are due (a ping not
answered by the next one closes 1011, as on the other paths) and cuts those
whose pending write made no progress for ``--write-timeout``.
"""

from __future__ import annotations

import codecs
import logging
import select
import socket
from collections import deque
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import trio
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN, SEND_EOF, Event
from websockets.server import ServerProtocol
from websockets.typing import BytesLike

from app.echo import RECV_SIZE
from app.echo.conns import Conn, ConnTable
from app.echo.multiplex import MAX_EVENTS, Link, Multiplexed
from app.errors import describe

log = logging.getLogger(__name__)
# websockets logs every frame at debug and each close at info; neither is worth a line here.
_protocol_log = logging.getLogger("app.web.wsecho.protocol")
_protocol_log.setLevel(logging.WARNING)

#: The one path this engine serves.
ECHO_PATH: Final = "/ws/echo"
# A client has this long to send its whole handshake request (as on the other paths).
HANDSHAKE_TIMEOUT: Final = 10.0
# After our close frame, the peer has this long to answer before the socket is just closed.
CLOSE_TIMEOUT: Final = 1.0
# Keepalive and write timeouts are checked this many times per (shorter) period,
# so each holds to within a quarter of itself...
SWEEPS_PER_INTERVAL: Final = 4
# ...but no more often than this (seconds): a sweep walks every connection.
MIN_SWEEP: Final = 0.05

OP_CONT: Final = Opcode.CONT
OP_TEXT: Final = Opcode.TEXT
OP_BINARY: Final = Opcode.BINARY

OP_PONG: Final = Opcode.PONG


class _Link(Link):
    """One websocket as the engine sees it."""

    __slots__ = ("next_ping", "on_close", "parts", "pinged", "protocol", "stalled_since")

    def __init__(
        self,
        sock: socket.socket,
        protocol: ServerProtocol,
        conn: Conn,
        on_close: Callable[[], None],
        next_ping: float,
    ) -> None:
        super().__init__(sock, conn)
        self.protocol = protocol
        self.on_close = on_close
        #: When the socket last took none of a pending write (for the write timeout).
        self.stalled_since = 0.0
        #: The first frame's opcode and the fragments of a message being put together.
        self.parts: tuple[Opcode, list[BytesLike]] | None = None
        #: When the next keepalive ping is due, and whether one is unanswered.
        self.next_ping = next_ping
        self.pinged = False


class WsEchoEngine(Multiplexed[_Link]):
    """Echo websocket messages on every adopted connection, in one task, under *table*'s limits.

    *draining* is the server's drain signal: when it is set every connection
    is closed with 1001.
    """

    name: Final = "epoll"

    def __init__(
        self,
        table: ConnTable,
        max_message_size: int,
        draining: trio.Event,
        *,
        ping_interval: float,
        write_timeout: float,
    ) -> None:
        super().__init__(table)
        self._max_size = max_message_size
        self._draining = draining
        self._ping_interval = ping_interval
        self._write_timeout = write_timeout
        self._buf = bytearray(RECV_SIZE)
        # Connections whose close frame is out, oldest first, each with the time
        # by which its socket is closed whether the peer answered or not.
        self._closing: deque[tuple[float, _Link]] = deque()
        self._wait_scope: trio.CancelScope | None = None

    # -- the front's side: one handshake per connection, in the front's task -------------

    async def serve(
        self,
        stream: trio.abc.Stream,
        sock: socket.socket,
        peer: str,
        on_close: Callable[[], None],
    ) -> bool:
        """Do the opening handshake on *stream*, then hand the connection to the engine.

        *sock* is the stdlib socket under *stream*.  Returns True once the
        engine owns the socket: the caller must not touch it any more, and
        *on_close* runs once when the engine closes it.  False means the
        handshake failed or was refused (404, 503, 400, timeout): the answer
        was sent and the caller closes the socket.

        Cancellation: safe; nothing is handed over, the caller closes the socket.
        """
        protocol = ServerProtocol(max_size=self._max_size, logger=_protocol_log)
        request: Request | None = None
        early: list[Event] = []
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            while request is None:
                data = await stream.receive_some(RECV_SIZE)
                if not data:
                    return False
                protocol.receive_data(data)
                events = protocol.events_received()
                if events:
                    first, *early = events
                    assert isinstance(first, Request)
                    request = first
                elif protocol.handshake_exc is not None:
                    await _send_queued(stream, protocol)
                    return False
        if request is None:
            log.debug("ws echo: %s sent no handshake within %.0f s", peer, HANDSHAKE_TIMEOUT)
            return False
        if urlsplit(request.path).path != ECHO_PATH:
            protocol.send_response(protocol.reject(404, "404\n"))
            await _send_queued(stream, protocol)
            return False
        fd = sock.fileno()
        conn = self._table.admit(peer, lambda reason: self._abort(fd, reason))
        if conn is None:
            protocol.send_response(protocol.reject(503, "503\n"))
            await _send_queued(stream, protocol)
            return False
        try:
            protocol.send_response(protocol.accept(request))
            await _send_queued(stream, protocol)
        except BaseException:
            self._table.close(conn, "handshake failed")
            raise
        if protocol.state is not OPEN:
            # Not a valid upgrade: websockets answered 400 or 426.
            self._table.close(conn, "handshake failed")
            return False
        link = _Link(sock, protocol, conn, on_close, trio.current_time() + self._ping_interval)
        self._adopt(link, early)
        return True

    # -- the engine's task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve adopted connections until cancelled; on the way out every socket is closed.

        Ready (``task_status.started()``) once connections can be handed over.
        When the server drains, every connection gets a 1001 close frame and
        at most :data:`CLOSE_TIMEOUT` to answer it.

        Cancellation: the usual way to stop it.
        """
        with select.epoll() as ep:
            self._epoll = ep
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_drain)
                    nursery.start_soon(self._sweep)
                    task_status.started()
                    await self._loop(ep)
            finally:
                self.drop_all()
                self._epoll = None

    async def _watch_drain(self) -> None:
        await self._draining.wait()
        for link in list(self._links.values()):
            self._close(link, CloseCode.GOING_AWAY, "server shutting down")

    async def _sweep(self) -> None:
        """Keepalive pings and write timeouts, for every connection, a few times a period."""
        period = min(self._ping_interval, self._write_timeout) / SWEEPS_PER_INTERVAL
        while True:
            await trio.sleep(max(period, MIN_SWEEP))
            now = trio.current_time()
            for link in list(self._links.values()):
                if link.unlinked:
                    continue
                if link.pending is not None:
                    if now - link.stalled_since >= self._write_timeout:
                        log.info(
                            "ws echo: %s took no data for %.1f s; closing it",
                            link.conn.peer,
                            self._write_timeout,
                        )
                        self._drop(link, "write timeout")
                    continue
                if now < link.next_ping or link.protocol.state is not OPEN:
                    continue
                link.next_ping = now + self._ping_interval
                if link.pinged:
                    log.info("ws echo: %s: keepalive ping timeout; closed it", link.conn.peer)
                    link.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    self._expect_close(link)
                else:
                    link.pinged = True
                    link.protocol.send_ping(b"")
                self._write(link)

    async def _loop(self, ep: select.epoll) -> None:
        links = self._links
        closing = self._closing
        wait_readable = trio.lowlevel.wait_readable
        epfd = ep.fileno()
        while True:
            deadline = closing[0][0] if closing else float("inf")
            with trio.CancelScope(deadline=deadline) as self._wait_scope:
                await wait_readable(epfd)
            self._wait_scope = None
            for fd, _events in ep.poll(0, MAX_EVENTS):
                link = links.get(fd)
                if link is None:
                    continue  # closed earlier in this batch
                try:
                    if link.pending is not None:
                        self._drain(link)
                    else:
                        self._read(link)
                except Exception as exc:  # the per-connection boundary: only this one ends
                    self._failed(link, exc)
            if closing:
                now = trio.current_time()
                while closing and closing[0][0] <= now:
                    _, link = closing.popleft()
                    if not link.unlinked:
                        self._drop(link, "close timeout")

    def _adopt(self, link: _Link, early: list[Event]) -> None:
        self._register(link)
        if link.conn.abort_reason:
            self._close(link, CloseCode.NORMAL_CLOSURE, link.conn.abort_reason)
        elif self._draining.is_set():
            self._close(link, CloseCode.GOING_AWAY, "server shutting down")
        elif early:
            self._echo(link, early)

    def _read(self, link: _Link) -> None:
        n = self._recv(link, self._buf)
        if n is None:
            return
        protocol = link.protocol
        if n == 0:
            protocol.receive_eof()
            self._drop(link, self._reason(link))
            return
        protocol.receive_data(self._buf[:n])
        self._echo(link, protocol.events_received())

    def _echo(self, link: _Link, events: list[Event]) -> None:
        """Echo the messages completed by *events*, then write whatever the protocol has to send."""
        protocol = link.protocol
        conn = link.conn
        for frame in events:
            if protocol.state is not OPEN:
                break
            assert isinstance(frame, Frame)
            opcode = frame.opcode
            data = frame.data
            conn.bytes_in += len(data)
            if opcode is OP_CONT:
                if link.parts is None:
                    continue  # unreachable: the protocol failed the connection (1002)
                link.parts[1].append(data)
                if not frame.fin:
                    continue
                opcode, parts = link.parts
                link.parts = None
                data = b"".join(parts)
            elif opcode is OP_BINARY or opcode is OP_TEXT:
                if not frame.fin:
                    link.parts = (opcode, [data])
                    continue
            else:
                if opcode is OP_PONG:
                    link.pinged = False
                continue  # ping, close: the protocol has answered them
            if opcode is OP_TEXT:
                try:
                    codecs.utf_8_decode(data, "strict", True)
                except UnicodeDecodeError as exc:
                    protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                    break
                protocol.send_text(data)
            else:
                protocol.send_binary(data)
            conn.bytes_out += len(data)
            conn.msgs += 1
        self._write(link)

    def _write(self, link: _Link) -> None:
        """Send what the protocol has queued; park what the socket does not take."""
        out = link.protocol.data_to_send()
        if not out:
            return
        eof = out[-1] == SEND_EOF
        if eof:
            out.pop()
        data = out[0] if len(out) == 1 else b"".join(out)
        if link.pending is not None:
            link.pending = memoryview(bytes(link.pending) + data)
        elif data:
            sent = self._send(link, data)
            if sent is None:
                return
            if sent < len(data):
                self._park(link, memoryview(data)[sent:])
                link.stalled_since = trio.current_time()
        if eof and link.pending is None:
            self._half_close(link)

    def _drain(self, link: _Link) -> None:
        """The socket became writable: send what is pending; once out, half-close if closing."""
        sent = self._flush(link)
        if not sent:
            return  # none taken (the stall goes on), or the connection was lost
        if link.pending is not None:
            link.stalled_since = trio.current_time()
        elif link.protocol.eof_sent:
            self._half_close(link)

    def _half_close(self, link: _Link) -> None:
        """Our side is done (close frame out): send EOF, then read and discard until the peer's.

        Closing with unread bytes in the socket would make the kernel send a
        reset, which can overtake the close frame; so the socket stays open,
        read and discarded by the protocol, until the peer closes too or
        :data:`CLOSE_TIMEOUT` passes.
        """
        try:
            link.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(link, self._reason(link))  # already reset: nothing to wait for
            return
        self._expect_close(link)

    def _failed(self, link: _Link, exc: Exception) -> None:
        """A bug or the unforeseen while serving *link*: log one line, end it alone."""
        log.error("ws echo: connection from %s failed: %s", link.conn.peer, describe(exc))
        log.debug("ws echo: connection from %s failure", link.conn.peer, exc_info=True)
        self._drop(link, "error")

    def _abort(self, fd: int, reason: str) -> None:
        """The table cuts a connection (idle): close it with 1000 and the reason."""
        link = self._links.get(fd)
        if link is not None:
            self._close(link, CloseCode.NORMAL_CLOSURE, reason)
        # Not adopted yet: the handshake finishes, then _adopt sees abort_reason.

    def _close(self, link: _Link, code: int, reason: str) -> None:
        """Start the closing handshake; the socket goes when the peer answers, or at the timeout."""
        if link.protocol.state is not OPEN:
            return
        link.protocol.send_close(code, reason)
        self._expect_close(link)
        self._write(link)

    def _expect_close(self, link: _Link) -> None:
        deadline = trio.current_time() + CLOSE_TIMEOUT
        self._closing.append((deadline, link))
        scope = self._wait_scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    @staticmethod
    def _reason(link: _Link) -> str:
        if link.conn.abort_reason:
            return link.conn.abort_reason
        protocol = link.protocol
        close = protocol.close_rcvd or protocol.close_sent
        return f"closed {close.code}" if close is not None else "closed 1006"

    def _dropped(self, link: _Link) -> None:
        link.on_close()


async def _send_queued(stream: trio.abc.Stream, protocol: ServerProtocol) -> None:
    """Send the handshake answer the protocol queued (a trailing EOF marker is the caller's)."""
    for data in protocol.data_to_send():
        if data:
            await stream.send_all(data)
