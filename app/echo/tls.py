"""The TLS echo engine: one Trio task serves every TLS connection through a private epoll.

Why not ``trio.SSLStream`` per task (``serve_ssl_over_tcp``): each message
then costs a task switch, an epoll re-registration, and a round of Python
calls through ``SSLObject`` and its two ``MemoryBIO`` buffers (read the
socket, feed the BIO, decrypt, encrypt, drain the BIO, send).  Measured
on this machine, that is 0.63x of asyncio + uvloop at 64 B.  Here, as in
:mod:`app.echo.epoll`, one task waits for a private epoll object and serves
the ready sockets with plain non-blocking calls; and each socket is a
non-blocking ``ssl.SSLSocket``, so OpenSSL reads and writes the file
descriptor itself: one ``SSL_read`` and one ``SSL_write`` per echo, no
buffer copies in Python.  This is what the gevent peer does per greenlet,
without the greenlet.

A connection's life:

1. Accepted (within ``--max-connections``, handshakes included), wrapped
   with the echo context (TLS 1.2/1.3), and handshaken step by step as its
   socket becomes ready.  A handshake not done within
   ``--tls-handshake-timeout`` seconds, or one that fails, is closed and
   counted (``Hub.handshakes["echo"]``), and logged at debug: a port scanner
   or a client that distrusts our certificate is routine, not news.
2. Handshake done: the connection enters the ``tls`` table, whose
   ``conn_open`` carries the TLS version, cipher, SNI and ALPN.
3. Echo: read what OpenSSL has decrypted (at most one buffer), write it
   back.  ``SSL_write`` either takes all of it or asks to be called again
   with the same bytes: those are kept and the socket is polled for writing
   only, so a peer that does not read stops being read (backpressure, one
   buffer of memory at most).
4. The peer's ``close_notify`` is TLS's half-close: everything read so far
   has been echoed; we answer with our own ``close_notify``, then FIN, and
   close.  A TCP FIN without ``close_notify`` (a truncation, RFC 8446
   section 6.1) closes without a goodbye, reason ``eof (no close_notify)``.

Rules: the engine's task is the only one touching these sockets; nothing
between two checkpoints awaits.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import ssl
from collections import deque
from typing import Any, Final

import trio

from app.certs import tls_info
from app.echo import RECV_SIZE
from app.echo.conns import Conn, ConnTable, HandshakeCounts
from app.echo.multiplex import MAX_EVENTS, POLL_IN, POLL_OUT, Link, Multiplexed
from app.echo.proxy import ProxyCounts, ProxyPolicy, ProxyRefusals, carried_peer
from app.echo.proxyread import greet, read_proxy_header, refuse_untrusted
from app.errors import describe
from app.net import ACCEPT_CAPACITY_SLEEP, accept_batch

log = logging.getLogger(__name__)

# OpenSSL hands out at most one TLS record (16 KiB of plaintext) per SSL_read;
# reading on while records are already decrypted and waiting fills the buffer
# with up to this many before one echo write.  The socket itself may hold more:
# epoll is level-triggered, so those come at the next wake-up.
MAX_RECORDS_PER_READ: Final = RECV_SIZE // (16 * 1024)

# Handshake steps taken per wake-up.  The step that answers a ClientHello costs a key
# exchange and a signature, some 0.3-0.5 ms of CPU against ~5 us for an echo: 512 of them
# in one batch (a connect storm) would hold the loop for a quarter of a second.  The rest
# stay readable (epoll is level-triggered) and are taken at the next wake-ups, while
# established connections and other tasks are served in between.
MAX_HANDSHAKE_STEPS: Final = 64

#: Why a connection ended, as ``conn_close`` says it.
EOF_CLEAN: Final = "eof"
EOF_TRUNCATED: Final = "eof (no close_notify)"


class _Handshake:
    """A connection whose TLS handshake is not done yet (no table entry, no feed event)."""

    __slots__ = ("deadline", "done", "peer", "sock")

    def __init__(self, sock: ssl.SSLSocket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        #: Set when it finished either way, so the timeout queue can skip it.
        self.done = False


class _Link(Link):
    """An established TLS echo connection."""

    __slots__ = ("eof", "tls")

    sock: ssl.SSLSocket

    def __init__(self, sock: ssl.SSLSocket, conn: Conn) -> None:
        super().__init__(sock, conn)
        #: How the peer ended (EOF_CLEAN or EOF_TRUNCATED) while an echo was still pending.
        self.eof = ""
        # The C-level SSL object under the SSLSocket.  SSLSocket.recv_into and
        # send each go through two Python frames of checks before reaching it
        # (closed? still TLS? flags?), a sizeable part of a 64 B echo; the hot
        # path calls it directly.  ``_sslobj`` has been there since Python 3.7;
        # the TLS tests fail loudly if that changes.
        self.tls: Any = sock._sslobj  # type: ignore[attr-defined]


class TlsEchoEngine(Multiplexed[_Link]):
    """Serve TLS echo connections from *listener* in one task, under *table*'s limits.

    *context* is the server's echo context (:func:`app.certs.server_tls`);
    *counts* receives the handshake counters.
    """

    name: Final = "tls"

    def __init__(
        self,
        listener: socket.socket,
        table: ConnTable,
        context: ssl.SSLContext,
        handshake_timeout: float,
        counts: HandshakeCounts,
        proxy: ProxyPolicy | None = None,
        refusals: ProxyCounts | None = None,
    ) -> None:
        super().__init__(table)
        #: Who must send a PROXY header before TLS (None: --proxy-protocol off).
        self._proxy = proxy
        self._proxy_refusals = refusals or ProxyRefusals("tls echo").listener("tls")
        # Connections still sending their PROXY header (each in a short task of its own).
        self._greeting = 0
        self._nursery: trio.Nursery | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._listener = listener
        self._lfd = listener.fileno()
        self._context = context
        self._handshake_timeout = handshake_timeout
        self._counts = counts
        self._handshakes: dict[int, _Handshake] = {}
        # Handshakes by deadline; every one has the same timeout, so arrival order is
        # deadline order and expiry is a look at the head.  Finished ones are skipped.
        self._deadlines: deque[_Handshake] = deque()
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        self._accept_paused_until = 0.0

    async def run(self) -> None:
        """Accept, handshake and echo until cancelled; on the way out every socket is closed.

        Cancellation: the usual way to stop it; connections are closed without
        a ``close_notify`` (the server is going away).
        """
        with select.epoll() as ep:
            self._epoll = ep
            ep.register(self._lfd, POLL_IN)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery  # for PROXY greetings only
                    await self._loop(ep)
            finally:
                for hs in list(self._handshakes.values()):
                    self._end_handshake(hs)
                self.drop_all()
                self._epoll = None

    async def _loop(self, ep: select.epoll) -> None:
        lfd = self._lfd
        links = self._links
        handshakes = self._handshakes
        epfd = ep.fileno()
        wait_readable = trio.lowlevel.wait_readable
        while True:
            wake_at = self._deadlines[0].deadline if self._deadlines else float("inf")
            if self._accept_paused_until:
                wake_at = min(wake_at, self._accept_paused_until)
            if wake_at == float("inf") and self._proxy is None:
                await wait_readable(epfd)
            else:
                # With PROXY on, a greeting task adds handshakes while the loop waits: it
                # moves this deadline (see _start_handshake) so their timeout holds.
                with trio.CancelScope(deadline=wake_at) as self._wait_scope:
                    await wait_readable(epfd)
                self._wait_scope = None
                self._expire(trio.current_time())
            steps = 0
            for fd, _events in ep.poll(0, MAX_EVENTS):
                if fd == lfd:
                    if accept_batch(self._listener, self._admit):
                        # Out of descriptors: stop polling the listener for a while.
                        ep.modify(lfd, 0)
                        self._accept_paused_until = trio.current_time() + ACCEPT_CAPACITY_SLEEP
                    continue
                try:
                    link = links.get(fd)
                    if link is not None:
                        if link.pending is not None:
                            self._flush_tls(link)
                        else:
                            self._echo(link)
                        continue
                    hs = handshakes.get(fd)
                    if hs is not None and steps < MAX_HANDSHAKE_STEPS:
                        steps += 1
                        self._step(hs)
                except Exception as exc:  # the per-connection boundary: only this one ends
                    self._unforeseen(fd, exc)
            # Handshakes end mostly in the order they began: forget finished ones at the head
            # now rather than at their deadline, so that the queue stays short.
            deadlines = self._deadlines
            while deadlines and deadlines[0].done:
                deadlines.popleft()

    def _expire(self, now: float) -> None:
        """Close handshakes past their deadline; resume accepting after a pause."""
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            assert self._epoll is not None
            self._epoll.modify(self._lfd, POLL_IN)
        deadlines = self._deadlines
        while deadlines and (deadlines[0].done or deadlines[0].deadline <= now):
            hs = deadlines.popleft()
            if hs.done:
                continue
            self._counts.timed_out += 1
            log.debug(
                "tls echo: %s did not finish its handshake within %g s; closed it",
                hs.peer,
                self._handshake_timeout,
            )
            self._end_handshake(hs)

    # -- handshakes ------------------------------------------------------------------------

    def _admit(self, sock: socket.socket, peer: str) -> None:
        table = self._table
        if len(table) + len(self._handshakes) + self._greeting >= table.limit:
            table.refusals.refuse(peer)
            sock.close()
            return
        proxy = self._proxy
        if refuse_untrusted(proxy, self._proxy_refusals, sock, peer):
            return
        if proxy is not None:
            assert self._nursery is not None
            self._greeting += 1
            self._nursery.start_soon(self._greet, sock, peer, proxy, name=f"tls echo {peer}")
            return
        self._start_handshake(sock, peer)

    async def _greet(self, sock: socket.socket, peer: str, proxy: ProxyPolicy) -> None:
        """Read the PROXY header (exactly it: TLS starts right after), then hand over.

        A header is rare work next to echoing, and bounded by HEADER_TIMEOUT: a task
        each keeps the engine's loop free of a state that epoll cannot wait on (a
        header that came in part, peeked but not taken).

        Cancellation: closes the socket (the engine is going away).
        """
        read = functools.partial(read_proxy_header, trio.socket.from_stdlib_socket(sock), proxy)
        try:
            header = await greet(sock, peer, self._proxy_refusals, read)
        finally:
            self._greeting -= 1
        if header is not None:
            self._start_handshake(sock, carried_peer(header, peer))

    def _start_handshake(self, sock: socket.socket, peer: str) -> None:
        tls_sock = wrap_server_side(self._context, sock, peer)
        if tls_sock is None:
            return
        hs = _Handshake(tls_sock, peer, trio.current_time() + self._handshake_timeout)
        fd = tls_sock.fileno()
        self._handshakes[fd] = hs
        self._deadlines.append(hs)
        assert self._epoll is not None
        self._epoll.register(fd, POLL_IN)
        scope = self._wait_scope
        if scope is not None and hs.deadline < scope.deadline:
            scope.deadline = hs.deadline

    def _step(self, hs: _Handshake) -> None:
        """Take the handshake as far as the socket allows; on success, start echoing."""
        sock = hs.sock
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._poll_fd(sock, POLL_IN)
            return
        except ssl.SSLWantWriteError:
            self._poll_fd(sock, POLL_OUT)
            return
        except (ssl.SSLError, OSError) as exc:
            self._counts.failed += 1
            log.debug("tls echo: handshake with %s failed: %s", hs.peer, _reason(exc))
            self._end_handshake(hs)
            return
        info = tls_info(sock)
        self._counts.done += 1
        fd = sock.fileno()
        del self._handshakes[fd]
        hs.done = True
        conn = self._table.admit(hs.peer, lambda reason: self._abort(fd, reason), tls=info)
        if conn is None:  # unreachable: handshakes count against the limit at accept
            assert self._epoll is not None
            self._epoll.unregister(fd)
            sock.close()
            return
        link = _Link(sock, conn)
        self._links[fd] = link
        self._poll_fd(sock, POLL_IN)
        # The client's first bytes may have come with its Finished message.
        self._echo(link)

    def _poll_fd(self, sock: ssl.SSLSocket, events: int) -> None:
        assert self._epoll is not None
        self._epoll.modify(sock.fileno(), events)

    def _end_handshake(self, hs: _Handshake) -> None:
        """Close a connection that never finished its handshake."""
        hs.done = True
        fd = hs.sock.fileno()
        if self._handshakes.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)
        hs.sock.close()

    # -- echo ------------------------------------------------------------------------------

    def _echo(self, link: _Link) -> None:
        """Read what is decrypted (up to one buffer) and write it back; handle close_notify."""
        tls = link.tls
        view = self._view
        filled = 0
        eof = ""
        try:
            for _ in range(MAX_RECORDS_PER_READ):
                n = tls.read(RECV_SIZE - filled, view[filled:] if filled else self._buf)
                if n == 0:
                    eof = EOF_CLEAN  # close_notify: the peer's half-close
                    break
                filled += n
                if filled == RECV_SIZE or not tls.pending():
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing more decrypted yet (or a key update in flight)
        except ssl.SSLEOFError:
            eof = EOF_TRUNCATED
        except (ssl.SSLError, OSError) as exc:
            self._failed(link, exc)
            return
        conn = link.conn
        if filled:
            conn.bytes_in += filled
            conn.msgs += 1
            try:
                sent = tls.write(view[:filled])
            except ssl.SSLWantWriteError:
                # SSL_write wants to be called again with these same bytes.
                link.pending = memoryview(bytes(view[:filled]))
                link.eof = eof
                self._poll_for(link, POLL_OUT)
                return
            except (ssl.SSLError, OSError) as exc:
                self._failed(link, exc)
                return
            conn.bytes_out += sent
        if eof == EOF_CLEAN:
            self._finish(link)
        elif eof:
            self._drop(link, EOF_TRUNCATED)

    def _flush_tls(self, link: _Link) -> None:
        """The socket became writable: call SSL_write again with the pending bytes."""
        pending = link.pending
        assert pending is not None
        try:
            sent = link.tls.write(pending)
        except ssl.SSLWantWriteError:
            return
        except (ssl.SSLError, OSError) as exc:
            self._failed(link, exc)
            return
        link.conn.bytes_out += sent
        link.pending = None
        if link.eof == EOF_CLEAN:
            self._finish(link)
        elif link.eof:
            self._drop(link, link.eof)
        else:
            self._poll_for(link, POLL_IN)

    def _finish(self, link: _Link) -> None:
        """The peer sent close_notify and all is echoed: answer with ours, send FIN, close."""
        self._goodbye(link)
        self._drop(link, EOF_CLEAN)

    @staticmethod
    def _goodbye(link: _Link) -> None:
        """Best effort: our close_notify, then FIN.  A peer already gone needs neither."""
        sock = link.sock
        try:
            sock.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass  # close_notify sent (the peer's not read yet), or the peer is gone
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset: closing is all that is left

    def _failed(self, link: _Link, exc: OSError) -> None:
        """A TLS or socket error on an established connection: it alone ends."""
        if isinstance(exc, ssl.SSLError):
            # A TLS protocol error from the peer (bad record MAC, alert): its fault, routine.
            log.debug("tls echo: %s: %s", link.conn.peer, _reason(exc))
            self._drop(link, "tls error")
        else:
            self._lost(link, exc)

    def _unforeseen(self, fd: int, exc: Exception) -> None:
        """A bug or the unforeseen while serving *fd*: log one line, end that connection alone."""
        link = self._links.get(fd)
        hs = self._handshakes.get(fd)
        peer = link.conn.peer if link is not None else hs.peer if hs is not None else "?"
        log.error("tls echo: connection from %s failed: %s", peer, describe(exc))
        log.debug("tls echo: connection from %s failure", peer, exc_info=True)
        if link is not None:
            self._drop(link, "error")
        elif hs is not None:
            self._end_handshake(hs)

    def _abort(self, fd: int, reason: str) -> None:
        """The table cuts a connection (idle, shutdown): say goodbye briefly, then close."""
        link = self._links.get(fd)
        if link is not None:
            self._goodbye(link)
            self._drop(link, reason)


def wrap_server_side(
    context: ssl.SSLContext, sock: socket.socket, peer: str
) -> ssl.SSLSocket | None:
    """*sock* (accepted, non-blocking) as a server-side ``SSLSocket``, its handshake not begun.

    Returns None, with *sock* closed and one debug line, when the peer has gone
    (reset) before it could be wrapped.

    Why the ``getpeername()`` first: CPython's ``wrap_socket`` moves the
    descriptor from *sock* into the new ``SSLSocket`` and then, for a peer that
    has already reset, raises ``ECONNRESET`` without closing it; the orphan is
    held in a reference cycle (the exception's traceback) until the garbage
    collector runs, so a flood of resets could pile up open descriptors.  Asking
    first leaves that only to a reset landing between the two calls.
    """
    try:
        sock.getpeername()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
        )
    except OSError as exc:  # reset before we got to it
        log.debug("tls echo: %s went away before its handshake: %s", peer, exc)
        sock.close()
        return None


def _reason(exc: BaseException) -> str:
    """OpenSSL's short reason (``WRONG_VERSION_NUMBER``) or the error's text."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else describe(exc)
