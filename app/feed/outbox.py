"""The outbox of a shared feed: events published here, waiting to be sent to Redis.

Rules of this module:

* Pure: no trio, no Redis.  :mod:`app.feed.redis` drains it.
* :meth:`Outbox.push` never blocks and never fails: publishing must not wait
  on Redis.  When the outbox is full the *oldest* event is dropped (a live
  view wants the newest) and counted.
* Drops are not hidden: :meth:`Outbox.take` hands the count of events dropped
  since the last batch to the sender, which reserves that many stream
  sequence numbers, so every reader meets exactly that gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

# A batch is one Lua call: ~500 events of ~200 bytes is ~100 KiB on the wire,
# a few ms of Redis time, and still short enough that other clients are not stalled.
MAX_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Events to send, oldest first, and how many were dropped before them."""

    events: list[T]
    dropped: int


class Outbox(Generic[T]):
    """A bounded FIFO of events; the oldest is dropped (and counted) on overflow."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._events: deque[T] = deque()
        self._capacity = capacity
        self._unreported = 0
        #: Events dropped in total because the outbox was full.
        self.dropped = 0

    @property
    def capacity(self) -> int:
        """Events held at most."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._events)

    @property
    def unreported(self) -> int:
        """Events dropped since the last :meth:`take`: the next batch must reserve them."""
        return self._unreported

    def pending(self) -> list[T]:
        """What waits to be sent, oldest first (not removed)."""
        return list(self._events)

    def push(self, event: T) -> None:
        """Queue *event*; if full, drop the oldest first.  Never blocks."""
        if len(self._events) >= self._capacity:
            self._events.popleft()
            self.dropped += 1
            self._unreported += 1
        self._events.append(event)

    def take(self, limit: int = MAX_BATCH) -> Batch[T]:
        """Remove and return up to *limit* of the oldest events, with the drops before them."""
        events = [self._events.popleft() for _ in range(min(limit, len(self._events)))]
        dropped, self._unreported = self._unreported, 0
        return Batch(events, dropped)

    def lost(self, batch: Batch[T]) -> None:
        """*batch* could not be sent (Redis went away mid-call): count it as dropped.

        It is not re-queued: the call may have reached Redis before the link
        broke, and a duplicate would be worse than a counted gap.
        """
        self.dropped += len(batch.events)
        self._unreported += len(batch.events) + batch.dropped
