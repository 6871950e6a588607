"""The websockets library's Trio shell of :class:`app.web.wsapi.WebSocket`.

The front hands this module every connection whose first bytes are
``GET /ws/``.  websockets' ``ServerConnection`` for Trio does the handshake,
RFC 6455 framing and validation (close codes 1002 / 1007 / 1009 for bad
frames, bad UTF-8, oversized messages, fragment reassembly within the size
limit), answers pings, sends keepalive pings and drops a peer that does not
answer them, and runs its reader task in a nursery owned by this module's
caller: still one tree of tasks.  Its protocol object is our
:class:`~app.echo.wsprotocol.StrictServerProtocol` (close frames between
fragments, UTF-8 checked fragment by fragment) and accepts permessage-deflate
within :class:`~app.echo.wsprotocol.DeflateSettings` when offered.

Bounds per connection: one message of ``--max-message-size`` being
assembled, at most :data:`MAX_QUEUE` whole frames waiting for the endpoint
(reading pauses beyond that), and the front's write timeout on sends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import urlsplit

import trio
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN
from websockets.trio.server import Server, ServerConnection

from app.echo.wsprotocol import (
    DeflateSettings,
    StrictServerProtocol,
    can_share,
    shared_text_frame,
)
from app.feed.batches import SharedText
from app.web.wsapi import (
    ABNORMAL,
    INTERNAL_ERROR,
    NORMAL,
    Endpoint,
    WebSocketClosed,
    run_endpoint,
)

log = logging.getLogger(__name__)
# websockets logs every frame at debug and every connection at info; keep both
# out of the server's log (our endpoints log what is worth a line).
_protocol_log = logging.getLogger("app.web.websockets")
_protocol_log.setLevel(logging.WARNING)

# A client has this long to send its whole handshake request.
HANDSHAKE_TIMEOUT: Final = 10.0
# How long our closing handshake waits for the peer's answer.
CLOSE_TIMEOUT: Final = 1.0
# Frames received but not yet taken by the endpoint before reading pauses.
MAX_QUEUE: Final = 2


class _ServerStatus:
    """The one thing websockets' ``ServerConnection`` asks of its server: is it closing?"""

    def __init__(self, draining: trio.Event) -> None:
        self._draining = draining

    @property
    def closing(self) -> bool:
        return self._draining.is_set()


