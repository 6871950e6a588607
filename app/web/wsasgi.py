"""The ASGI shell of :class:`app.web.wsapi.WebSocket`, for websocket endpoints served by Hypercorn.

Why not use the ASGI callables directly:

* Two tasks of one endpoint (a reader and a writer) may both want to send.
  ASGI servers do not promise to serialise that, so every send here goes
  through one lock.
* Hypercorn's own close path sends EOF on the transport without the lock the
  app's sends take, so a send racing a closing connection can raise
  ``BusyResourceError`` (or ``ClosedResourceError``, ``BrokenResourceError``,
  ``OSError``) out of ``send``.  Those all mean the same thing to an
  endpoint: the peer is gone.  This shell turns them into
  :class:`WebSocketClosed`, which endpoints expect, instead of a traceback in
  the log.

permessage-deflate (issue 12): Hypercorn accepts wsproto's
``PerMessageDeflate()`` with zlib's defaults (15-bit windows, memLevel 8:
~300 KiB per connection) and inflates each received chunk without a bound (a
64 KiB chunk of a compression bomb is ~64 MiB).  It builds that extension in
``hypercorn.protocol.ws_stream`` by name, when the app sends
``websocket.accept``, in the app's own task; so this module replaces that name
with :class:`BoundedPerMessageDeflate`, which reads the route's limits from a
context variable that :class:`AsgiEndpoint` sets in that task.  Hypercorn is
pinned to 0.18 (pyproject.toml) and ``tests/web/test_ws_rfc.py`` checks the
negotiated parameters on this path, so a Hypercorn that stops looking the name
up fails a test instead of silently going back to unbounded zlib.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import trio
from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from app.echo.wsprotocol import DeflateSettings
from app.errors import PEER_GONE
from app.feed.batches import SharedText
from app.units import MiB
from app.web.wsapi import (
    ABNORMAL,
    NORMAL,
    POLICY_VIOLATION,
    Endpoint,
    WebSocketClosed,
    run_endpoint,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: What a send to a closing or vanished connection raises under Hypercorn on Trio: a peer
#: that is gone (:data:`~app.errors.PEER_GONE`), Hypercorn's own close racing our send
#: (``BusyResourceError``), or any other error of the transport underneath (``OSError``).
SEND_TO_CLOSING: Final = (*PEER_GONE, trio.BusyResourceError, OSError)


class AsgiWebSocket:
    """One ASGI websocket connection, with sends serialised and peer failures named.

    Resource handling: :meth:`close` is idempotent and never raises; once it
    has run, :meth:`send` raises :class:`WebSocketClosed`.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._send_lock = trio.Lock()
        self._accepted = False
        self._closed = False

    @property
    def path(self) -> str:
        return str(self.scope.get("path", ""))

    @property
    def peer(self) -> str:
        client = self.scope.get("client")
        return f"{client[0]}:{client[1]}" if client else "?"

    def header(self, name: str) -> str | None:
        """The first value of request header *name* (lower case), decoded as Latin-1."""
        key = name.encode("latin-1")
        for k, v in self.scope.get("headers", []):
            if k == key:
                return bytes(v).decode("latin-1")
        return None

    @property
    def query_string(self) -> str:
        return bytes(self.scope.get("query_string", b"")).decode("latin-1")

    async def accept(self) -> None:
        """Complete the handshake.  Raises :class:`WebSocketClosed` if the peer left first."""
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise WebSocketClosed(ABNORMAL, f"expected websocket.connect, got {message['type']}")
        await self._raw_send({"type": "websocket.accept"})
        self._accepted = True

    async def reject(self, status: int = 403) -> None:
        """Refuse the handshake; the client sees an HTTP error instead of a websocket."""
        message = await self._receive()
        if message["type"] == "websocket.connect":
            if status == 403:
                # ASGI's way to refuse a handshake; the server answers 403.
                await self._raw_send({"type": "websocket.close", "code": POLICY_VIOLATION})
            else:
                body = f"{status}\n".encode()
                start = {"type": "websocket.http.response.start", "status": status, "headers": []}
                await self._raw_send(start)
                await self._raw_send({"type": "websocket.http.response.body", "body": body})
        self._closed = True

    async def receive(self) -> str | bytes:
        """The next message, as sent (text stays text, binary stays binary).

        Raises:
            WebSocketClosed: the peer closed or the connection broke.
        """
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self._closed = True
        raise WebSocketClosed(int(message.get("code", ABNORMAL)), str(message.get("reason") or ""))

    async def send(self, data: str | bytes) -> None:
        """Send one message, text or binary as given.

        Raises:
            WebSocketClosed: the connection is closed or the peer is gone.
        """
        if isinstance(data, str):
            await self._raw_send({"type": "websocket.send", "text": data})
        else:
            await self._raw_send({"type": "websocket.send", "bytes": data})

    async def send_utf8(self, data: bytes) -> None:
        """Send UTF-8 bytes as a text message (ASGI carries text as ``str``: decoded here)."""
        await self._raw_send({"type": "websocket.send", "text": data.decode()})

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close frame (if still possible).  Idempotent; never raises."""
        if self._closed or not self._accepted:
            self._closed = True
            return
        try:
            await self._raw_send({"type": "websocket.close", "code": code, "reason": reason})
        except WebSocketClosed:
            pass
        self._closed = True

    # issue 12: one frame for many peers.
    @property
    def shares_frames(self) -> bool:
        """Never: Hypercorn compresses each connection's messages itself."""
        return False

    async def send_shared(self, message: SharedText) -> None:
        """Send *message* as text; Hypercorn compresses it for this connection alone."""
        await self.send_utf8(message.data)

    async def _raw_send(self, message: Message) -> None:
        if self._closed:
            raise WebSocketClosed(ABNORMAL, "already closed")
        async with self._send_lock:
            try:
                await self._send(message)
            except SEND_TO_CLOSING as exc:
                self._closed = True
                raise WebSocketClosed(ABNORMAL, type(exc).__name__) from None


