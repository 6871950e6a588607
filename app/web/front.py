"""The web listener: accepts each connection, then hands it to Hypercorn or the websocket shell.

Why not ``hypercorn.trio.serve``: it accepts without a bound on connections,
one per scheduler pass, and a peer that stops reading blocks Hypercorn's
shielded ``send_all`` forever, which also stalls shutdown.  This front keeps
Hypercorn's protocol handling (h11, h2, wsproto, the ASGI glue) and adds:

* a bound on open web connections (``--max-web-connections``): one more is
  answered ``503`` and closed, with one log line per burst;
* greedy accepting (see :mod:`app.net`);
* routing of websocket upgrades (``GET /ws/...``, read, then handed on with
  the request) to the websockets library's Trio connection (:mod:`app.web.wstrio`), which
  is RFC 6455-strict and fast, unless ``--ws-engine asgi``; with
  ``--ws-engine epoll`` (the default), ``GET /ws/echo`` goes to the
  multiplexed echo engine (:mod:`app.echo.websocket`) instead: this task
  does the handshake, then hands the socket over and ends;
* a write timeout on every connection (:class:`GuardedStream`): a peer that
  does not take our bytes for ``--write-timeout`` seconds is cut off, even
  inside Hypercorn's shielded send;
* a drain for shutdown: stop accepting, let Hypercorn close idle keep-alive
  connections and the endpoints say 1001, then cut whatever is left.

With TLS (issue 11) a second listener, ``--https-port``, serves the same
routes over HTTPS and WSS.  Its connections are handshaken here, bounded by
``--tls-handshake-timeout`` (slow or failed handshakes are closed, counted in
the ``handshakes`` the front is given, which ``/healthz`` shows, and logged at
debug), then routed by ALPN: ``h2``
goes straight to Hypercorn (HTTP/2 needs no peeking, and cannot be peeked);
otherwise the first decrypted bytes are read (they cannot be peeked through
TLS) and replayed to whoever serves the connection.  ``/ws/echo`` over WSS
runs on websockets' Trio connection (the multiplexed engine speaks no TLS).

Every connection Hypercorn serves gets a per-connection state (the ASGI
scope's ``state``): which listener took it and its TLS parameters, for the
info routes (:mod:`app.web.info`).
"""

from __future__ import annotations

import enum
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import trio
from hypercorn.config import Config
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp

from app.certs import tls_info
from app.config import Settings
from app.echo.conns import HandshakeCounts, LimitLog
from app.echo.proxy import ProxyCounts, ProxyHeader, ProxyPolicy, ProxyRefusals, carried_peer
from app.echo.proxyread import ProxiedSocket, greet, read_proxy_header, refuse_untrusted
from app.echo.wsprotocol import DeflateSettings
from app.errors import describe
from app.feed.events import TlsInfo
from app.net import accept_forever
from app.web.hyper import HttpServer, shield_sends
from app.web.info import STATE_LISTENER, STATE_PROXY, STATE_TLS
from app.web.wsapi import Endpoint
from app.web.wstrio import serve_websocket

if TYPE_CHECKING:
    from app.echo.websocket import WsEchoEngine  # needs epoll: imported where it runs

log = logging.getLogger(__name__)

# Hypercorn keeps a connection's task group (its keep-alive timer, the app's
# tasks) alive after the socket is closed or the peer has hung up, up to
# keep_alive_timeout.  From then on they have this long to finish (send the
# last response, say goodbye) before they are cancelled.
CLOSED_LINGER: Final = 1.0
# Requests starting with this go to the websocket shell, the rest to Hypercorn...
WEBSOCKET_PREFIX: Final = b"GET /ws/"
# ...except this one followed by " " or "?", which goes to the echo engine if there is one...
ECHO_PREFIX: Final = b"GET /ws/echo"
# ...and this one, which goes to Hypercorn: its endpoint reads the whole ASGI scope.
INFO_PREFIX: Final = b"GET /ws/info"
# Bytes needed to tell the three apart.
PEEK_SIZE: Final = len(ECHO_PREFIX) + 1
# A new connection must send its first bytes within this time.
FIRST_BYTES_TIMEOUT: Final = 10.0
# One read of a new connection's first bytes (they are handed on whole, so one
# read usually holds the whole request).
FIRST_READ: Final = 64 * 1024
# Reads of unread bytes dropped before a close (see GuardedStream._discard_unread).
DISCARD_READS: Final = 4
# Empty lines before a request line (RFC 9112 section 2.2 says to ignore at
# least one); more than this many bytes of them and the client is not an HTTP client.
MAX_BLANK_PREFIX: Final = 1024
# Answer to plain HTTP on the HTTPS port (nginx answers the same mistake with its 497)...
PLAIN_HTTP_ON_TLS: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 46\r\nConnection: close\r\n\r\n"
    b"this is an HTTPS port: use https:// or wss://\n"
)
# ...after which this much of the request is read and dropped, so the close is not a reset.
PLAIN_HTTP_DISCARD: Final = 64 * 1024
# Answer to a connection over the limit; best effort, then close.
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 30\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
    b"too many connections, retry\r\n"
)