class TrioWebSocket:
    """One websocket on websockets' Trio connection, with its handshake request already read."""

    def __init__(self, conn: ServerConnection, peer: str) -> None:
        assert conn.request is not None
        self._conn = conn
        self._request = conn.request
        self._peer = peer
        target = urlsplit(self._request.path)
        self._path = target.path
        self._query = target.query

    @property
    def path(self) -> str:
        return self._path

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def query_string(self) -> str:
        return self._query

    def header(self, name: str) -> str | None:
        return self._request.headers.get(name)

    async def accept(self) -> None:
        conn = self._conn
        try:
            await conn.handshake()
        except ConnectionClosed as exc:
            raise WebSocketClosed(_code(exc)) from None
        # Frames that came with the request were parsed after the 101 was
        # queued (AnswerFirstProtocol); nobody else reads their events until
        # more bytes arrive, so hand them to the connection now.
        for event in conn.protocol.events_received():
            conn.process_event(event)
        if conn.protocol.state is not OPEN:
            close = conn.protocol.close_rcvd
            if close is not None:
                raise WebSocketClosed(close.code, close.reason)  # answered already
            # Not a valid upgrade: websockets has answered 400 or 426 already.
            raise WebSocketClosed(ABNORMAL, "handshake failed")
        conn.start_keepalive()

    async def reject(self, status: int) -> None:
        def refuse(conn: ServerConnection, request: Any) -> Any:
            return conn.respond(status, f"{status}\n")

        try:
            await self._conn.handshake(process_request=refuse)
        except ConnectionClosed:
            pass  # gone before hearing the refusal: nothing more to say

    async def receive(self) -> str | bytes:
        try:
            return await self._conn.recv()
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == INTERNAL_ERROR and exc.rcvd is None:
                log.info("websocket %s %s: %s; closed it", self._peer, self._path, exc.sent.reason)
            raise WebSocketClosed(_code(exc), exc.rcvd.reason if exc.rcvd else "") from None

    async def send(self, data: str | bytes) -> None:
        try:
            await self._conn.send(data)
        except ConnectionClosed as exc:
            raise WebSocketClosed(_code(exc)) from None

    async def send_utf8(self, data: bytes) -> None:
        """Send already-encoded UTF-8 as a text message, without decoding it first."""
        try:
            await self._conn.send(data, text=True)
        except ConnectionClosed as exc:
            raise WebSocketClosed(_code(exc)) from None

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        if self._conn.protocol.state is OPEN:
            await self._conn.aclose(code, reason)

    # issue 12: one frame for many peers.
    @property
    def shares_frames(self) -> bool:
        return can_share(self._conn.protocol)

    async def send_shared(self, message: SharedText) -> None:
        conn = self._conn
        frame = shared_text_frame(conn.protocol, message)
        if frame is None:
            await self.send_utf8(message.data)
            return
        try:
            # websockets has no call for a frame compressed elsewhere: queue its bytes as
            # the protocol's own send_frame() would, and let send_context() check the
            # state and write them (websockets 17, pinned; tests/web/test_ws_rfc.py).
            # No checkpoint between the compressor's reset above and this append, so no
            # other message of this connection can be compressed in between.
            async with conn.send_context():
                conn.protocol.writes.append(frame)
        except ConnectionClosed as exc:
            raise WebSocketClosed(_code(exc)) from None


def _code(exc: ConnectionClosed) -> int:
    frame = exc.rcvd or exc.sent
    return frame.code if frame is not None else ABNORMAL


async def serve_websocket(
    stream: trio.abc.Stream,
    peer: str,
    endpoints: Mapping[str, Endpoint],
    *,
    max_message_size: int,
    draining: trio.Event,
    ping_interval: float = 20.0,
    deflate: DeflateSettings | None = None,
) -> None:
    """Serve one websocket connection on *stream*: handshake, route by path, run the endpoint.

    Keepalive: a ping every *ping_interval* seconds; a peer whose pong does
    not come back within as long again is closed with 1011.

    An unknown path is answered 404; a request that does not arrive within
    :data:`HANDSHAKE_TIMEOUT` is dropped.  The stream is closed on return.
    *deflate* bounds permessage-deflate (default: on, 12 window bits, memLevel 5).
    """
    deflate = deflate or DeflateSettings()
    protocol = StrictServerProtocol(
        max_size=max_message_size, extensions=deflate.factories(), logger=_protocol_log
    )
    try:
        async with trio.open_nursery() as nursery:
            conn = ServerConnection(
                nursery,
                stream,
                protocol,
                cast(Server, _ServerStatus(draining)),
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                close_timeout=CLOSE_TIMEOUT,
                max_queue=MAX_QUEUE,
            )
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                await _wait_request(conn)
            if conn.request is None:
                log.debug("websocket: %s sent no valid handshake", peer)
                nursery.cancel_scope.cancel()
                return
            ws = TrioWebSocket(conn, peer)
            endpoint = endpoints.get(ws.path)
            if endpoint is None:
                await ws.reject(404)
            else:
                await run_endpoint(ws, endpoint, draining)
            with trio.move_on_after(CLOSE_TIMEOUT):
                await conn.wait_closed()
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def _wait_request(conn: ServerConnection) -> None:
    """Wait until the handshake request is in, or the connection is gone."""
    async with trio.open_nursery() as nursery:

        async def first(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(first, conn.request_rcvd)
        nursery.start_soon(first, conn.stream_closed)
