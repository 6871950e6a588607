"""Hypercorn's per-connection server, with the HTTP/1.1 and upgrade rules it gets wrong kept by us.

Hypercorn 0.18 (pinned) serves each connection with ``TCPServer`` and an
``H11Protocol``.  We keep both and correct, around them, what odd or hostile
clients found (issue 14), each by its RFC:

* Empty lines before a request line are ignored (RFC 9112 section 2.2):
  h11 answers them 400.
* Bytes after a request that ends the connection (HTTP/1.0 without
  keep-alive, ``Connection: close``) are not processed (RFC 9112 section
  9.6): h11 answered them 400 while the app was still answering the request,
  and the two answers collided (``LocalProtocolError``, ``BusyResourceError``).
* A websocket upgrade is checked before Hypercorn sees it
  (:func:`app.echo.handshake.upgrade_refusal`): a path with no websocket
  endpoint gets 404, a wrong or missing version 426 with
  ``Sec-WebSocket-Version: 13``, a bad key 400; each once, then the
  connection closes (the bytes after a refused upgrade may be frames, never
  a next request).  Hypercorn accepted any key, and handed upgrades for
  plain routes to apps that cannot take them ("Error in ASGI Framework").
* Bytes that arrive with an accepted upgrade request wait until the app's
  answer is out (RFC 6455 section 4.1): Hypercorn answered them 400 while
  the app was accepting.
* The app's sends are shielded (:func:`shield_sends`): Starlette's
  ``FileResponse`` cancels its own sending task as soon as Hypercorn reports
  the request done, which cut Hypercorn's close path (``send_eof`` then
  ``aclose``) and its keep-alive timer in the middle: the connection and its
  ``--max-web-connections`` slot stayed until the client left.  Every send
  stays bounded by the front's write timeout (:class:`~app.web.front.GuardedStream`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Final

import h11
import trio
from hypercorn.events import Closed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol, H11WSConnection
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import TCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.echo.handshake import MAX_HELD, Refusal, plain_request_refusal, upgrade_refusal

log = logging.getLogger(__name__)

# States in which the client has sent its last request on this connection.
_LAST_REQUEST_IN: Final = frozenset({h11.MUST_CLOSE, h11.CLOSED})
# Status of an accepted upgrade.
SWITCHING_PROTOCOLS: Final = 101


class Http11Connection(h11.Connection):
    """h11's server connection, lenient where RFC 9112 asks it to be.

    * Empty lines (CRLF or bare LF) before a request line are dropped
      (section 2.2), on the first request and between keep-alive requests.
    * Once the client's last request is in (``MUST_CLOSE``), whatever else
      it sends is discarded (section 9.6: a server "MUST NOT process any
      further requests received on that connection").
    """

    def receive_data(self, data: bytes) -> None:
        if data and self.their_state in _LAST_REQUEST_IN:
            return
        super().receive_data(data)

    def next_event(self) -> Any:
        state = self.their_state
        # h11 keeps no public way to drop buffered bytes; _receive_buffer and
        # its _extract are stable from h11 0.14 to 0.16 (Hypercorn 0.18 needs >= 0.11).
        buffer = self._receive_buffer
        if state is h11.IDLE and buffer:
            data = buffer._data
            blank = 0
            while blank < len(data) and data[blank] in b"\r\n":
                blank += 1
            if blank:
                buffer._extract(blank)
        elif state in _LAST_REQUEST_IN and buffer:
            buffer._extract(len(buffer))
        return super().next_event()


class _HeldUntilAnswered(H11WSConnection):
    """Hypercorn's websocket pass-through, which holds the bytes until the app has answered.

    While the app decides, bytes that came with the upgrade request (frames
    sent eagerly) stay here; after a ``101`` they go to the websocket in
    order, after a refusal they are dropped.
    """

    def __init__(self, connection: H11WSConnection, stream: WSStream) -> None:
        self.buffer = connection.buffer
        self.h11_connection = connection.h11_connection
        self._stream = stream

    def next_event(self) -> Any:
        state = self._stream.state
        if state is ASGIWebsocketState.HANDSHAKE:
            if len(self.buffer) > MAX_HELD:
                raise h11.RemoteProtocolError("frames flooded an unanswered upgrade")
            return h11.NEED_DATA
        if state is not ASGIWebsocketState.CONNECTED and state is not ASGIWebsocketState.CLOSED:
            self.buffer.clear()  # refused: these bytes were never an HTTP request
            return h11.NEED_DATA
        return super().next_event()


class Http11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol with the corrections above; *websocket_paths* may upgrade."""

    def __init__(self, *args: Any, websocket_paths: Collection[str]) -> None:
        super().__init__(*args)
        self.connection = Http11Connection(
            h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size
        )
        self._websocket_paths = websocket_paths
        # The reader task and the task that releases held bytes take turns.
        self._events_lock = trio.Lock()

    async def _handle_events(self) -> None:
        async with self._events_lock:
            await super()._handle_events()

    async def _create_stream(self, request: h11.Request) -> None:
        path = request.target.partition(b"?")[0].decode("latin-1")
        paths, version = self._websocket_paths, request.http_version
        if _is_websocket_upgrade(request):
            refusal = upgrade_refusal(path, request.headers, paths, version)
        else:
            refusal = plain_request_refusal(path, paths, version)
        if refusal is not None:
            log.debug("web: %s: %s refused: %s", self.client, path, refusal)
            await self._refuse(refusal)
            return
        await super()._create_stream(request)
        if isinstance(self.stream, WSStream) and isinstance(self.connection, H11WSConnection):
            self.connection = _HeldUntilAnswered(self.connection, self.stream)

    async def stream_send(self, event: StreamEvent) -> None:
        await super().stream_send(event)
        held = self.connection
        if (
            isinstance(event, Response)
            and event.status_code == SWITCHING_PROTOCOLS
            and isinstance(held, _HeldUntilAnswered)
            and held.buffer
        ):
            # The 101 is out: frames that came with the request go to the
            # websocket now, in a task of the connection's own (this one is
            # the app's, which must stay free to take the messages).
            self.task_group.spawn(self._handle_events)

    async def _refuse(self, refusal: Refusal) -> None:
        body = refusal.body
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *refusal.headers,
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=refusal.status, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())
        await self.send(Closed())