def _nothing() -> None:
    pass


class GuardedStream(trio.abc.HalfCloseableStream):
    """A socket stream for Hypercorn whose sends give up after ``--write-timeout`` seconds.

    A peer that takes none of our bytes that long is gone or hostile (a
    browser that stopped reading /ws/events, a slow reader of a page).

    The timeout is a cancel scope of its own inside ``send_all``, so it fires
    even though Hypercorn shields its sends from outer cancellation.

    *on_eof* is called when the peer has sent all it will, *on_close* once the
    connection is closed (the front's accounting); both must not block.
    """

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        write_timeout: float,
        *,
        on_eof: Callable[[], None] = _nothing,
        on_close: Callable[[], None] = _nothing,
    ) -> None:
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        #: Hypercorn reads the addresses from here.
        self.socket = self._stream.socket
        #: The stdlib socket underneath, for handing the connection to an engine.
        self.raw = sock
        self.peer = peer
        self._write_timeout = write_timeout
        self._received = 0
        self._sent = 0
        self._eof = False
        self._on_eof = on_eof
        self._on_close = on_close
        # Bytes read by the front to route the connection, handed on first.
        self._unread = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(self._write_timeout) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            log.info("web: %s took no data for %g s; closing it", self.peer, self._write_timeout)
            self.abort()
            raise trio.BrokenResourceError("write timeout")
        self._sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._unread:
            # Already counted in _received when the front first read them.
            cut = len(self._unread) if max_bytes is None else max_bytes
            data, self._unread = self._unread[:cut], self._unread[cut:]
            await trio.lowlevel.checkpoint()
            return data
        data = bytes(await self._stream.receive_some(max_bytes))
        self._received += len(data)
        if not data:
            self._eof = True
            self._on_eof()
        return data

    async def aclose(self) -> None:
        if self._received and not self._sent and not self._eof:
            # Hypercorn closes a connection whose request is not complete within
            # its keep-alive timeout: a slowloris, or a very broken client.
            log.info("web: %s sent an incomplete request and stalled; closing it", self.peer)
            self._eof = True  # aclose() may come twice; say it once
        self._discard_unread()
        try:
            await self._stream.aclose()
        finally:
            self._on_close()

    def unread(self, data: bytes) -> None:
        """Put *data* back in front of the stream: :meth:`receive_some` returns it first."""
        self._unread = data + self._unread

    def abort(self) -> None:
        """Close the socket now; any task waiting on it gets ``ClosedResourceError``."""
        self._discard_unread()
        self.socket.close()

    def _discard_unread(self) -> None:
        """Read and drop what the peer sent that nobody will read, without waiting.

        Closing a socket with unread bytes makes the kernel send a reset
        instead of a FIN, and a reset can destroy our last answer (a 400, a
        404 to a refused upgrade) in the peer's buffers before it is read.
        """
        for _ in range(DISCARD_READS):
            try:
                if not self.raw.recv(FIRST_READ, socket.MSG_DONTWAIT):
                    return
            except OSError:
                return  # nothing more now (EAGAIN), or already closed or reset


