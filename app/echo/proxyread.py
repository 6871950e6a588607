"""Reading a PROXY protocol header off a Trio socket, for the listeners that hand on a stream.

The web front (and the TLS listeners) give the connection to a library
(Hypercorn, websockets, ``ssl``) that must see the stream starting at its
first payload byte.  So this reader takes exactly the header and not one byte
more: it peeks (``MSG_PEEK``, nothing consumed) until :func:`app.echo.proxy.parse`
finds a whole header, then reads exactly its length.  The echo engines read
differently (they keep what came after the header and echo it themselves).

A header split across TCP segments is peeked again after
:data:`PEEK_RETRY`: rare (HAProxy sends it in one write) and bounded by
:data:`~app.echo.proxy.HEADER_TIMEOUT`.
"""

from __future__ import annotations

import select
import socket
from typing import Any, Final

import trio

from app.echo.proxy import HEADER_TIMEOUT, MAX_HEADER, ProxyHeader, ProxyPolicy, ProxyProtocolError

# Wait between two peeks while a header is incomplete.
PEEK_RETRY: Final = 0.01


async def read_proxy_header(sock: trio.socket.SocketType, policy: ProxyPolicy) -> ProxyHeader:
    """Consume the PROXY header at the start of *sock*, and only it.

    Raises:
        ProxyProtocolError: not a valid header of an accepted version, the
            peer closed or reset before it was whole, or it was not whole
            within :data:`~app.echo.proxy.HEADER_TIMEOUT` seconds.

    Cancellation: safe; the socket is left to its owner to close.
    """
    with trio.move_on_after(HEADER_TIMEOUT):
        try:
            while True:
                head = await sock.recv(MAX_HEADER, socket.MSG_PEEK)
                if not head:
                    raise ProxyProtocolError("connection closed before a whole PROXY header")
                header = policy.parse(head)
                if isinstance(header, ProxyHeader):
                    left = header.length
                    while left:
                        taken = await sock.recv(left)
                        if not taken:
                            raise ProxyProtocolError("connection closed inside its PROXY header")
                        left -= len(taken)
                    return header
                if _peer_half_closed(sock):
                    # A peek sees the same bytes forever; no more will come after a FIN.
                    raise ProxyProtocolError(
                        f"connection closed after {len(head)} bytes of an unfinished PROXY header"
                    )
                await trio.sleep(PEEK_RETRY)
        except OSError as exc:
            raise ProxyProtocolError(f"connection failed before its PROXY header: {exc}") from None
    raise ProxyProtocolError(f"no whole PROXY header within {HEADER_TIMEOUT:g} s")


def _peer_half_closed(sock: trio.socket.SocketType) -> bool:
    """Whether the peer sent its FIN (POLLRDHUP), even while unread bytes wait before it."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP)
    return any(events & select.POLLRDHUP for _, events in poller.poll(0))


class ProxiedSocket:
    """A Trio socket that reports the client address a PROXY header carried as its peer.

    Hypercorn builds the ASGI scope's ``client`` from ``getpeername()``; this
    makes it (and anything else that asks) see the client, not the balancer.
    Everything else goes to the real socket.
    """

    def __init__(self, sock: trio.socket.SocketType, peer: tuple[str, int]) -> None:
        self._sock = sock
        self._peer = peer

    def getpeername(self) -> tuple[str, int]:
        """The carried client address ``(host, port)``."""
        return self._peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