def _is_websocket_upgrade(request: h11.Request) -> bool:
    """Hypercorn's own test for a websocket upgrade (``H11Protocol._create_stream``)."""
    if request.method.upper() != b"GET":
        return False
    upgrade = b""
    connection = b""
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = value.strip()
        elif name == b"connection":
            connection = value.strip()
    tokens = (token.strip() for token in connection.lower().split(b","))
    return upgrade.lower() == b"websocket" and b"upgrade" in tokens


class HttpServer(TCPServer):
    """Hypercorn's ``TCPServer`` serving HTTP/1.1 with :class:`Http11Protocol`."""

    def __init__(self, *args: Any, websocket_paths: Collection[str]) -> None:
        super().__init__(*args)
        self._websocket_paths = websocket_paths

    async def _read_data(self) -> None:
        # TCPServer.run made the protocol and has read nothing yet: swap in ours.
        wrapper = self.protocol
        if type(wrapper.protocol) is H11Protocol:
            wrapper.protocol = Http11Protocol(
                wrapper.app,
                wrapper.config,
                wrapper.context,
                wrapper.task_group,
                wrapper.state,
                wrapper.ssl,
                wrapper.client,
                wrapper.server,
                wrapper.send,
                websocket_paths=self._websocket_paths,
            )
        await super()._read_data()


def shield_sends(app: ASGIApp) -> ASGIApp:
    """*app*, with each of its sends shielded from the app's own cancellation (see above)."""

    async def shielded(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_shielded(message: Message) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await app(scope, receive, send_shielded)

    return shielded