class WebFront:
    """Serve the ASGI *app* on *listeners* through Hypercorn, within the web limits of *settings*.

    *draining* is the server's drain signal (set by the caller before :meth:`drain`).
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        app: ASGIApp,
        settings: Settings,
        draining: trio.Event,
        websockets: Mapping[str, Endpoint] | None = None,
        ws_echo: WsEchoEngine | None = None,
        https: tuple[socket.socket, ssl.SSLContext] | None = None,
        handshakes: HandshakeCounts | None = None,
        *,
        proxy: ProxyPolicy | None = None,
        proxy_refusals: ProxyCounts | None = None,
    ) -> None:
        self._listeners = listeners
        #: Who must send a PROXY header first (None: --proxy-protocol off), and its refusals.
        self._proxy = proxy
        self._proxy_refusals = proxy_refusals or ProxyRefusals("proxy protocol").listener("web")
        self._settings = settings
        self._draining = draining
        self._limit = settings.max_web_connections
        #: The HTTPS listener and its context (issue 11), if TLS is on, and its handshakes.
        self._https = https
        self._handshakes = handshakes or HandshakeCounts()
        self._refusals = LimitLog("web", self._limit)
        self._config = hypercorn_config(settings)
        self._context = WorkerContext(None)
        self._app = wrap_app(shield_sends(app), self._config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        #: Paths where Hypercorn may accept a websocket upgrade (the rest get 404).
        self._websocket_paths = websocket_paths(app)
        self._streams: set[GuardedStream] = set()
        self._accepting = trio.CancelScope()
        self._idle = trio.Event()
        #: Endpoints for upgrades routed past Hypercorn; None sends everything to Hypercorn.
        self._websockets = websockets
        #: Where ``/ws/echo`` upgrades go, if not to the endpoints above.
        self._ws_echo = ws_echo

    @property
    def connections(self) -> int:
        """Open web connections (HTTP and websocket), counted against the limit."""
        return len(self._streams)

    @property
    def refusals(self) -> LimitLog:
        """Connections refused over ``--max-web-connections``, logged once per burst."""
        return self._refusals

    async def run(self) -> None:
        """Accept and serve until cancelled; after :meth:`drain`, return once connections end."""
        async with trio.open_nursery() as nursery:

            def acceptor(
                listener: str, tls: ssl.SSLContext | None
            ) -> Callable[[socket.socket, str], None]:
                def on_accept(sock: socket.socket, peer: str) -> None:
                    if refuse_untrusted(self._proxy, self._proxy_refusals, sock, peer):
                        return
                    if len(self._streams) >= self._limit:
                        self._refusals.refuse(peer)
                        if tls is None:
                            _refuse(sock)
                        else:
                            sock.close()  # a 503 in plain text means nothing to a TLS client
                        return
                    # Hypercorn keeps a connection's task group after the peer hung up or the
                    # socket closed: from then on it has CLOSED_LINGER to finish.
                    scope = trio.CancelScope()

                    def linger() -> None:
                        scope.deadline = min(scope.deadline, trio.current_time() + CLOSED_LINGER)

                    def on_close() -> None:
                        self._forget(stream)
                        linger()

                    stream = GuardedStream(
                        sock,
                        peer,
                        self._settings.write_timeout,
                        on_eof=linger,
                        on_close=on_close,
                    )
                    self._streams.add(stream)
                    nursery.start_soon(
                        self._serve, stream, scope, listener, tls, name=f"web {peer}"
                    )

                return on_accept

            with self._accepting:
                async with trio.open_nursery() as accepting:
                    for i, listener in enumerate(self._listeners):
                        name = "web" if i == 0 else "worker web"
                        accepting.start_soon(accept_forever, listener, acceptor(name, None))
                    if self._https is not None:
                        sock, context = self._https
                        accepting.start_soon(accept_forever, sock, acceptor("https", context))

    async def _serve(
        self,
        stream: GuardedStream,
        scope: trio.CancelScope,
        listener: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        handed_over = False
        with scope:
            try:
                # The PROXY header (if required) comes first, before TLS too.
                proxy = self._proxy
                header: ProxyHeader | None = None
                if proxy is not None:
                    header = await self._read_proxy(stream, proxy)
                    if header is None:
                        return
                conn: trio.abc.Stream = stream
                info: TlsInfo | None = None
                if tls is None:
                    route = await _first_bytes(stream)
                else:
                    opened = await self._open_tls(stream, tls)
                    if opened is None:
                        return
                    conn, route = opened
                    info = conn.info
                if route is None:
                    return
                if route is Route.ECHO and self._ws_echo is not None and tls is None:
                    handed_over = await self._ws_echo.serve(
                        stream, stream.raw, stream.peer, lambda: self._forget(stream)
                    )
                elif route is not Route.HTTP and self._websockets is not None:
                    await serve_websocket(
                        conn,
                        stream.peer,
                        self._websockets,
                        max_message_size=self._settings.max_message_size,
                        ping_interval=self._settings.ws_ping_interval,
                        draining=self._draining,
                        deflate=DeflateSettings.from_settings(self._settings),
                        tls=info,
                    )
                else:
                    await HttpServer(
                        self._app,
                        self._config,
                        self._context,
                        {STATE_LISTENER: listener, STATE_TLS: info, STATE_PROXY: header},
                        conn,
                        websocket_paths=self._websocket_paths,
                    )
            except Exception as exc:  # the per-connection boundary: only this one ends
                log.error(
                    "web: connection from %s failed: %s",
                    stream.peer,
                    describe(exc),
                    extra={"peer": stream.peer, "transport": "web"},
                )
                log.debug("web: connection from %s failure", stream.peer, exc_info=True)
            finally:
                if not handed_over:
                    # Hypercorn's close path awaits send_eof() before aclose(), so a
                    # cancelled connection would skip the close: make sure it happens.
                    stream.abort()
                    self._forget(stream)

    async def _open_tls(
        self, stream: GuardedStream, context: ssl.SSLContext
    ) -> tuple[TlsWebStream, Route | None] | None:
        """Handshake (bounded), then read enough of the request to route it.

        None: the handshake failed or took too long (counted, logged at
        debug); the caller closes the socket.
        """
        counts = self._handshakes
        timeout = self._settings.tls_handshake_timeout
        ssl_stream = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
        try:
            with trio.fail_after(timeout):
                if await _plain_http_on_tls(stream):
                    counts.failed += 1
                    log.debug("https: %s sent plain HTTP; told it to use https://", stream.peer)
                    return None
                await ssl_stream.do_handshake()
        except trio.TooSlowError:
            counts.timed_out += 1
            log.debug("https: %s did not finish its handshake within %g s", stream.peer, timeout)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            counts.failed += 1
            reason = describe(exc.__cause__ or exc)
            log.debug("https: handshake with %s failed: %s", stream.peer, reason)
            return None
        counts.done += 1
        conn = TlsWebStream(ssl_stream, tls_info(ssl_stream))
        if conn.info.alpn == "h2":
            return conn, Route.HTTP
        return conn, await conn.first_bytes(stream.peer)

    async def _read_proxy(self, stream: GuardedStream, proxy: ProxyPolicy) -> ProxyHeader | None:
        """Take the PROXY header; from then on the stream is the client it carries.

        Returns the header, or None (one log line, the socket closed) for a
        missing or bad one.
        """
        read = functools.partial(read_proxy_header, stream.socket, proxy)
        header = await greet(stream.socket, stream.peer, self._proxy_refusals, read)
        if header is None:
            return None
        stream.peer = carried_peer(header, stream.peer)
        if header.source is not None:
            stream.socket = ProxiedSocket(stream.socket, header.source)  # type: ignore[assignment]
        return header

    def _forget(self, stream: GuardedStream) -> None:
        self._streams.discard(stream)
        if not self._streams and self._accepting.cancel_called:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Stop accepting, let connections end by themselves for *grace* seconds, then cut the rest.

        Endpoints see *draining* (set by the caller) and close with
        1001; Hypercorn closes idle keep-alive connections when told the
        worker is terminating.
        """
        self._accepting.cancel()
        await self._context.terminated.set()
        if self._streams:
            with trio.move_on_after(grace):
                await self._idle.wait()
        if self._ws_echo is not None:
            self._ws_echo.drop_all()  # their streams are forgotten as they close
        for stream in list(self._streams):
            stream.abort()


