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
"""

from __future__ import annotations

import enum
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import trio
from hypercorn.config import Config
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp

from app.config import Settings
from app.echo.conns import LimitLog
from app.echo.proxy import (
    ProxyPolicy,
    ProxyProtocolError,
    ProxyRefusals,
    carried_peer,
    peer_host,
)
from app.echo.proxyread import ProxiedSocket, read_proxy_header
from app.echo.wsprotocol import DeflateSettings
from app.errors import describe
from app.net import accept_forever
from app.web.hyper import HttpServer, shield_sends
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
# ...except this one followed by " " or "?", which goes to the echo engine if there is one.
ECHO_PREFIX: Final = b"GET /ws/echo"
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
        *,
        proxy: ProxyPolicy | None = None,
        proxy_refusals: ProxyRefusals | None = None,
    ) -> None:
        self._listeners = listeners
        #: Who must send a PROXY header first (None: --proxy-protocol off), and its refusals.
        self._proxy = proxy
        self._proxy_refusals = proxy_refusals or ProxyRefusals("proxy protocol")
        self._settings = settings
        self._draining = draining
        self._limit = settings.max_web_connections
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

            def on_accept(sock: socket.socket, peer: str) -> None:
                proxy = self._proxy
                if proxy is not None and not proxy.trusts(peer_host(peer)):
                    self._proxy_refusals.untrusted(peer)
                    sock.close()
                    return
                if len(self._streams) >= self._limit:
                    self._refusals.refuse(peer)
                    _refuse(sock)
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
                nursery.start_soon(self._serve, stream, scope, name=f"web {peer}")

            with self._accepting:
                async with trio.open_nursery() as accepting:
                    for listener in self._listeners:
                        accepting.start_soon(accept_forever, listener, on_accept)

    async def _serve(self, stream: GuardedStream, scope: trio.CancelScope) -> None:
        handed_over = False
        with scope:
            try:
                proxy = self._proxy
                if proxy is not None and not await self._read_proxy(stream, proxy):
                    return
                route = await _first_bytes(stream)
                if route is None:
                    return
                if route is Route.ECHO and self._ws_echo is not None:
                    handed_over = await self._ws_echo.serve(
                        stream, stream.raw, stream.peer, lambda: self._forget(stream)
                    )
                elif route is not Route.HTTP and self._websockets is not None:
                    await serve_websocket(
                        stream,
                        stream.peer,
                        self._websockets,
                        max_message_size=self._settings.max_message_size,
                        ping_interval=self._settings.ws_ping_interval,
                        draining=self._draining,
                        deflate=DeflateSettings.from_settings(self._settings),
                    )
                else:
                    await HttpServer(
                        self._app,
                        self._config,
                        self._context,
                        {},
                        stream,
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

    async def _read_proxy(self, stream: GuardedStream, proxy: ProxyPolicy) -> bool:
        """Take the PROXY header; from then on the stream is the client it carries.

        False (one log line, the caller closes) for a missing or bad header.
        """
        try:
            header = await read_proxy_header(stream.socket, proxy)
        except ProxyProtocolError as exc:
            self._proxy_refusals.refuse(stream.peer, str(exc))
            return False
        stream.peer = carried_peer(header, stream.peer)
        if header.source is not None:
            stream.socket = ProxiedSocket(stream.socket, header.source)  # type: ignore[assignment]
        return True

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
    if len(head) < PEEK_SIZE and ECHO_PREFIX.startswith(head):
        return None
    return Route.WEBSOCKET if head.startswith(WEBSOCKET_PREFIX) else Route.HTTP


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


def _refuse(sock: socket.socket) -> None:
    try:
        sock.send(BUSY_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # already gone: closing is all that is left
    sock.close()
