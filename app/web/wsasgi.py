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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import trio

from app.errors import PEER_GONE
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

    async def _raw_send(self, message: Message) -> None:
        if self._closed:
            raise WebSocketClosed(ABNORMAL, "already closed")
        async with self._send_lock:
            try:
                await self._send(message)
            except SEND_TO_CLOSING as exc:
                self._closed = True
                raise WebSocketClosed(ABNORMAL, type(exc).__name__) from None


class AsgiEndpoint:
    """The ASGI app of one websocket route: runs *endpoint* under :func:`run_endpoint`."""

    def __init__(self, endpoint: Endpoint, draining: trio.Event) -> None:
        self._endpoint = endpoint
        self._draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await run_endpoint(AsgiWebSocket(scope, receive, send), self._endpoint, self._draining)
