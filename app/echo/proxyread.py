"""The PROXY header at the start of a connection: read, checked, refused in one place.

Every listener with ``--proxy-protocol`` refuses at accept a peer not in
``--proxy-trusted`` (:func:`refuse_untrusted`).  Those that read the header in
the connection's own task (all but the epoll engine, which reads it in its
loop) close a connection with a bad header through :func:`greet`: one counted
log line, the socket closed.  Only how the header is read differs:

* the TCP echo engines read it themselves (they keep the bytes that came after
  it and echo them);
* the web front and the TLS listeners hand the stream to a library (Hypercorn,
  websockets, ``ssl``) that must see it from its first payload byte, so
  :func:`read_proxy_header` takes exactly the header and not one byte more.

How :func:`read_proxy_header` knows when the peer gave up, portably: it peeks
(``MSG_PEEK``), and while :func:`app.echo.proxy.parse` says the header is not
whole, every byte peeked belongs to the header (a v1 line has not reached its
CRLF, a v2 header not its declared length), so it takes them.  The next peek
then waits in Trio's I/O manager for new bytes and returns ``b""`` at the
peer's FIN.  No polling and no ``POLLRDHUP`` (Linux-only): a truncated header
followed by FIN is refused at once on every system, and a stalled one costs
nothing until :data:`~app.echo.proxy.HEADER_TIMEOUT`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from app.echo.proxy import (
    HEADER_TIMEOUT,
    MAX_HEADER,
    ProxyCounts,
    ProxyHeader,
    ProxyPolicy,
    ProxyProtocolError,
    peer_host,
)

#: A socket of either kind: the engines hold stdlib sockets, the web front Trio's.
AnySocket = socket.socket | trio.socket.SocketType


def refuse_untrusted(
    policy: ProxyPolicy | None, refusals: ProxyCounts, sock: AnySocket, peer: str
) -> bool:
    """At accept: close *sock* if a PROXY header is required and *peer* may not send one.

    Returns True when the connection was refused (counted and told in one line
    by *refusals*); False when the caller goes on (no policy, or a trusted peer).
    A header is a claim about the client, believable only from a known balancer.
    """
    if policy is None or policy.trusts(peer_host(peer)):
        return False
    refusals.refuse_untrusted(peer)
    sock.close()
    return True


async def greet(
    sock: AnySocket,
    peer: str,
    refusals: ProxyCounts,
    read: Callable[[], Awaitable[ProxyHeader]],
) -> ProxyHeader | None:
    """Read a connection's PROXY header with *read*; refuse the connection if it fails.

    *peer* is the socket's address, for the log line.  Returns the header
    (counted as accepted by *refusals*), or None once a
    :class:`~app.echo.proxy.ProxyProtocolError` from *read* has been counted
    and logged by *refusals* and *sock* closed.

    Cancellation (and any other exception): *sock* is closed and the
    exception propagates; the connection leaves no trace.
    """
    try:
        header = await read()
    except ProxyProtocolError as exc:
        refusals.refuse(peer, str(exc))
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    refusals.accept()
    return header


async def read_proxy_header(sock: trio.socket.SocketType, policy: ProxyPolicy) -> ProxyHeader:
    """Consume the PROXY header at the start of *sock*, and only it.

    Raises:
        ProxyProtocolError: not a valid header of an accepted version, the
            peer closed or reset before it was whole, or it was not whole
            within :data:`~app.echo.proxy.HEADER_TIMEOUT` seconds.

    Cancellation: part of the header may have been taken, so the socket is
    good only for closing, which is left to its owner.
    """
    taken = b""  # a beginning of the header, consumed
    with trio.move_on_after(HEADER_TIMEOUT):
        try:
            while True:
                ahead = await sock.recv(MAX_HEADER - len(taken), socket.MSG_PEEK)
                if not ahead:
                    raise ProxyProtocolError(
                        f"connection closed after {len(taken)} bytes of an unfinished PROXY header"
                        if taken
                        else "connection closed before a PROXY header"
                    )
                header = policy.parse(taken + ahead)
                if isinstance(header, ProxyHeader):
                    await _take(sock, header.length - len(taken))
                    return header
                # Not whole yet: all of it is header.  Taking it makes the next peek wait
                # for new bytes, or see the FIN (see the module's docstring).
                await _take(sock, len(ahead))
                taken += ahead
        except OSError as exc:
            raise ProxyProtocolError(f"connection failed before its PROXY header: {exc}") from None
    raise ProxyProtocolError(f"no whole PROXY header within {HEADER_TIMEOUT:g} s")


async def _take(sock: trio.socket.SocketType, count: int) -> None:
    """Consume *count* bytes already peeked (so they are there; one read, as a rule)."""
    while count:
        taken = await sock.recv(count)
        if not taken:
            raise ProxyProtocolError("connection closed inside its PROXY header")
        count -= len(taken)


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
