"""Listening sockets and the greedy accept loop shared by the echo engines and the web front.

Why not ``trio.serve_listeners``: it accepts one connection per scheduler
pass, so a storm of connects overflows the listen backlog while the loop is
busy elsewhere.  This loop drains the backlog in bounded batches each time the
listener is readable, and hands each socket to a synchronous callback that
decides (limits first) and starts whatever serves it.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

import trio

from app.ready import bracket

log = logging.getLogger(__name__)

# Connections taken per wake-up before yielding to the other tasks: enough to
# drain a listen(500) backlog in two passes, small enough that one pass stays
# well under a millisecond.
ACCEPT_BATCH: Final = 256

# Errors that accept(2) returns when the process or system is out of a
# resource (same set as trio's serve_listeners).  Nothing is wrong with the
# listener: wait a little, let connections close, try again.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# Back-off after a capacity error, as trio's serve_listeners does.
ACCEPT_CAPACITY_SLEEP: Final = 0.1
# A connection that died in the backlog before we took it: skip it.
ACCEPT_GONE_ERRNOS: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})


def bind_port(host: str, port: int, what: str, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to *host*:*port* (0 picks a free port), not listening yet.

    *reuse_port* sets SO_REUSEPORT so that several worker processes can share
    the port and the kernel spreads connections between them (the supervisor
    of ``--workers N`` also holds a port this way, without listening, so that
    it never receives a connection).

    Raises:
        OSError: the address cannot be resolved or bound (in use, not local);
            the message names *what* and the address, one line for the user.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _named(exc, what, host, port) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise _named(exc, what, host, port) from None
    except BaseException:
        sock.close()
        raise
    return sock


def open_listener(
    host: str, port: int, backlog: int, what: str, *, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking socket listening on *host*:*port*; see :func:`bind_port`.

    Raises:
        OSError: as :func:`bind_port`, or listen(2) failed (named the same way).
    """
    sock = bind_port(host, port, what, reuse_port=reuse_port)
    try:
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _named(exc, what, host, port) from None
    return sock


def _named(exc: OSError, what: str, host: str, port: int) -> OSError:
    """*exc* again, its message naming what could not listen where (one line for the user)."""
    return OSError(exc.errno, f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}")


def bound_port(sock: socket.socket) -> int:
    """The port *sock* is bound to (the real one when 0 was asked)."""
    return int(sock.getsockname()[1])


def address_text(addr: Any) -> str:
    """``host:port`` for an IPv4 address, ``[host]:port`` for IPv6."""
    return f"{bracket(addr[0])}:{addr[1]}"


def accept_batch(listener: socket.socket, on_accept: Callable[[socket.socket, str], None]) -> bool:
    """Accept up to :data:`ACCEPT_BATCH` waiting connections, handing each to *on_accept*.

    *on_accept* gets a non-blocking socket and the peer's ``host:port``; it
    must not block, and it owns the socket from then on (it closes it when
    it refuses the connection).

    Returns:
        True when accept(2) ran out of a resource (file descriptors, memory):
        the caller should stop accepting for :data:`ACCEPT_CAPACITY_SLEEP`.
    """
    for _ in range(ACCEPT_BATCH):
        try:
            sock, addr = listener.accept()
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                log.error(
                    "accept: %s; pausing %.1f s for connections to close",
                    exc,
                    ACCEPT_CAPACITY_SLEEP,
                )
                return True
            if exc.errno in ACCEPT_GONE_ERRNOS:
                continue
            raise
        sock.setblocking(False)
        on_accept(sock, address_text(addr))
    return False


async def accept_forever(
    listener: socket.socket, on_accept: Callable[[socket.socket, str], None]
) -> None:
    """Accept connections on *listener* until cancelled (see :func:`accept_batch`).

    Cancellation: safe; sockets already handed over belong to their callbacks,
    the listener stays open (its owner closes it).
    """
    while True:
        await trio.lowlevel.wait_readable(listener)
        if accept_batch(listener, on_accept):
            await trio.sleep(ACCEPT_CAPACITY_SLEEP)
