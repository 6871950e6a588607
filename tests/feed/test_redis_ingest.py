"""The shared feed's mirror logic, fed stream entries by hand (no Redis needed).

What a reader sees for each kind of jump in the stream's ``seq``: a loss is a gap of exactly
its size, a ``skip`` entry is not, our own events shown while offline are not shown twice.
"""

from __future__ import annotations

from typing import Any

from app.feed.entries import Instance, encode_instance, stream_id
from app.feed.events import Notice, Output, decode, encode
from app.feed.redis import RedisFeed
from app.feed.redis_url import RedisFeedURL
from app.feed.ring import Gap

OTHER = Instance(host="other", pid=2, worker=0, started_at=0.0)


def entry(seq: int, text: str, instance: Instance = OTHER, n: int = 1) -> tuple[str, Any]:
    fields = {
        b"i": encode_instance(instance),
        b"n": str(n).encode(),
        b"e": encode(Output(text=text)),
    }
    return stream_id(seq), fields


def skip(seq: int) -> tuple[str, Any]:
    return stream_id(seq), {b"skip": b"1"}


def feed() -> RedisFeed:
    return RedisFeed(RedisFeedURL("127.0.0.1"), 64, host="me")


def walk(f: RedisFeed, cursor: int = 0) -> list[Any]:
    """What a reader from ring cursor *cursor* gets: events, and ``("gap", n)`` for each gap."""
    out: list[Any] = []
    while True:
        batch = f.read_encoded(cursor, 100)
        if isinstance(batch, Gap):
            out.append(("gap", batch.missed))
            cursor = batch.resume
            continue
        if not batch:
            return out
        out += [decode(data) for data in batch]
        cursor += len(batch)


def seen(f: RedisFeed, cursor: int = 0) -> list[Any]:
    """Like :func:`walk`, with output events as their text and others as their class name."""
    return [
        e if isinstance(e, tuple) else e.text if isinstance(e, Output) else type(e).__name__
        for e in walk(f, cursor)
    ]


def test_consecutive_entries_are_shown_in_order_with_the_stream_seq() -> None:
    f = feed()
    f.ingest([entry(1, "a"), entry(2, "b")])
    assert seen(f) == ["a", "b"]
    assert [(e.seq, e.inst) for e in walk(f)] == [(1, "other/2/0"), (2, "other/2/0")]
    assert f.last_seq == 2


def test_a_jump_is_a_gap_of_exactly_the_missing_entries() -> None:
    f = feed()
    f.ingest([entry(1, "a"), entry(5, "b")])
    assert seen(f) == ["a", ("gap", 3), "b"]
    assert f.link_statistics().lost == 3


def test_a_skip_entry_moves_on_without_a_gap() -> None:
    f = feed()
    f.ingest([entry(1, "a"), skip(40), entry(41, "b")])
    assert seen(f) == ["a", "b"]


def test_history_at_first_connect_is_no_gap() -> None:
    f = feed()
    f.ingest([entry(100, "old"), entry(150, "older gaps are not news")], history=True)
    assert seen(f) == ["old", "older gaps are not news"]


def test_own_events_shown_while_offline_are_not_shown_again() -> None:
    f = feed()
    f.publish(Notice(level="info", text="local"))  # offline: shown at once, as seq 1
    assert seen(f) == ["Notice"]
    me = f.instance
    f.ingest([skip(1), entry(2, "mine, read back", me, n=1), entry(3, "theirs")])
    assert seen(f) == ["Notice", "theirs"]


def test_since_resumes_by_stream_seq_and_counts_what_the_ring_no_longer_holds() -> None:
    f = feed()
    f.ingest([entry(10, "a"), entry(11, "b"), entry(12, "c")], history=True)
    cursor, missed = f.resume(10)
    assert (missed, seen(f, cursor)) == (0, ["b", "c"])
    cursor, missed = f.resume(4)
    assert (missed, seen(f, cursor)) == (5, ["a", "b", "c"])  # 5..9 are gone


def test_a_gaps_resume_is_a_stream_seq_the_page_can_skip_to() -> None:
    f = feed()
    f.ingest([entry(1, "a"), entry(5, "b")])
    gap = f.read_encoded(1, 10)
    assert isinstance(gap, Gap)
    assert f.resume_seq(gap) == 4  # the page skips seq <= 4, and gets b (5)
