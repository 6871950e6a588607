"""The shared batch grid and shared messages: pure, no loop (app/feed/batches.py)."""

from __future__ import annotations

import zlib

from app.feed.batches import MAX_KEPT, BatchGrid, SharedText


def test_every_reader_in_a_period_gets_the_cut_the_first_one_made() -> None:
    grid = BatchGrid(0.05)
    assert grid.cut(1.001, last_seq=100) == 100
    # Events published later in the same period wait for the next one.
    assert grid.cut(1.049, last_seq=130) == 100
    assert grid.next_tick(1.001) == 1.05
    assert grid.cut(1.05, last_seq=130) == 130


def test_a_batch_built_once_serves_every_reader_of_the_same_range() -> None:
    grid = BatchGrid(0.05)
    first = SharedText(b"batch 100..150")
    grid.keep(100, 150, first)
    assert grid.shared(100, 150) is first
    assert grid.shared(100, 151) is None  # another range is another batch
    # Laggards that fell behind together share theirs too, in any period.
    laggards = SharedText(b"batch 40..150")
    grid.keep(40, 150, laggards)
    grid.cut(9.0, last_seq=200)
    assert grid.shared(40, 150) is laggards


def test_only_the_last_few_batches_are_kept_the_busiest_last_to_go() -> None:
    grid = BatchGrid(0.05)
    popular = SharedText(b"popular")
    grid.keep(0, 10, popular)
    for i in range(1, MAX_KEPT + 3):
        grid.keep(i * 10, i * 10 + 10, SharedText(b"once"))
        assert grid.shared(0, 10) is popular  # read again each time: stays
    assert grid.shared(10, 20) is None  # the oldest of the others went
    assert len(grid._kept) == MAX_KEPT


def test_shared_text_is_compressed_once_per_parameter_set_and_inflates_alone() -> None:
    data = b'{"type":"events","events":[' + b'{"kind":"step","task":3},' * 200 + b"]}"
    message = SharedText(data)
    a = message.deflated(12, 5)
    assert message.deflated(12, 5) is a  # kept, not compressed again
    b = message.deflated(10, 5)
    for bits, payload in ((12, a), (10, b)):
        d = zlib.decompressobj(wbits=-bits)
        assert d.decompress(payload + b"\x00\x00\xff\xff") == data
