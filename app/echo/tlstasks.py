"""The portable TLS echo engine: a Trio task per connection on ``trio.SSLStream``.

It serves ``--engine tasks`` and ``--engine trio`` (each connection a task the
page can follow), and every system without epoll (macOS, Windows;
:mod:`app.portability`), where the multiplexed engine of :mod:`app.echo.tls`
cannot run.  It uses Trio's public API only, and behaves the same from
outside: the same handshake bound and counters, the same ``tls`` table
(limits, idle sweep, feed events with the TLS parameters), the same half-close
(the peer's ``close_notify`` is answered with ours once everything is echoed)
and the same reasons in ``conn_close``.
What it costs: a task switch and ``trio.SSLStream``'s memory buffers per
message, about what the idiomatic ``serve_ssl_over_tcp`` peer pays.

Backpressure: a connection's task awaits each echo's ``send_all`` before it
reads again, so a peer that does not read stops being read.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Final

import trio

from app.certs import tls_info
from app.echo import RECV_SIZE
from app.echo.conns import ConnTable, HandshakeCounts
from app.echo.proxy import ProxyCounts, ProxyPolicy, ProxyRefusals, carried_peer
from app.echo.proxyread import greet, read_proxy_header, refuse_untrusted
from app.errors import describe
from app.net import accept_forever

# One logger for TLS echo, whichever engine serves it: a log filter set for one covers both.
log = logging.getLogger("app.echo.tls")

# A cut connection (idle, shutdown) gets this long to take our close_notify.
CLOSE_GRACE: Final = 0.5
#: Why a connection ended, as ``conn_close`` says it (the same words as app.echo.tls).
EOF_CLEAN: Final = "eof"
EOF_TRUNCATED: Final = "eof (no close_notify)"


class TlsTaskEngine:
    """Serve TLS echo connections from *listener*, a task each, under *table*'s limits."""

    name: Final = "tls tasks"

    def __init__(
        self,
        listener: socket.socket,
        table: ConnTable,
        context: ssl.SSLContext,
        handshake_timeout: float,
        counts: HandshakeCounts,
        watch: Callable[[int], None] | None = None,
        proxy: ProxyPolicy | None = None,
        refusals: ProxyCounts | None = None,
    ) -> None:
        #: Who must send a PROXY header before TLS (None: --proxy-protocol off).
        self._proxy = proxy
        self._proxy_refusals = refusals or ProxyRefusals("tls echo").listener("tls")
        self._listener = listener
        #: Called in each connection's task with its lane id, so the tracer follows it.
        self._watch = watch
        self._table = table
        self._context = context
        self._handshake_timeout = handshake_timeout
        self._counts = counts
        self._handshaking = 0
        self._nursery: trio.Nursery | None = None

    async def run(self) -> None:
        """Accept and serve until cancelled; every connection's task goes with it.

        Cancellation: the usual way to stop it; each connection says
        ``close_notify`` briefly (:data:`CLOSE_GRACE`) on the way out.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await accept_forever(self._listener, self._admit)

    def _admit(self, sock: socket.socket, peer: str) -> None:
        table = self._table
        if len(table) + self._handshaking >= table.limit:
            table.refusals.refuse(peer)
            sock.close()
            return
        if refuse_untrusted(self._proxy, self._proxy_refusals, sock, peer):
            return
        assert self._nursery is not None
        self._handshaking += 1
        self._nursery.start_soon(self._serve, sock, peer, name=f"tls echo {peer}")

    async def _serve(self, sock: socket.socket, peer: str) -> None:
        try:
            await self._serve_tls(sock, peer)
        except Exception as exc:  # the per-connection boundary: only this one ends
            log.error("tls echo: connection from %s failed: %s", peer, describe(exc))
            log.debug("tls echo: connection from %s failure", peer, exc_info=True)

    async def _serve_tls(self, sock: socket.socket, peer: str) -> None:
        """Handshake, then echo until the peer's close_notify; always closes the socket."""
        tcp = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        stream = trio.SSLStream(tcp, self._context, server_side=True)
        try:
            try:
                if self._proxy is not None:
                    # The PROXY header comes before TLS; exactly it is taken.
                    read = functools.partial(read_proxy_header, tcp.socket, self._proxy)
                    header = await greet(tcp.socket, peer, self._proxy_refusals, read)
                    if header is None:
                        return
                    peer = carried_peer(header, peer)
                with trio.fail_after(self._handshake_timeout):
                    await stream.do_handshake()
            finally:
                self._handshaking -= 1
        except trio.TooSlowError:
            self._counts.timed_out += 1
            log.debug(
                "tls echo: %s did not finish its handshake within %g s; closed it",
                peer,
                self._handshake_timeout,
            )
            await trio.aclose_forcefully(tcp)
            return
        except trio.BrokenResourceError as exc:
            self._counts.failed += 1
            log.debug(
                "tls echo: handshake with %s failed: %s", peer, describe(exc.__cause__ or exc)
            )
            await trio.aclose_forcefully(tcp)
            return
        self._counts.done += 1
        # Say close_notify on the way out unless the peer is gone or broke the protocol:
        # after its own close_notify, and when cut (idle, shutdown, cancelled).
        goodbye = True
        try:
            with trio.CancelScope() as scope:
                conn = self._table.admit(peer, lambda reason: scope.cancel(), tls=tls_info(stream))
                if conn is None:  # unreachable: handshakes count against the limit at accept
                    goodbye = False
                    return
                if self._watch is not None:
                    self._watch(conn.id)
                reason = "error"
                try:
                    while True:
                        data = await stream.receive_some(RECV_SIZE)
                        if not data:
                            reason = EOF_CLEAN  # close_notify: the peer's half-close
                            break
                        conn.bytes_in += len(data)
                        conn.msgs += 1
                        await stream.send_all(data)
                        conn.bytes_out += len(data)
                except trio.BrokenResourceError as exc:
                    goodbye = False
                    truncated = isinstance(exc.__cause__, ssl.SSLEOFError)
                    reason = EOF_TRUNCATED if truncated else "reset"
                    log.debug("tls echo: %s went away: %s", peer, describe(exc.__cause__ or exc))
                finally:
                    self._table.close(conn, reason)
        finally:
            if goodbye:
                # Our close_notify, then the socket, which SSLStream.aclose closes however it
                # ends (cut short too): no second close, whose checkpoint would cost each of
                # 1,000 connections one more scheduling pass at shutdown.
                with trio.move_on_after(CLOSE_GRACE, shield=True):
                    await stream.aclose()
            else:
                await trio.aclose_forcefully(tcp)