def websocket_paths(app: ASGIApp) -> frozenset[str]:
    """The paths of *app*'s websocket routes (a Starlette app's ``WebSocketRoute`` entries)."""
    routes = getattr(app, "routes", ())
    return frozenset(route.path for route in routes if isinstance(route, WebSocketRoute))


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn's settings, derived from ours."""
    config = Config()
    config.websocket_max_message_size = settings.max_message_size
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("app.web.hypercorn")
    return config


class Route(enum.Enum):
    """Where a new web connection goes, by its first bytes."""

    #: ``GET /ws/echo``: the websocket echo engine, when there is one.
    ECHO = "echo"
    #: Any other ``GET /ws/...``: the websocket shell.
    WEBSOCKET = "websocket"
    #: Everything else: Hypercorn.
    HTTP = "http"


def route_of(head: bytes) -> Route | None:
    """The route for a request starting with *head*, or None while more bytes are needed."""
    if len(head) > len(ECHO_PREFIX) and head.startswith(ECHO_PREFIX):
        return Route.ECHO if head[len(ECHO_PREFIX)] in b" ?" else Route.WEBSOCKET
    if len(head) > len(INFO_PREFIX) and head.startswith(INFO_PREFIX):
        return Route.HTTP if head[len(INFO_PREFIX)] in b" ?" else Route.WEBSOCKET
    if len(head) < PEEK_SIZE and (ECHO_PREFIX.startswith(head) or INFO_PREFIX.startswith(head)):
        return None
    return Route.WEBSOCKET if head.startswith(WEBSOCKET_PREFIX) else Route.HTTP


