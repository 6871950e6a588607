"""The readiness lines: what ``serve`` prints once it listens, and the one parser of them."""

from __future__ import annotations

import pytest

from app.ready import Ready, bracket, parse_ready, ready_lines

LINES = "tcp echo listening on 127.0.0.1:1\nweb listening on http://127.0.0.1:2\n"


def test_what_is_printed_is_what_is_parsed() -> None:
    assert ready_lines("127.0.0.1:1", "http://127.0.0.1:2") == LINES
    assert parse_ready(LINES) == Ready("127.0.0.1:1", "http://127.0.0.1:2")
    assert parse_ready(LINES.encode()) == parse_ready(LINES)
    ready = parse_ready(ready_lines("[::1]:8001", "http://[::1]:8000"))
    assert ready is not None
    assert (ready.tcp_port, ready.web_port) == (8001, 8000)


@pytest.mark.parametrize("cut", range(len(LINES)))
def test_nothing_until_both_lines_are_complete(cut: int) -> None:
    assert parse_ready(LINES[:cut]) is None


def test_a_worker_is_ready_once_all_three_lines_are_in() -> None:
    assert parse_ready(LINES, private=True) is None
    private = "worker web listening on http://127.0.0.1:3"
    assert parse_ready(LINES + private, private=True) is None  # the line is not finished yet
    assert parse_ready(LINES + private + "\n", private=True) == Ready(
        "127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
    )


def test_output_before_the_lines_is_skipped() -> None:
    assert parse_ready("a warning of some library\n" + LINES) == parse_ready(LINES)


@pytest.mark.parametrize(
    ("host", "shown"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]"), ("localhost", "localhost")]
)
def test_an_ipv6_host_is_bracketed(host: str, shown: str) -> None:
    assert bracket(host) == shown
