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
import time
import weakref
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
# While accept(2) keeps failing for want of a resource, the count of failures
# is logged at most this often (seconds): the first at once, like LimitLog.
CAPACITY_LOG_EVERY: Final = 1.0
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
        raise named_error(exc, what, host, port) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise named_error(exc, what, host, port) from None
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
        raise named_error(exc, what, host, port) from None
    return sock


def named_error(exc: OSError, what: str, host: str, port: int) -> OSError:
    """*exc* again, its message naming what could not listen where (one line for the user)."""
    return OSError(exc.errno, f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}")


def bound_port(sock: socket.socket) -> int:
    """The port *sock* is bound to (the real one when 0 was asked)."""
    return int(sock.getsockname()[1])


def address_text(addr: Any) -> str:
    """``host:port`` for an IPv4 address, ``[host]:port`` for IPv6."""
    return f"{bracket(addr[0])}:{addr[1]}"


class CapacityLog:
    """accept(2) out of a resource (file descriptors, memory), told in a few lines, not a flood.

    Each capacity error pauses accepting for :data:`ACCEPT_CAPACITY_SLEEP`, so
    a process out of descriptors meets one ten times a second for as long as
    it lasts.  Like the connection-limit refusals (:class:`app.echo.conns.LimitLog`):
    the first error of a spell is logged at once, then a count at most once
    per :data:`CAPACITY_LOG_EVERY`, and one line when accepting works again.
    Not a trio object: *clock* is any monotonic clock in seconds.
    """

    def __init__(self, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._where = where
        self._clock = clock
        self._since: float | None = None
        self._last_failure = 0.0
        self._logged_at = 0.0
        self._unlogged = 0
        #: Capacity errors in total.
        self.total = 0

    def failed(self, exc: OSError) -> None:
        """Count one capacity error; log it if it starts a spell, or a count if one is due."""
        self.total += 1
        now = self._last_failure = self._clock()
        if self._since is None:
            self._since = self._logged_at = now
            log.error(
                "accept on %s: %s; pausing %.1f s at a time until connections close",
                self._where,
                exc.strerror or exc,
                ACCEPT_CAPACITY_SLEEP,
            )
            return
        self._unlogged += 1
        if now - self._logged_at >= CAPACITY_LOG_EVERY:
            self._flush(now, exc)

    def succeeded(self) -> None:
        """A connection was accepted: the spell ends once none failed for a log interval.

        (A single descriptor freed in a spell lets one accept through before
        the next error; that is still the same spell.)
        """
        if self._since is None:
            return
        now = self._clock()
        if now - self._last_failure < CAPACITY_LOG_EVERY:
            return
        if self._unlogged:
            self._flush(now, None)
        log.warning(
            "accept on %s: accepting again after %.1f s",
            self._where,
            self._last_failure - self._since,
        )
        self._since = None

    def _flush(self, now: float, exc: OSError | None) -> None:
        what = f" ({exc.strerror or exc})" if exc is not None else ""
        log.warning(
            "accept on %s: %d more failures for want of resources%s in the last %.1f s",
            self._where,
            self._unlogged,
            what,
            now - self._logged_at,
        )
        self._unlogged = 0
        self._logged_at = now


# One CapacityLog per listening socket, made on its first capacity error.
_capacity_logs: weakref.WeakKeyDictionary[socket.socket, CapacityLog] = weakref.WeakKeyDictionary()


def capacity_log(listener: socket.socket) -> CapacityLog:
    """The :class:`CapacityLog` of *listener* (one per socket, for as long as it lives)."""
    found = _capacity_logs.get(listener)
    if found is None:
        try:
            where = address_text(listener.getsockname())
        except OSError:
            where = "a closed listener"
        found = _capacity_logs[listener] = CapacityLog(where)
    return found


def accept_batch(listener: socket.socket, on_accept: Callable[[socket.socket, str], None]) -> bool:
    """Accept up to :data:`ACCEPT_BATCH` waiting connections, handing each to *on_accept*.

    *on_accept* gets a non-blocking socket and the peer's ``host:port``; it
    must not block, and it owns the socket from then on (it closes it when
    it refuses the connection).

    Returns:
        True when accept(2) ran out of a resource (file descriptors, memory):
        the caller should stop accepting for :data:`ACCEPT_CAPACITY_SLEEP`.
        Logged through the listener's :class:`CapacityLog`.
    """
    for i in range(ACCEPT_BATCH):
        try:
            sock, addr = listener.accept()
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                capacity_log(listener).failed(exc)
                return True
            if exc.errno in ACCEPT_GONE_ERRNOS:
                continue
            raise
        if i == 0 and _capacity_logs:
            spell = _capacity_logs.get(listener)
            if spell is not None:
                spell.succeeded()
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
