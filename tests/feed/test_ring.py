"""The ring: O(1) append, cursor reads, gaps for laggards, one encoding per event."""

from __future__ import annotations

import json

import pytest

from app.feed.events import Notice, Output
from app.feed.ring import Gap, Ring


def fill(ring: Ring, n: int) -> None:
    for i in range(n):
        ring.append(Output(task=1, text=str(i)))


def test_append_stamps_increasing_seq_from_one() -> None:
    ring = Ring(8)
    assert ring.last_seq == 0
    fill(ring, 3)
    events = ring.read(0, 10)
    assert isinstance(events, list)
    assert [e.seq for e in events] == [1, 2, 3]


def test_read_respects_cursor_and_limit() -> None:
    ring = Ring(16)
    fill(ring, 10)
    events = ring.read(4, 3)
    assert isinstance(events, list)
    assert [e.seq for e in events] == [5, 6, 7]
    assert ring.read(10, 5) == []


@pytest.mark.parametrize(
    ("capacity", "written", "cursor"), [(4, 10, 0), (4, 10, 5), (100, 1000, 1)]
)
def test_reader_behind_the_oldest_event_gets_a_gap(
    capacity: int, written: int, cursor: int
) -> None:
    ring = Ring(capacity)
    fill(ring, written)
    first = written - capacity + 1
    gap = ring.read(cursor, 10)
    assert gap == Gap(missed=first - cursor - 1, resume=first - 1)
    after = ring.read(gap.resume, capacity)
    assert isinstance(after, list)
    assert [e.seq for e in after] == list(range(first, written + 1))


def test_reader_exactly_at_the_oldest_edge_gets_no_gap() -> None:
    ring = Ring(4)
    fill(ring, 10)  # holds 7..10
    events = ring.read(6, 10)
    assert isinstance(events, list)
    assert [e.seq for e in events] == [7, 8, 9, 10]


def test_encoded_form_is_the_json_of_the_event_and_is_cached() -> None:
    ring = Ring(4)
    ring.append(Notice(level="warning", text="hi"))
    first = ring.read_encoded(0, 1)
    again = ring.read_encoded(0, 1)
    assert isinstance(first, list) and isinstance(again, list)
    assert first[0] is again[0]
    assert json.loads(first[0]) == {"kind": "notice", "seq": 1, "level": "warning", "text": "hi"}


def test_overwritten_slot_gets_a_fresh_encoding() -> None:
    ring = Ring(2)
    fill(ring, 2)
    ring.read_encoded(0, 2)
    ring.append(Output(task=1, text="new"))
    encoded = ring.read_encoded(2, 1)
    assert isinstance(encoded, list)
    assert json.loads(encoded[0])["text"] == "new"


def test_clamp_and_bad_cursor() -> None:
    ring = Ring(4)
    fill(ring, 3)
    assert ring.clamp(99) == 3
    assert ring.clamp(-5) == 0
    with pytest.raises(ValueError):
        ring.read(-1, 1)
    with pytest.raises(ValueError):
        Ring(0)
