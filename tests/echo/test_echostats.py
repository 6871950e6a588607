"""The once-a-second echo summary (app/echo/echostats.py): counts, totals and rates, no loop."""

from __future__ import annotations

import itertools

import msgspec

from app.echo.conns import ConnTable
from app.echo.echostats import EchoSummary
from app.feed.events import Event, Transport


def tables(udp: bool = True) -> tuple[EchoSummary, dict[Transport, ConnTable]]:
    ids = itertools.count(1)
    published: list[Event] = []

    def table(transport: Transport) -> ConnTable:
        return ConnTable(
            transport, 10, 60.0, new_id=lambda: next(ids), publish=published.append, now=lambda: 0
        )

    made: dict[Transport, ConnTable] = {t: table(t) for t in ("tcp", "ws", "tls", "udp")}
    summary = EchoSummary(made["tcp"], made["ws"], made["tls"], made["udp"] if udp else None)
    return summary, made


def nothing(reason: str) -> None:
    raise AssertionError(f"nobody aborts here ({reason})")


def test_an_idle_server_publishes_nothing() -> None:
    summary, _ = tables()
    assert summary.tick(1.0) is None
    assert summary.tick(1.0, udp_dropped=0) is None


def test_tls_and_udp_totals_are_cumulative_and_survive_closes() -> None:
    summary, t = tables()
    a = t["tls"].admit("127.0.0.1:1000", nothing)
    b = t["tls"].admit("127.0.0.1:1001", nothing)
    source = t["udp"].admit("127.0.0.1:2000", nothing)
    assert a is not None and b is not None and source is not None
    a.bytes_in = a.bytes_out = 100  # 100 bytes echoed: 200 moved
    b.bytes_in = b.bytes_out = 5
    source.bytes_in = source.bytes_out = 30  # three 10-byte datagrams
    source.msgs = 3
    stats = summary.tick(1.0, udp_dropped=2)
    assert stats is not None
    assert (stats.tls, stats.tls_bytes) == (2, 210)
    assert (stats.udp, stats.udp_datagrams, stats.udp_dropped) == (1, 3, 2)
    assert (stats.tcp, stats.ws) == (0, 0)
    assert stats.bytes_per_s == 270.0 and stats.msgs_per_s == 3.0

    # One TLS connection closes, the source sends one more: totals keep what was moved.
    t["tls"].close(a, "eof")
    source.bytes_in = source.bytes_out = 40
    source.msgs = 4
    stats = summary.tick(2.0, udp_dropped=2)
    assert stats is not None
    assert (stats.tls, stats.tls_bytes) == (1, 210)
    assert (stats.udp, stats.udp_datagrams) == (1, 4)
    assert stats.bytes_per_s == 10.0 and stats.msgs_per_s == 0.5  # 20 bytes, 1 msg in 2 s

    # Everything closed, nothing new: one last summary with the final totals, then silence.
    t["tls"].close(b, "eof")
    t["udp"].close(source, "idle")
    assert summary.tick(1.0, udp_dropped=2) is None
    assert summary.tick(1.0, udp_dropped=2) is None


def test_udp_drops_alone_are_published() -> None:
    """An oversize datagram is dropped without a lane: the page still learns the new count."""
    summary, _ = tables()
    stats = summary.tick(1.0, udp_dropped=1)
    assert stats is not None and stats.udp_dropped == 1 and stats.udp == 0
    assert summary.tick(1.0, udp_dropped=1) is None


def test_a_closed_connection_s_last_bytes_are_published_once() -> None:
    summary, t = tables()
    conn = t["tls"].admit("127.0.0.1:1000", nothing)
    assert conn is not None
    assert summary.tick(1.0) is not None  # open, nothing moved yet
    conn.bytes_in = conn.bytes_out = 7
    t["tls"].close(conn, "eof")
    stats = summary.tick(1.0)
    assert stats is not None and stats.tls == 0 and stats.tls_bytes == 14
    assert summary.tick(1.0) is None


def test_zero_totals_stay_out_of_the_json() -> None:
    """Servers without TLS or UDP traffic send the same bytes as before these fields existed."""
    summary, t = tables(udp=False)
    conn = t["tcp"].admit("127.0.0.1:1000", nothing)
    assert conn is not None
    stats = summary.tick(1.0)
    assert stats is not None
    fields = msgspec.json.decode(msgspec.json.encode(stats))
    assert fields["tcp"] == 1
    assert not {"tls", "tls_bytes", "udp", "udp_datagrams", "udp_dropped"} & fields.keys()
