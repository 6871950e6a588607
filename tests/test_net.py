"""The accept loop's capacity log (pure: a fake clock, no sockets)."""

from __future__ import annotations

import errno
import logging

import pytest

from app.net import CapacityLog

EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_a_spell_of_capacity_errors_is_one_line_then_a_count_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    spell = CapacityLog("127.0.0.1:1", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="app.net")
    # accept pauses 0.1 s after each error: 30 errors in 3 s...
    for i in range(30):
        now[0] = i * 0.1
        spell.failed(EMFILE)
        if i == 15:
            spell.succeeded()  # one accept squeezed through mid-spell: same spell
    # ...then, 1.5 s after the last one, an accept works.
    now[0] = 4.4
    spell.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Too many open files" in lines[0]
    counts = [line for line in lines if "more failures" in line]
    assert len(counts) == 3  # one a second: at 1.0, 2.0 s, then the rest when it ends
    assert sum(int(line.split(": ")[1].split()[0]) for line in counts) == 29
    assert "accepting again after 2.9 s" in lines[-1]
    assert spell.total == 30


def test_no_spell_no_lines(caplog: pytest.LogCaptureFixture) -> None:
    spell = CapacityLog("127.0.0.1:1")
    spell.succeeded()
    assert caplog.records == []