class TlsWebStream(trio.abc.Stream):
    """A handshaken ``trio.SSLStream`` whose first bytes, read to route it, are read again.

    Hypercorn's ``TCPServer`` treats any stream with ``do_handshake`` as TLS:
    it calls it (done already, so it returns at once), reads the ALPN result
    (``h2`` selects its HTTP/2 protocol) and the socket from
    ``transport_stream``.  No ``send_eof`` (``trio.SSLStream`` has none):
    Hypercorn and websockets then close instead.
    """

    def __init__(self, ssl_stream: trio.SSLStream[GuardedStream], info: TlsInfo) -> None:
        self._ssl = ssl_stream
        self._head = b""
        #: What the handshake agreed on.
        self.info = info

    @property
    def transport_stream(self) -> GuardedStream:
        """The socket stream under TLS (Hypercorn reads ``.socket`` from it)."""
        return self._ssl.transport_stream

    async def do_handshake(self) -> None:
        """Done before this object existed; a checkpoint, for Hypercorn's sake."""
        await self._ssl.do_handshake()

    def selected_alpn_protocol(self) -> str | None:
        """``h2``, ``http/1.1``, or None when the client offered no ALPN."""
        return self.info.alpn

    async def first_bytes(self, peer: str) -> Route | None:
        """Read (and keep for replay) enough of the request to route it; None if it never came.

        Cancellation: safe; what was read stays kept.
        """
        with trio.move_on_after(FIRST_BYTES_TIMEOUT):
            try:
                while (route := route_of(self._head)) is None:
                    data = await self._ssl.receive_some(PEEK_SIZE - len(self._head))
                    if not data:
                        return None
                    self._head += data
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            return route
        log.debug("https: %s sent nothing for %.0f s; closing it", peer, FIRST_BYTES_TIMEOUT)
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            size = len(self._head) if max_bytes is None else max_bytes
            data, self._head = self._head[:size], self._head[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._ssl.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # A cancelled SSLStream.send_all leaves the stream broken (trio's warning), so an
        # endpoint cancelled mid-message (the drain) could not even say 1001 afterwards.
        # Shielded, the send completes; the GuardedStream underneath still gives up
        # after --write-timeout, and the drain's abort still cuts it.
        with trio.CancelScope(shield=True):
            await self._ssl.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._ssl.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._ssl.aclose()


async def _first_bytes(stream: GuardedStream) -> Route | None:
    """Read the request's first bytes, say where it goes, and put them back for whoever serves it.

    Waiting costs nothing while nothing arrives (a plain receive, no polling),
    and a peer that hangs up is seen at once.  Empty lines before the request
    line are dropped (RFC 9112 section 2.2), so that whoever serves the
    connection sees the request line first.

    None: the client sent nothing within :data:`FIRST_BYTES_TIMEOUT`, hung
    up, reset, or sent only empty lines; the connection is closed without a word.

    Cancellation: safe; the caller closes the stream.
    """
    head = b""
    blank = 0
    with trio.move_on_after(FIRST_BYTES_TIMEOUT):
        while True:
            try:
                data = await stream.receive_some(FIRST_READ)
            except trio.BrokenResourceError:
                return None  # reset before a word
            if not data:
                return None
            if not head:
                stripped = data.lstrip(b"\r\n")
                blank += len(data) - len(stripped)
                if blank > MAX_BLANK_PREFIX:
                    log.debug("web: %s sent only empty lines; closing it", stream.peer)
                    return None
                data = stripped
            head += data
            route = route_of(head) if head else None
            if route is not None:
                stream.unread(head)
                return route
            # Only part of the request line is in: wait for the rest.
    log.debug("web: %s sent nothing for %.0f s; closing it", stream.peer, FIRST_BYTES_TIMEOUT)
    return None


async def _plain_http_on_tls(stream: GuardedStream) -> bool:
    """If the client speaks plain HTTP to the HTTPS port, tell it so (400) and return True.

    A TLS connection opens with a handshake record (byte 0x16); an HTTP request
    with a method name in capitals.  Peeked, so a TLS client is not disturbed.
    Cancellation: safe (nothing consumed).
    """
    head = await stream.socket.recv(1, socket.MSG_PEEK)
    if not head or not b"A"[0] <= head[0] <= b"Z"[0]:
        return False
    try:
        stream.raw.send(PLAIN_HTTP_ON_TLS)
        stream.raw.shutdown(socket.SHUT_WR)
        # Closing with the request unread would send a reset, which can destroy the answer
        # in the client's buffers before it reads it: take what has come (a request head).
        stream.raw.recv(PLAIN_HTTP_DISCARD, socket.MSG_DONTWAIT)
    except OSError:
        pass  # gone already, or nothing more to read now: closing is all that is left
    return True


def _refuse(sock: socket.socket) -> None:
    try:
        sock.send(BUSY_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # already gone: closing is all that is left
    sock.close()
