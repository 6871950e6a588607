"""The feed's memory: one bounded ring of events with a global sequence number.

Rules of this module:

* Pure: no trio, no I/O.  :mod:`app.feed.live` adds waking and time.
* Appending is O(1) and never fails: the oldest event is overwritten.
* A reader owns nothing here but a cursor, the ``seq`` of the last event it
  has seen.  A reader whose cursor has fallen behind the oldest event still
  held gets a :class:`Gap` saying how many it missed and where to resume;
  so a slow reader costs no memory and delays no one.
* Each event's JSON form is built at most once, by the first reader that
  asks, and shared by all the others: fan-out to N browsers encodes once.
* A *hole* (:meth:`Ring.skip`) stands for events known to be lost before they
  reached this ring (a shared feed's outbox overflowed, a Redis Stream was
  trimmed under a slow reader): a reader meets it as a :class:`Gap` of exactly
  that many events, like any other loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from app.feed.events import Event, encode

# ``--feed-capacity``'s default.  At ~450-700 bytes per event with its cached
# JSON, 16,384 events are 7-11 MiB when full: minutes of a quiet feed, seconds
# of a busy one (measured: docs/limits.md).  Readers further behind get a Gap.
DEFAULT_CAPACITY: Final = 16_384


@dataclass(frozen=True, slots=True)
class Gap:
    """The reader fell behind: *missed* events were overwritten; go on from cursor *resume*."""

    missed: int
    resume: int


class Ring:
    """A fixed-size ring of events, indexed by ``seq``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._events: list[Event | None] = [None] * capacity
        self._encoded: list[bytes | None] = [None] * capacity
        self._last = 0

    @property
    def capacity(self) -> int:
        """How many events the ring holds before it overwrites the oldest."""
        return self._capacity

    @property
    def last_seq(self) -> int:
        """``seq`` of the newest event, 0 before the first."""
        return self._last

    @property
    def first_seq(self) -> int:
        """``seq`` of the oldest event still held (1 before the ring first wraps)."""
        return max(1, self._last - self._capacity + 1)

    def append(self, event: Event, *, stamp: bool = True) -> int:
        """Store *event* under the next ``seq`` and return that ``seq``.

        With *stamp* (the default) the event's own ``seq`` is set to it; a
        shared feed passes ``stamp=False`` because its events carry the
        stream-wide ``seq`` and the ring's ``seq`` is only a local cursor.
        """
        seq = self._last + 1
        if stamp:
            msgspec.structs.force_setattr(event, "seq", seq)
        slot = seq % self._capacity
        self._events[slot] = event
        self._encoded[slot] = None
        self._last = seq
        return seq

    def skip(self, missed: int) -> None:
        """Leave a hole of *missed* cursors: events lost before they got here.

        A reader that reaches the hole gets ``Gap(missed=...)`` for it; a hole
        longer than the ring simply empties it (older readers then get the
        usual gap from the ring's start).
        """
        if missed < 1:
            return
        cap = self._capacity
        for seq in range(self._last + 1, self._last + 1 + min(missed, cap)):
            self._events[seq % cap] = None
            self._encoded[seq % cap] = None
        self._last += missed

    def cursor_after(self, seq: int) -> int | Gap:
        """The cursor after the newest held event whose own ``seq`` is at most *seq*.

        For rings whose events carry their own ``seq`` (``stamp=False``), where
        readers resume by that ``seq``.  Returns a :class:`Gap` when *seq* is
        older than everything held (the gap counts the ``seq`` values not held),
        and the newest cursor when *seq* is ahead of every event.
        """
        oldest: Event | None = None
        oldest_cursor = self._last
        for cursor in range(self._last, self.first_seq - 1, -1):
            event = self._events[cursor % self._capacity]
            if event is None:
                continue
            if event.seq <= seq:
                return cursor
            oldest, oldest_cursor = event, cursor
        if oldest is None:
            return self._last
        missed = oldest.seq - seq - 1
        if missed <= 0:  # *seq* is right before the oldest held: nothing is missing
            return oldest_cursor - 1
        return Gap(missed=missed, resume=oldest_cursor - 1)

    def clamp(self, cursor: int) -> int:
        """A cursor a new reader may start from: never ahead of the newest event, never negative."""
        return min(max(cursor, 0), self._last)

    def read(self, cursor: int, limit: int) -> list[Event] | Gap:
        """Up to *limit* events after *cursor*, oldest first, or a :class:`Gap`."""
        start = self._check(cursor)
        if isinstance(start, Gap):
            return start
        stop = min(self._last, cursor + limit)
        out: list[Event] = []
        cap = self._capacity
        for seq in range(start, stop + 1):
            event = self._events[seq % cap]
            if event is None:
                return out or self._hole(cursor)
            out.append(event)
        return out

    def read_encoded(self, cursor: int, limit: int) -> list[bytes] | Gap:
        """Like :meth:`read`, but each event's JSON form, encoded once for all readers."""
        start = self._check(cursor)
        if isinstance(start, Gap):
            return start
        stop = min(self._last, cursor + limit)
        out: list[bytes] = []
        cap = self._capacity
        for seq in range(start, stop + 1):
            slot = seq % cap
            data = self._encoded[slot]
            if data is None:
                event = self._events[slot]
                if event is None:  # a hole: hand out what came before it, or the gap
                    return out or self._hole(cursor)
                data = self._encoded[slot] = encode(event)
            out.append(data)
        return out

    def _hole(self, cursor: int) -> Gap:
        """The gap of the hole that starts right after *cursor*."""
        end = cursor + 1
        cap = self._capacity
        while end < self._last and self._events[(end + 1) % cap] is None:
            end += 1
        return Gap(missed=end - cursor, resume=end)

    def _check(self, cursor: int) -> int | Gap:
        if cursor < 0:
            raise ValueError(f"cursor must be >= 0, got {cursor}")
        first = self.first_seq
        if cursor + 1 < first:
            return Gap(missed=first - cursor - 1, resume=first - 1)
        return cursor + 1
