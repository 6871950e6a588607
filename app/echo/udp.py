"""UDP echo (RFC 862, "UDP Based Echo Service"): each datagram goes back to its sender as it came.

Why it looks like this:

* Speed.  A Trio task that awaits ``recvfrom`` and ``sendto`` per datagram
  pays two trips through the scheduler and the I/O manager for each one
  (measured: a third of asyncio + uvloop's rate).  Here one task waits for the
  socket to become readable (a normal checkpoint), then drains it with plain
  non-blocking ``recvfrom_into`` into one buffer and ``sendto`` straight from
  it, up to :data:`BATCH` datagrams per wake-up, with no task switch and no
  allocation per datagram but the sender's address.
* Never a byte more.  The buffer is larger than any datagram (65,536 bytes),
  so a datagram is never cut; one over ``--udp-max-datagram`` (65,507, the
  IPv4 maximum, by default) is dropped, not truncated, and counted.
* No reflector.  UDP sources can be forged, so an open echo port can be
  used to flood a third party with its own address as the source.
  :class:`RateGate` bounds what is echoed to each source address per second
  and to all of them together; past a bound datagrams are dropped, counted,
  and summed up in one log line a second.  Loopback is exempt by default
  (``--udp-rate-exempt``): it cannot be forged from the network, and a
  reflection to it reaches only this host.
* The page.  Each active source (address and port) gets a lane, like a TCP
  connection: a :class:`~app.echo.conns.Conn` in the ``udp`` table with the
  same counters, at most :data:`MAX_LANES` at once, forgotten after
  :data:`LANE_IDLE` seconds without a datagram.  Traffic from sources past
  that bound is still echoed and counted in the totals.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from app.config import Network, address_in
from app.echo.conns import Conn, ConnTable

log = logging.getLogger(__name__)

# Larger than any UDP payload (IPv4: 65,507; IPv6 without jumbograms: 65,527),
# so recvfrom_into never truncates and an over-size datagram can be seen as such.
RECV_SIZE: Final = 65_536
# Datagrams served per wake-up before yielding to the other tasks: at ~3 us
# each, about 1.5 ms of loop time at most.
BATCH: Final = 512
# Lanes (sources shown on the page) at once; the page draws the 200 busiest.
MAX_LANES: Final = 256
# A source that sent nothing for this long loses its lane (UDP has no close).
LANE_IDLE: Final = 10.0
# The rate windows are one second long; every source's count restarts together.
WINDOW: Final = 1.0
# Distinct source addresses remembered per window; past it, new sources are
# checked but not remembered (exempt) or dropped (bound).  Bounds the gate's memory.
MAX_SOURCES: Final = 65_536


@dataclass(slots=True)
class UdpDrops:
    """Datagrams not echoed, by reason; totals since start."""

    #: Over the per-source bound (``--udp-source-rate``, ``--udp-source-bytes``).
    source: int = 0
    #: Over the global bound (``--udp-global-rate``, ``--udp-global-bytes``).
    total: int = 0
    #: Larger than ``--udp-max-datagram``.
    oversize: int = 0
    #: sendto failed (a route or buffer error); the datagram is lost.
    failed: int = 0

    @property
    def all(self) -> int:
        """Every drop, whatever the reason."""
        return self.source + self.total + self.oversize + self.failed


class RateGate:
    """Per-source and global bounds on what is echoed, in one-second windows (no I/O).

    Bounds count datagrams and bytes per window; the first datagram of a
    window that would pass a bound is dropped, and so is every one after it
    until the window ends.  All windows restart together, which keeps the
    bookkeeping one dict cleared once a second: memory is bounded by the
    sources seen in one second (at most the global rate, and
    :data:`MAX_SOURCES`).

    Call :meth:`start_batch` with the time before each batch, then
    :meth:`admit` per datagram.
    """

    def __init__(
        self,
        *,
        source_rate: int,
        source_bytes: int,
        global_rate: int,
        global_bytes: int,
        exempt: tuple[Network, ...],
        drops: UdpDrops,
    ) -> None:
        self.source_rate = source_rate
        self.source_bytes = source_bytes
        self.global_rate = global_rate
        self.global_bytes = global_bytes
        self._exempt = exempt
        self.drops = drops
        #: Per source address: ``[datagrams, bytes]`` this window, or None when exempt.
        self._sources: dict[str, list[int] | None] = {}
        self._count = 0
        self._bytes = 0
        self._window_end = 0.0
        self._reported = (0, 0)
        #: Distinct sources dropped this window (for the log line).
        self._dropped_sources: set[str] = set()

    @property
    def unlogged(self) -> bool:
        """Whether this window dropped datagrams that no log line has told yet."""
        return (self.drops.source, self.drops.total) != self._reported

    @property
    def window_end(self) -> float:
        """When the current window ends (the time :meth:`start_batch` is given)."""
        return self._window_end

    @property
    def verdicts(self) -> dict[str, list[int] | None]:
        """This window's record per source (None: exempt); the same dict for the gate's life."""
        return self._sources

    def start_batch(self, now: float) -> None:
        """Start a new window if the current one is over (and log the last one's drops)."""
        if now < self._window_end:
            return
        self._log_drops()
        self._sources.clear()
        self._dropped_sources.clear()
        self._count = 0
        self._bytes = 0
        self._window_end = now + WINDOW

    def admit(self, host: str, size: int) -> bool:
        """Whether a datagram of *size* bytes from *host* may be echoed now (and count it)."""
        sources = self._sources
        record = sources.get(host, _UNSEEN)
        if record is None:
            return True
        if record is _UNSEEN:
            if self._is_exempt(host):
                if len(sources) < MAX_SOURCES:
                    sources[host] = None
                return True
            if self._count >= self.global_rate or self._bytes + size > self.global_bytes:
                self._drop_global(host)
                return False
            if len(sources) >= MAX_SOURCES:
                self._drop_global(host)
                return False
            record = sources[host] = [0, 0]
        assert record is not None
        if record[0] >= self.source_rate or record[1] + size > self.source_bytes:
            self.drops.source += 1
            if len(self._dropped_sources) < MAX_SOURCES:
                self._dropped_sources.add(host)
            return False
        if self._count >= self.global_rate or self._bytes + size > self.global_bytes:
            self._drop_global(host)
            return False
        record[0] += 1
        record[1] += size
        self._count += 1
        self._bytes += size
        return True

    def _drop_global(self, host: str) -> None:
        self.drops.total += 1
        if len(self._dropped_sources) < MAX_SOURCES:
            self._dropped_sources.add(host)

    def _is_exempt(self, host: str) -> bool:
        return bool(self._exempt) and address_in(host, self._exempt)

    def _log_drops(self) -> None:
        """One warning line for the window that ended, if it dropped anything."""
        now = (self.drops.source, self.drops.total)
        source, total = now[0] - self._reported[0], now[1] - self._reported[1]
        self._reported = now
        if source or total:
            log.warning(
                "udp echo: dropped %d datagrams over the per-source bound and %d over the "
                "global bound, from %d sources (anti-reflection limits)",
                source,
                total,
                len(self._dropped_sources),
            )


_UNSEEN: Final[Any] = object()


class UdpEngine:
    """Echo datagrams on *sock* (a bound, non-blocking UDP socket) until cancelled."""

    name: Final = "udp"

    def __init__(
        self,
        sock: socket.socket,
        table: ConnTable,
        gate: RateGate,
        *,
        max_datagram: int,
        now: Callable[[], float] = trio.current_time,
    ) -> None:
        self._sock = sock
        self._table = table
        self._gate = gate
        self._drops = gate.drops
        self._max = max_datagram
        self._now = now
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)
        #: Lanes by the source's full address (host, port, ...).
        self._lanes: dict[Any, Conn] = {}

    async def run(self) -> None:
        """Serve until cancelled; every lane is closed on the way out.

        Cancellation: the usual way to stop it; a datagram being waited on
        for send room is lost (UDP promises nothing more).
        """
        try:
            await self._loop()
        finally:
            for conn in list(self._lanes.values()):
                self._table.close(conn, "shutdown")
            self._lanes.clear()

    async def _loop(self) -> None:
        sock = self._sock
        fd = sock.fileno()
        recvfrom_into = sock.recvfrom_into
        sendto = sock.sendto
        buf = self._buf
        view = self._view
        lanes = self._lanes
        gate = self._gate
        admit = gate.admit
        # The gate's verdicts this window, by source address: None for an exempt source,
        # so the common case (loopback, or a known exempt network) costs one dict lookup.
        verdict = gate.verdicts.get
        drops = self._drops
        table = self._table
        largest = self._max
        now = self._now
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        flowing = False
        while True:
            if flowing:
                # Datagrams came in the last batch: yield once and look again.  Under load
                # the socket is readable again by then, which saves arming a wait (an
                # epoll_ctl) and the wake-up after it; an empty look goes back to waiting.
                await checkpoint()
            elif gate.unlogged:
                # Drops to sum up: wake when the window ends even if no datagram comes.
                with trio.move_on_at(gate.window_end):
                    await wait_readable(fd)
            else:
                await wait_readable(fd)
            gate.start_batch(now())
            flowing = False
            for _ in range(BATCH):
                try:
                    n, addr = recvfrom_into(buf)
                except BlockingIOError:
                    break
                except OSError as exc:
                    # An ICMP error queued on the socket (e.g. port unreachable); nothing to echo.
                    log.debug("udp echo: receive failed: %s", exc)
                    continue
                flowing = True
                if n > largest:
                    drops.oversize += 1
                    continue
                host = addr[0]
                if verdict(host, _UNSEEN) is not None and not admit(host, n):
                    continue
                try:
                    sendto(view[:n], addr)
                except BlockingIOError:
                    # The send buffer is full: wait for room (meanwhile nothing is read,
                    # so the kernel drops what the receive buffer cannot hold).
                    if not await self._send_later(bytes(view[:n]), addr):
                        continue
                except OSError as exc:
                    drops.failed += 1
                    log.debug("udp echo: cannot send to %s: %s", addr, exc)
                    continue
                conn = lanes.get(addr)
                if conn is None:
                    conn = self._open_lane(addr)
                    if conn is None:
                        # No lane free: the totals still count it.
                        table.closed_bytes += n + n
                        table.closed_msgs += 1
                        continue
                conn.bytes_in += n
                conn.bytes_out += n
                conn.msgs += 1

    async def _send_later(self, data: bytes, addr: Any) -> bool:
        """Send *data* once the socket has room; False if it failed (counted, logged at debug)."""
        while True:
            await trio.lowlevel.wait_writable(self._sock)
            try:
                self._sock.sendto(data, addr)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._drops.failed += 1
                log.debug("udp echo: cannot send to %s: %s", addr, exc)
                return False
            return True

    def _open_lane(self, addr: Any) -> Conn | None:
        table = self._table
        if table.full:
            return None
        host, port = addr[0], addr[1]
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        conn = table.admit(peer, lambda _reason: self._close_lane(addr))
        if conn is not None:
            self._lanes[addr] = conn
        return conn

    def _close_lane(self, addr: Any) -> None:
        conn = self._lanes.pop(addr, None)
        if conn is not None:
            self._table.close(conn, "idle")


def open_datagram(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A UDP socket bound to *host*:*port* (0 picks a free port), non-blocking.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