@dataclass(frozen=True, slots=True)
class DeflateLimits:
    """What :class:`BoundedPerMessageDeflate` may negotiate and inflate on one route."""

    deflate: DeflateSettings
    #: ``--max-message-size``: a compressed message inflating past it is refused (1009).
    max_message_size: int = 1 * MiB


# Set by AsgiEndpoint in the app's task, read when Hypercorn builds the extension there.
# Unset (a Hypercorn connection that is not one of our routes): the defaults.
_limits: ContextVar[DeflateLimits | None] = ContextVar("trio_echo_ws_deflate", default=None)


class AsgiEndpoint:
    """The ASGI app of one websocket route: runs *endpoint* under :func:`run_endpoint`.

    *limits* bound permessage-deflate on this route (see the module docstring).
    """

    def __init__(
        self, endpoint: Endpoint, draining: trio.Event, limits: DeflateLimits | None = None
    ) -> None:
        self._endpoint = endpoint
        self._draining = draining
        self._limits = limits if limits is not None else DeflateLimits(DeflateSettings())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _limits.set(self._limits)  # this task's context only: Hypercorn spawned it for us
        await run_endpoint(AsgiWebSocket(scope, receive, send), self._endpoint, self._draining)


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate (RFC 7692) within :class:`DeflateLimits`.

    * Declines the offer when ``--ws-compression off``.
    * Answers ``server_max_window_bits`` and ``client_max_window_bits`` (when
      the client can honour it) no larger than the configured bits; compresses
      with the configured memLevel.
    * Keeps a compressed message's state across control frames between its fragments.
    * Inflates at most ``max_message_size`` + 1 bytes of a message: one more
      and the message is refused with 1009 (``CloseReason.MESSAGE_TOO_BIG``;
      Hypercorn 0.18 then drops the connection without a close frame, its
      known deviation, docs/decisions.md), so a bomb costs what a legal
      message does.
    """

    def __init__(self) -> None:
        # No bound on the client's window unless it says it can honour one (RFC 7692 7.1.2.2).
        super().__init__()
        self._bounds = _limits.get() or DeflateLimits(DeflateSettings())
        #: Bytes inflated so far of the compressed message being received.
        self._inflated = 0

    def accept(self, offer: str) -> bool | str | None:
        deflate = self._bounds.deflate
        if not deflate.enabled:
            return None
        # wsproto's own parser of the offer (it also sets the *_no_context_takeover flags).
        client_bits, server_bits = self._parse_params(offer)
        params = []
        if self.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.server_no_context_takeover:
            params.append("server_no_context_takeover")
        try:
            if client_bits is not None:
                self.client_max_window_bits = min(client_bits, deflate.window_bits)
                params.append(f"client_max_window_bits={self.client_max_window_bits}")
            self.server_max_window_bits = min(server_bits or 15, deflate.window_bits)
        except ValueError:
            return None  # 8 bits: zlib cannot deflate raw streams with it; decline
        params.append(f"server_max_window_bits={self.server_max_window_bits}")
        self._enabled = True
        return "; ".join(params)

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            # wsproto 1.3 lets a control frame reset the message's compression state, so a
            # ping between the fragments of a compressed message garbles the rest of it
            # (RFC 6455 5.4 allows it there): control frames leave that state alone.
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._inbound_is_compressible = False
            return RsvBits(True, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data  # not compressed: Hypercorn's own buffer bounds it
        assert self._decompressor is not None
        room = self._bounds.max_message_size - self._inflated + 1
        try:
            out = self._decompressor.decompress(bytes(data), room)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._bounds.max_message_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not self._inbound_is_compressible:
            return None  # a control frame (see frame_inbound_header)
        result = super().frame_inbound_complete(proto, fin)
        if fin:
            self._inflated = 0  # the message is whole (its last few bytes are the flush)
        return result

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if self._compressor is None and opcode in (Opcode.TEXT, Opcode.BINARY):
            # wsproto would make it with zlib's default memLevel (8): make it ours first.
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.server_max_window_bits,
                self._bounds.deflate.mem_level,
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)


# Hypercorn builds the extension by this module-level name (see the module docstring).
if ws_stream.PerMessageDeflate is not PerMessageDeflate:
    raise ImportError(
        "hypercorn.protocol.ws_stream.PerMessageDeflate is no longer wsproto's class: "
        "app/web/wsasgi.py cannot bound permessage-deflate on --ws-engine asgi"
    )
setattr(ws_stream, "PerMessageDeflate", BoundedPerMessageDeflate)  # noqa: B010
