"""The echo panel's counters (static/echo-totals.js) on their own: stats and listeners in, rows out.

The module imports no DOM; Chromium runs it (the one JavaScript engine every test machine has
here), importing the file the page itself serves.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CLOSED = {"all": 0, "tcp": 0, "ws": 0, "tls": 0, "udp": 0}


def totals(page: Page, **arg: Any) -> dict[str, tuple[Any, str]]:
    """``echoTotals(arg)`` as ``{testid: (value, text)}``, in the order drawn."""
    rows: list[dict[str, Any]] = page.evaluate(
        """async (arg) => {
            const { echoTotals } = await import("/echo-totals.js");
            return echoTotals(arg);
        }""",
        arg,
    )
    return {row["testid"]: (row["value"], row["text"]) for row in rows}


def test_tls_and_udp_counters_only_when_their_listeners_are_on(page: Page) -> None:
    plain = totals(page, open=CLOSED, listeners={"tcp": "127.0.0.1:1", "web": "http://x"})
    assert list(plain) == [
        "echo-open",
        "echo-tcp",
        "echo-ws",
        "echo-msgs-rate",
        "echo-bytes-rate",
    ]
    tls_only = totals(page, open=CLOSED, listeners={"tcp": "a", "tls": "127.0.0.1:2"})
    assert "echo-tls" in tls_only and "echo-tls-bytes" in tls_only
    assert not any(key.startswith("echo-udp") for key in tls_only)
    udp_only = totals(page, open=CLOSED, listeners={"tcp": "a", "udp": "127.0.0.1:1"})
    assert [key for key in udp_only if key.startswith(("echo-udp", "echo-tls"))] == [
        "echo-udp",
        "echo-udp-datagrams",
        "echo-udp-dropped",
    ]


def test_fresh_stats_give_counts_and_totals_stale_ones_only_totals(page: Page) -> None:
    stats = {
        "tcp": 4,
        "ws": 1,
        "tls": 2,
        "tls_bytes": 3000,
        "udp": 1,
        "udp_datagrams": 12_345,
        "udp_dropped": 7,
        "msgs_per_s": 250.4,
        "bytes_per_s": 2048,
    }
    listeners = {"tcp": "a", "tls": "b", "udp": "a"}
    known = {"all": 9, "tcp": 5, "ws": 1, "tls": 1, "udp": 2}
    fresh = totals(page, stats=stats, fresh=True, open=known, listeners=listeners)
    assert fresh == {
        "echo-open": (9, "9"),  # the page's own list: what it can show rows for
        "echo-tcp": (4, "4"),
        "echo-ws": (1, "1"),
        "echo-tls": (2, "2"),
        "echo-tls-bytes": (3000, "2.9 KiB"),
        "echo-udp": (1, "1"),
        "echo-udp-datagrams": (12_345, "12,345"),
        "echo-udp-dropped": (7, "7"),
        "echo-msgs-rate": (250.4, "250"),
        "echo-bytes-rate": (2048, "2.0 KiB"),
    }
    # No echo_stats for a while: counts from the connections the page knows, totals kept.
    stale = totals(page, stats=stats, fresh=False, open=known, listeners=listeners)
    assert stale["echo-tcp"] == (5, "5") and stale["echo-tls"] == (1, "1")
    assert stale["echo-udp"] == (2, "2")
    assert stale["echo-tls-bytes"] == (3000, "2.9 KiB")
    assert stale["echo-udp-datagrams"][0] == 12_345 and stale["echo-udp-dropped"][0] == 7


def test_before_any_stats_everything_is_zero(page: Page) -> None:
    """A new page on an idle server: no echo_stats yet, every counter a zero, none missing."""
    listeners = {"tcp": "a", "tls": "b", "udp": "a"}
    rows = totals(page, open=CLOSED, listeners=listeners)
    assert len(rows) == 10
    assert all(value == 0 for value, _ in rows.values()), rows
