"""The connection table: limits, idempotent close, idle sweeps, samples; no sockets needed."""

from __future__ import annotations

import itertools
import logging

import pytest
import trio

from app.echo.conns import MAX_SAMPLES, ConnTable
from app.errors import PEER_GONE
from app.feed.events import ConnClose, ConnOpen, Event


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_table(limit: int = 3, idle: float = 10.0) -> tuple[ConnTable, list[Event], Clock]:
    published: list[Event] = []
    clock = Clock()
    ids = itertools.count(1)
    table = ConnTable(
        "tcp", limit, idle, new_id=lambda: next(ids), publish=published.append, now=clock
    )
    return table, published, clock


def test_admit_up_to_the_limit_then_refuse() -> None:
    table, published, _ = make_table(limit=2)
    aborted: list[str] = []
    a = table.admit("p:1", aborted.append)
    b = table.admit("p:2", aborted.append)
    assert a is not None and b is not None
    assert table.admit("p:3", aborted.append) is None
    assert table.refusals.total == 1
    assert [type(e) for e in published] == [ConnOpen, ConnOpen]
    table.close(a, "eof")
    assert table.admit("p:4", aborted.append) is not None


def test_close_is_idempotent_and_reports_totals_once(caplog: pytest.LogCaptureFixture) -> None:
    table, published, clock = make_table()
    conn = table.admit("p:1", lambda reason: None)
    assert conn is not None
    conn.bytes_in = conn.bytes_out = 10
    conn.msgs = 2
    clock.now = 1.5
    table.close(conn, "eof")
    table.close(conn, "reset")
    closes = [e for e in published if isinstance(e, ConnClose)]
    assert len(closes) == 1
    assert (closes[0].bytes_in, closes[0].msgs, closes[0].dur, closes[0].reason) == (
        10,
        2,
        1.5,
        "eof",
    )
    assert len(table) == 0


def test_idle_sweep_aborts_only_connections_that_moved_nothing() -> None:
    table, _, clock = make_table(idle=10.0)
    reasons: dict[str, str] = {}
    quiet = table.admit("quiet", lambda r: reasons.setdefault("quiet", r))
    busy = table.admit("busy", lambda r: reasons.setdefault("busy", r))
    assert quiet is not None and busy is not None
    for second in range(1, 12):
        clock.now = float(second)
        busy.bytes_in += 1
        table.sweep_idle()
    assert reasons == {"quiet": "idle"}
    # The engine closes it; the close carries the abort's reason.
    table.close(quiet, "cancelled")
    assert quiet.abort_reason == "idle"


def test_abort_is_asked_once() -> None:
    table, _, _ = make_table()
    calls: list[str] = []
    conn = table.admit("p", calls.append)
    assert conn is not None
    table.abort(conn, "shutdown")
    table.abort(conn, "idle")
    assert calls == ["shutdown"]


def test_samples_list_busiest_first_bounded_and_totals_survive_closes() -> None:
    table, _, _ = make_table(limit=MAX_SAMPLES + 50)
    conns = [table.admit(f"p{i}", lambda r: None) for i in range(MAX_SAMPLES + 50)]
    for i, conn in enumerate(conns):
        assert conn is not None
        conn.bytes_in = conn.bytes_out = i
        conn.msgs = 1
    samples, total_bytes, total_msgs = table.samples()
    assert len(samples) == MAX_SAMPLES
    assert samples[0].bytes_in == MAX_SAMPLES + 49
    assert total_msgs == MAX_SAMPLES + 50
    assert conns[-1] is not None
    table.close(conns[-1], "eof")
    again, total_after, _ = table.samples()
    assert again == []  # nothing moved since the last tick
    assert total_after == total_bytes


def test_refusals_are_logged_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    table, _, _ = make_table(limit=0)
    for i in range(5):
        table.admit(f"p{i}", lambda r: None)
    assert table.refusals.flush() == 5
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "closing p0" in lines[0]
    assert "refused 4 more" in lines[1]


@pytest.mark.parametrize(
    ("exc", "reason", "level"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), "reset", logging.DEBUG),
        (BrokenPipeError(32, "Broken pipe"), "reset", logging.DEBUG),
        (TimeoutError(110, "Connection timed out"), "reset", logging.DEBUG),
        (trio.BrokenResourceError("reset"), "reset", logging.DEBUG),
        (PermissionError(13, "Permission denied"), "error", logging.WARNING),
    ],
)
def test_a_peer_merely_gone_is_routine_anything_else_a_warning(
    exc: Exception, reason: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    table, _, _ = make_table()
    conn = table.admit("p:1", lambda r: None)
    assert conn is not None
    caplog.set_level(logging.DEBUG, logger="app.echo.conns")
    assert table.socket_failed(conn, exc, gone=isinstance(exc, PEER_GONE)) == reason
    assert [r.levelno for r in caplog.records] == [level]
