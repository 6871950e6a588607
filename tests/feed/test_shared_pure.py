"""The shared feed's pure parts: the ring's holes and seq lookup, the outbox, URLs, entries."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.feed.entries import (
    BadEntry,
    EntryParser,
    Instance,
    encode_instance,
    entry_seq,
    localize,
    stream_id,
)
from app.feed.events import Output, encode
from app.feed.outbox import Outbox
from app.feed.redis_url import DEFAULT_STREAM, BadFeedURL, RedisFeedURL, parse_feed
from app.feed.ring import Gap, Ring


def own_seq(ring: Ring, seqs: list[int]) -> None:
    """Append events that carry their own (stream) seq, as a shared feed does."""
    for seq in seqs:
        event = Output(text=str(seq))
        msgspec.structs.force_setattr(event, "seq", seq)
        ring.append(event, stamp=False)


# -- ring: holes ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoded", [False, True])
def test_a_hole_is_a_gap_of_exactly_its_size_between_the_events_around_it(encoded: bool) -> None:
    ring = Ring(16)
    ring.append(Output(text="a"))
    ring.skip(3)
    ring.append(Output(text="b"))
    read = ring.read_encoded if encoded else ring.read
    assert len(read(0, 10)) == 1  # stops before the hole
    assert read(1, 10) == Gap(missed=3, resume=4)
    after = read(4, 10)
    assert isinstance(after, list) and len(after) == 1


def test_a_hole_longer_than_the_ring_empties_it_and_counts_every_event() -> None:
    ring = Ring(4)
    ring.append(Output(text="a"))
    ring.skip(10)
    ring.append(Output(text="b"))
    missed, cursor = 0, 1
    while True:
        batch = ring.read(cursor, 10)
        if isinstance(batch, Gap):
            missed, cursor = missed + batch.missed, batch.resume
            continue
        assert [e.text for e in batch if isinstance(e, Output)] == ["b"]
        break
    assert missed == 10


def test_skip_of_nothing_changes_nothing() -> None:
    ring = Ring(4)
    ring.skip(0)
    assert ring.last_seq == 0


# -- ring: resuming by an event's own seq -----------------------------------------------------


def test_cursor_after_finds_the_newest_event_at_or_before_seq() -> None:
    ring = Ring(8)
    own_seq(ring, [10, 11, 15, 20])
    assert ring.cursor_after(15) == 3  # the next read starts at seq 20
    assert ring.cursor_after(12) == 2  # 15 is next
    assert ring.cursor_after(99) == 4  # ahead of everything: only new events


def test_cursor_after_older_than_the_ring_is_a_gap_of_the_seqs_not_held() -> None:
    ring = Ring(8)
    own_seq(ring, [10, 11])
    assert ring.cursor_after(4) == Gap(missed=5, resume=0)  # 5..9 are gone
    assert Ring(8).cursor_after(4) == 0


# -- outbox -----------------------------------------------------------------------------------


def test_outbox_drops_the_oldest_when_full_and_reports_drops_once() -> None:
    box: Outbox[int] = Outbox(3)
    for i in range(5):
        box.push(i)
    assert len(box) == 3 and box.dropped == 2
    batch = box.take(2)
    assert (batch.events, batch.dropped) == ([2, 3], 2)
    batch = box.take()
    assert (batch.events, batch.dropped) == ([4], 0)


def test_a_lost_batch_is_counted_and_reserved_again() -> None:
    box: Outbox[int] = Outbox(10)
    box.push(1)
    box.push(2)
    batch = box.take()
    box.lost(batch)
    assert box.dropped == 2 and box.unreported == 2
    assert box.take().dropped == 2


def test_outbox_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Outbox(0)


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "memory", " memory "])
def test_memory_is_the_in_process_feed(text: str) -> None:
    assert parse_feed(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://h", RedisFeedURL("h")),
        ("redis://h:7000/3", RedisFeedURL("h", 7000, 3)),
        ("redis://:s%40cret@h/0?stream=a.b", RedisFeedURL("h", stream="a.b", password="s@cret")),
        ("redis://[::1]:6380", RedisFeedURL("::1", 6380)),
    ],
)
def test_redis_urls(text: str, expected: RedisFeedURL) -> None:
    assert parse_feed(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("redis://", "no host"),
        ("rediss://h", "scheme"),
        ("http://h", "scheme"),
        ("redis://h:99999", "expected"),
        ("redis://h/16", "0..15"),
        ("redis://h/x", "0..15"),
        ("redis://h?stream=", "stream must be"),
        ("redis://h?stream=a b", "stream must be"),
        ("redis://h?db=1", "only query parameter"),
    ],
)
def test_bad_urls_say_what_was_expected(text: str, says: str) -> None:
    with pytest.raises(BadFeedURL, match=says):
        parse_feed(text)


def test_the_url_as_shown_hides_the_password() -> None:
    url = parse_feed("redis://:secret@h")
    assert url is not None and "secret" not in str(url)
    assert str(url) == f"redis://h:6379/0?stream={DEFAULT_STREAM}"


# -- entries ----------------------------------------------------------------------------------

A = Instance(host="a", pid=1, worker=0, started_at=1000.0)


def test_an_entry_round_trips_and_is_localized() -> None:
    parser = EntryParser()
    event = Output(text="hi", t=2.5)
    entry = parser.parse(b"42-0", {b"i": encode_instance(A), b"n": b"7", b"e": encode(event)})
    assert (entry.seq, entry.n, entry.instance) == (42, 7, A)
    assert isinstance(entry.event, Output) and entry.event.text == "hi"
    localize(entry.event, entry.seq, A, 1001.0, entry.inst)
    assert (entry.event.seq, entry.event.inst, entry.event.t) == (42, "a/1/0", 1.5)
    assert parser.instances == [A]


def test_a_skip_entry_has_no_event() -> None:
    entry = EntryParser().parse("9-0", {b"skip": b"1"})
    assert entry.seq == 9 and entry.event is None


@pytest.mark.parametrize(
    ("identifier", "fields"),
    [
        (b"x-0", {b"skip": b"1"}),
        (b"1-0", {b"e": b"{}"}),
        (b"1-0", {b"i": b"nope", b"n": b"1", b"e": b"{}"}),
        (b"1-0", {b"i": encode_instance(A), b"n": b"1", b"e": b'{"kind": "nope"}'}),
    ],
)
def test_entries_that_are_not_ours_are_refused(
    identifier: bytes, fields: dict[bytes, bytes]
) -> None:
    with pytest.raises(BadEntry):
        EntryParser().parse(identifier, fields)


def test_stream_ids() -> None:
    assert entry_seq(stream_id(123)) == 123


# -- ring: holes and seq lookup against a model -----------------------------------------------

OPS = st.lists(
    st.one_of(
        st.integers(1, 3).map(lambda n: ("append", n)),
        st.integers(1, 12).map(lambda n: ("skip", n)),
    ),
    max_size=40,
)


@given(capacity=st.integers(1, 8), ops=OPS)
def test_walking_the_ring_sees_every_event_or_counts_it_missed(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    ring = Ring(capacity)
    model: list[int | None] = []  # by cursor - 1: the event's own seq, or None for a hole
    seq = 0
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                seq += 1
                own_seq(ring, [seq])
                model.append(seq)
        else:
            ring.skip(n)
            model += [None] * n
            seq += n
    assert ring.last_seq == len(model)
    held = set(range(max(0, len(model) - capacity), len(model)))
    for start in range(len(model) + 1):
        seen: list[int] = []
        missed, cursor = 0, start
        while cursor < ring.last_seq:
            batch = ring.read(cursor, 3)
            if isinstance(batch, Gap):
                assert batch.missed > 0 and batch.resume > cursor
                missed, cursor = missed + batch.missed, batch.resume
                continue
            assert batch
            seen += [e.seq for e in batch]
            cursor += len(batch)
        expected = [s for i, s in enumerate(model[start:], start) if s is not None and i in held]
        assert seen == expected
        assert len(seen) + missed == len(model) - start


@given(capacity=st.integers(1, 8), seqs=st.lists(st.integers(1, 5), min_size=1, max_size=20))
def test_cursor_after_resumes_right_after_since(capacity: int, seqs: list[int]) -> None:
    ring = Ring(capacity)
    own = list(itertools.accumulate(seqs))  # increasing seqs with jumps
    own_seq(ring, own)
    held = own[-capacity:]
    for since in range(own[-1] + 2):
        found = ring.cursor_after(since)
        if isinstance(found, Gap):
            assert since < held[0] - 1 and found.missed == held[0] - since - 1
            cursor = found.resume
        else:
            cursor = found
        batch = ring.read(cursor, 100)
        assert isinstance(batch, list)
        assert [e.seq for e in batch] == [s for s in held if s > since]
