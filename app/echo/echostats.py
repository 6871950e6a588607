"""The once-a-second echo summary: every transport's connection table as one ``echo_stats`` event.

Rules of this module:

* No trio and no sockets: the ticker owns the clock and calls :meth:`EchoSummary.tick`
  once a second with the seconds since the last call; tests call it directly.
* Counts (connections, sources) are what is open at the tick; totals (TLS bytes, UDP
  datagrams, UDP drops) are cumulative since start, as ``/metrics`` counts them, so a page
  that missed ticks still shows the right numbers; rates come from the difference between
  two ticks' totals.
"""

from __future__ import annotations

from app.echo.conns import ConnTable
from app.feed.events import EchoStats


class EchoSummary:
    """Turns the tables' counters into one :class:`EchoStats` per tick.

    *udp* is None when UDP echo is off.  The tables are read, never changed,
    except that :meth:`ConnTable.samples` marks what it reported.
    """

    def __init__(
        self, tcp: ConnTable, ws: ConnTable, tls: ConnTable, udp: ConnTable | None = None
    ) -> None:
        self._tcp = tcp
        self._ws = ws
        self._tls = tls
        self._udp = udp
        #: All bytes and messages moved, and UDP datagrams dropped, at the last tick.
        self._last = (0, 0, 0)

    def tick(self, elapsed: float, udp_dropped: int = 0) -> EchoStats | None:
        """The summary of the last *elapsed* seconds (> 0); *udp_dropped*: drops so far.

        Returns None while no connection (or UDP source) is open and nothing
        moved or was dropped since the last tick: an idle server publishes nothing.
        """
        samples_tcp, bytes_tcp, msgs_tcp = self._tcp.samples()
        samples_ws, bytes_ws, msgs_ws = self._ws.samples()
        samples_tls, bytes_tls, msgs_tls = self._tls.samples()
        udp = self._udp
        samples_udp, bytes_udp, msgs_udp = udp.samples() if udp is not None else ([], 0, 0)
        totals = (
            bytes_tcp + bytes_ws + bytes_tls + bytes_udp,
            msgs_tcp + msgs_ws + msgs_tls + msgs_udp,
            udp_dropped,
        )
        last, self._last = self._last, totals
        udp_open = len(udp) if udp is not None else 0
        if not (len(self._tcp) or len(self._ws) or len(self._tls) or udp_open) and totals == last:
            return None
        return EchoStats(
            tcp=len(self._tcp),
            ws=len(self._ws),
            tls=len(self._tls),
            bytes_per_s=round((totals[0] - last[0]) / elapsed, 1),
            msgs_per_s=round((totals[1] - last[1]) / elapsed, 1),
            conns=samples_tcp + samples_ws + samples_tls + samples_udp,
            udp=udp_open,
            udp_dropped=udp_dropped,
            tls_bytes=bytes_tls,
            udp_datagrams=msgs_udp,
        )
