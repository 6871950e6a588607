"""What a websocket endpoint sees, whichever server stack carries the connection.

The endpoints (:mod:`app.web.ws_echo`, :mod:`app.web.ws_events`) are written
once against :class:`WebSocket`.  Two shells implement it:

* :mod:`app.web.wstrio`: the websockets library's Trio connection, on
  connections the front routes to it (``/ws/events`` by default, every
  ``/ws/`` route with ``--ws-engine fast``);
* :mod:`app.web.wsasgi`: the ASGI app under Hypercorn (``--ws-engine asgi``,
  and upgrades that arrive on a connection that already served HTTP).

``/ws/echo`` under the default ``--ws-engine epoll`` is not an endpoint at
all: :mod:`app.echo.websocket` serves it without a task per connection.

:func:`run_endpoint` is the one place that decides how an endpoint ends:
when the server drains it is cancelled and says 1001; if it fails, that
connection alone is closed with 1011 and one line is logged; however it
ends, a close frame is attempted, briefly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import trio

from app.errors import describe

log = logging.getLogger(__name__)

# How long a finishing endpoint may spend on its closing handshake.
CLOSE_GRACE: Final = 0.5

# RFC 6455 close codes used by the endpoints.
NORMAL: Final = 1000
GOING_AWAY: Final = 1001
POLICY_VIOLATION: Final = 1008
INTERNAL_ERROR: Final = 1011
ABNORMAL: Final = 1006


class WebSocketClosed(Exception):
    """The connection is closed (by the peer, the server, or a broken transport)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket(Protocol):
    """One websocket connection, handshake not yet answered.

    Sends are serialised by the shell; a send to a peer that is gone raises
    :class:`WebSocketClosed`, never a transport error.
    """

    @property
    def path(self) -> str:
        """The request path, without the query string."""
        ...

    @property
    def peer(self) -> str:
        """``host:port`` of the client."""
        ...

    @property
    def query_string(self) -> str:
        """The raw query string, without the ``?``."""
        ...

    def header(self, name: str) -> str | None:
        """The first value of request header *name* (lower case)."""
        ...

    async def accept(self) -> None:
        """Complete the handshake.  Raises :class:`WebSocketClosed` if the peer left first."""
        ...

    async def reject(self, status: int) -> None:
        """Refuse the handshake with an HTTP *status*; the client never gets a websocket."""
        ...

    async def receive(self) -> str | bytes:
        """The next whole message; text as ``str``, binary as ``bytes``."""
        ...

    async def send(self, data: str | bytes) -> None:
        """Send one message: ``str`` as text, ``bytes`` as binary."""
        ...

    async def send_utf8(self, data: bytes) -> None:
        """Send *data*, already-encoded UTF-8, as one text message.

        For frames built as bytes (the feed's batches): a shell that can frame
        bytes as text does so without decoding them first.
        """
        ...

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Start (and briefly wait for) the closing handshake.  Idempotent; never raises."""
        ...


Endpoint = Callable[[WebSocket], Awaitable[None]]


async def run_endpoint(ws: WebSocket, endpoint: Endpoint, draining: trio.Event) -> None:
    """Run *endpoint* until it returns, the peer leaves, or the server drains.

    On drain the endpoint is cancelled and the connection closed with 1001
    (going away).  However the endpoint ends, a close frame is attempted,
    within :data:`CLOSE_GRACE`: a cancelled endpoint still says goodbye.
    """
    code, reason = NORMAL, ""
    try:
        async with trio.open_nursery() as nursery:

            async def watch_drain() -> None:
                nonlocal code, reason
                await draining.wait()
                code, reason = GOING_AWAY, "server shutting down"
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_drain)
            try:
                await endpoint(ws)
            except* WebSocketClosed:
                pass  # the peer left or the transport broke (also from an endpoint's nursery)
            nursery.cancel_scope.cancel()
    except Exception as exc:  # the per-connection boundary: a bug ends this connection only
        code, reason = INTERNAL_ERROR, "internal error"
        log.error("websocket %s %s failed: %s", ws.peer, ws.path, describe(exc))
        log.debug("websocket %s %s failure", ws.peer, ws.path, exc_info=True)
    finally:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await ws.close(code, reason)
