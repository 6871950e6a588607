"""The shared batch grid and shared messages: pure, no loop (app/feed/batches.py)."""

from __future__ import annotations

import zlib

from app.feed.batches import BatchGrid, SharedText


def test_every_reader_in_a_period_gets_the_cut_the_first_one_made() -> None:
    grid = BatchGrid(0.05)
    assert grid.cut(1.001, last_seq=100) == 100
    # Events published later in the same period wait for the next one.
    assert grid.cut(1.049, last_seq=130) == 100
    assert grid.next_tick(1.001) == 1.05
    assert grid.cut(1.05, last_seq=130) == 130


def test_the_batch_from_the_last_cut_is_kept_and_shared_once_per_period() -> None:
    grid = BatchGrid(0.05)
    grid.cut(1.00, last_seq=100)
    grid.cut(1.06, last_seq=150)  # next period: caught-up readers are at 100
    first = SharedText(b"batch 100..150")
    grid.keep(100, 150, first)
    assert grid.shared(100, 150) is first
    # A second reader's own build is not kept over it; a lagging reader's is never kept.
    grid.keep(100, 150, SharedText(b"again"))
    grid.keep(40, 140, SharedText(b"laggard"))
    assert grid.shared(100, 150) is first
    assert grid.shared(40, 140) is None
    # A new period forgets it (one shared batch at a time: bounded).
    grid.cut(1.11, last_seq=160)
    assert grid.shared(100, 150) is None


def test_a_quiet_feed_keeps_the_last_cut_as_where_caught_up_readers_are() -> None:
    grid = BatchGrid(0.05)
    grid.cut(1.00, last_seq=100)
    grid.cut(9.00, last_seq=101)  # nothing read for 8 s; readers stopped at 100
    message = SharedText(b"one event")
    grid.keep(100, 101, message)
    assert grid.shared(100, 101) is message


def test_shared_text_is_compressed_once_per_parameter_set_and_inflates_alone() -> None:
    data = b'{"type":"events","events":[' + b'{"kind":"step","task":3},' * 200 + b"]}"
    message = SharedText(data)
    a = message.deflated(12, 5)
    assert message.deflated(12, 5) is a  # kept, not compressed again
    b = message.deflated(10, 5)
    for bits, payload in ((12, a), (10, b)):
        d = zlib.decompressobj(wbits=-bits)
        assert d.decompress(payload + b"\x00\x00\xff\xff") == data
