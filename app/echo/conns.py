"""Bookkeeping of live echo connections: limits, counters, idleness, and their feed events.

Rules of this module:

* No trio and no sockets.  An engine calls :meth:`ConnTable.admit` when it
  accepts, bumps the counters of the :class:`Conn` on its hot path (plain
  attribute increments, nothing else), and calls :meth:`ConnTable.close` when
  the connection ends, however it ends.
* A connection is cut by calling the ``abort`` it registered, which each
  engine implements its own way (cancel the task's scope, close the socket);
  the table itself never touches I/O.
* Idleness is found by sweeping, not by a timer per connection: a per-message
  deadline update would cost every echo a heap operation.  A connection whose
  counters did not move for ``idle_timeout`` seconds is aborted at the next
  sweep, so the timeout holds within one sweep interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Final

from app.feed.events import ECHO_RUN, ConnClose, ConnOpen, ConnSample, Event, Transport

log = logging.getLogger(__name__)

# Busiest connections listed per EchoStats tick; the page draws lanes for them
# and the rest stays a total, so one tick is a few KiB at most.
MAX_SAMPLES: Final = 200

Publish = Callable[[Event], object]


class LimitLog:
    """One log line per burst of refusals: the first is logged at once, the rest summed up later.

    A flood of connects past a limit must not become a flood of log lines.
    """

    def __init__(self, what: str, limit: int) -> None:
        self._what = what
        self._limit = limit
        self._unlogged = 0
        #: Refusals in total.
        self.total = 0

    def refuse(self, peer: str) -> None:
        """Count a refusal of *peer*; log it if it is the first since the last :meth:`flush`."""
        self.total += 1
        if self._unlogged == 0:
            log.warning(
                "%s: %d connections open, the limit; closing %s and any more until one ends",
                self._what,
                self._limit,
                peer,
            )
        self._unlogged += 1

    def flush(self) -> int:
        """Log the refusals not logged yet, in one line; return how many since the last flush."""
        count = self._unlogged
        if count > 1:
            log.warning("%s: refused %d more connections over the limit", self._what, count - 1)
        self._unlogged = 0
        return count


class Conn:
    """One live echo connection.  Engines bump ``bytes_in``, ``bytes_out`` and ``msgs``."""

    __slots__ = (
        "_last_seen",
        "abort",
        "abort_reason",
        "bytes_in",
        "bytes_out",
        "closed",
        "id",
        "last_active",
        "msgs",
        "opened",
        "peer",
        "reported",
    )

    def __init__(
        self, conn_id: int, peer: str, opened: float, abort: Callable[[str], None]
    ) -> None:
        self.id = conn_id
        self.peer = peer
        self.opened = opened
        #: Cut the connection; called with the reason at most once, by the table.
        self.abort = abort
        self.abort_reason = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs = 0
        self.closed = False
        self.last_active = opened
        self._last_seen = 0
        #: ``bytes_in + bytes_out`` at the last stats tick.
        self.reported = 0

    @property
    def moved(self) -> int:
        """Bytes moved in both directions so far."""
        return self.bytes_in + self.bytes_out


class ConnTable:
    """The live connections of one transport (``tcp`` or ``ws``), with its connection limit.

    *new_id* hands out lane ids (shared with scenario tasks, so that the page
    can draw both), *publish* takes feed events, *now* reads the feed's clock.
    """

    def __init__(
        self,
        transport: Transport,
        limit: int,
        idle_timeout: float,
        *,
        new_id: Callable[[], int],
        publish: Publish,
        now: Callable[[], float],
        log_idle: bool = True,
    ) -> None:
        self.transport = transport
        #: Log each idle close (UDP lanes, which always end idle, do not).
        self.log_idle = log_idle
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._new_id = new_id
        self._publish = publish
        self._now = now
        self._conns: dict[int, Conn] = {}
        #: Connections refused because the table was full.
        self.refusals = LimitLog(f"{transport} echo", limit)
        #: Totals of connections that have closed, so that rates survive closes (and,
        #: for UDP, of datagrams from sources that got no lane).
        self.closed_bytes = 0
        self.closed_msgs = 0
        #: Connections admitted so far (``/metrics``: ``trio_echo_connections_accepted_total``).
        self.accepted = 0

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    @property
    def full(self) -> bool:
        """Whether the next connection would be over the limit."""
        return len(self._conns) >= self.limit

    def admit(self, peer: str, abort: Callable[[str], None]) -> Conn | None:
        """Register a new connection, or return None (and count a refusal) if the table is full.

        The caller closes a refused connection at once; :attr:`refusals` logs it.
        """
        if self.full:
            self.refusals.refuse(peer)
            return None
        conn = Conn(self._new_id(), peer, self._now(), abort)
        self.accepted += 1
        self._conns[conn.id] = conn
        self._publish(ConnOpen(task=conn.id, run=ECHO_RUN, transport=self.transport, peer=peer))
        return conn

    def close(self, conn: Conn, reason: str) -> None:
        """Forget *conn* and publish its totals.  Idempotent: only the first call counts."""
        if conn.closed:
            return
        conn.closed = True
        del self._conns[conn.id]
        self.closed_bytes += conn.moved
        self.closed_msgs += conn.msgs
        self._publish(
            ConnClose(
                task=conn.id,
                run=ECHO_RUN,
                transport=self.transport,
                peer=conn.peer,
                bytes_in=conn.bytes_in,
                bytes_out=conn.bytes_out,
                msgs=conn.msgs,
                dur=round(self._now() - conn.opened, 6),
                reason=conn.abort_reason or reason,
            )
        )

    def socket_failed(self, conn: Conn, exc: Exception, *, gone: bool) -> str:
        """Log a failed socket call on *conn* in one line; return the reason its close gives.

        A peer that is merely *gone* (the engine asks :data:`app.errors.PEER_GONE`;
        this module stays free of I/O imports) is routine and logged at debug
        level; any other error is a warning.  The engine closes the socket.
        """
        if gone:
            log.debug(
                "%s echo: %s went away: %s",
                self.transport,
                conn.peer,
                exc,
                extra=_fields(self, conn),
            )
            return "reset"
        log.warning(
            "%s echo: connection from %s failed: %s",
            self.transport,
            conn.peer,
            exc,
            extra=_fields(self, conn),
        )
        return "error"

    def abort(self, conn: Conn, reason: str) -> None:
        """Ask the engine to cut *conn*; the engine then calls :meth:`close`."""
        if conn.closed or conn.abort_reason:
            return
        conn.abort_reason = reason
        conn.abort(reason)

    def abort_all(self, reason: str) -> None:
        """Ask the engine to cut every open connection (see :meth:`abort`)."""
        for conn in self:
            self.abort(conn, reason)

    def sweep_idle(self) -> int:
        """Abort connections that moved no byte for ``idle_timeout`` seconds; return how many."""
        now = self._now()
        expired = 0
        for conn in self:
            moved = conn.moved
            if moved != conn._last_seen:
                conn._last_seen = moved
                conn.last_active = now
            elif now - conn.last_active >= self.idle_timeout:
                if self.log_idle:
                    log.info(
                        "%s echo: closing %s, idle for %.1f s",
                        self.transport,
                        conn.peer,
                        now - conn.last_active,
                        extra=_fields(self, conn),
                    )
                self.abort(conn, "idle")
                expired += 1
        return expired

    def samples(self) -> tuple[list[ConnSample], int, int]:
        """Busiest connections since the last call, and all bytes and messages ever moved.

        Returns ``(samples, total_bytes, total_msgs)``; totals include closed
        connections, so the caller can turn them into rates.
        """
        busy: list[tuple[int, Conn]] = []
        total_bytes = self.closed_bytes
        total_msgs = self.closed_msgs
        for conn in self._conns.values():
            moved = conn.moved
            total_bytes += moved
            total_msgs += conn.msgs
            if moved != conn.reported:
                busy.append((moved - conn.reported, conn))
                conn.reported = moved
        busy.sort(key=lambda item: item[0], reverse=True)
        samples = [ConnSample(c.id, c.bytes_in, c.bytes_out, c.msgs) for _, c in busy[:MAX_SAMPLES]]
        return samples, total_bytes, total_msgs


def _fields(table: ConnTable, conn: Conn) -> dict[str, object]:
    """The connection's fields for a log record (``--log-format json`` prints them)."""
    return {"conn": conn.id, "peer": conn.peer, "transport": table.transport}
