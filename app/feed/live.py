"""The live feed: where every producer publishes and every watcher reads.

Publishing is synchronous and never a checkpoint: a task that reports what
it does must not change the interleaving it reports.  It appends to the
:class:`~app.feed.ring.Ring` and, only if some reader is parked, wakes them all
at once.  Readers each keep a cursor and pull batches at their own pace.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec
import trio

from app.feed.events import Event
from app.feed.ring import DEFAULT_CAPACITY, Gap, Ring

E = TypeVar("E", bound=Event)

# Events a new reader gets replayed before live ones, when it gives no ?since.
REPLAY: Final = 2_000


class Feed:
    """One ring, many cursors.

    *clock* gives monotonic seconds; events carry ``t`` relative to the
    moment the feed was made.
    """

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._ring = Ring(capacity)
        self._clock = clock
        self._t0 = clock()
        self._wakeup = trio.Event()
        self._parked = False
        self._ids = itertools.count(1)
        #: Readers currently attached (the web shell counts them in and out).
        self.subscribers = 0
        #: Events readers were told they missed, in total.
        self.dropped = 0
        #: Wall-clock time the feed started, for the page's clock.
        self.started_at = time.time()
        self._taps: list[Callable[[Event], None]] = []

    @property
    def last_seq(self) -> int:
        """``seq`` of the newest event, 0 before the first."""
        return self._ring.last_seq

    def now(self) -> float:
        """Seconds since the feed started, on the same clock as the events' ``t``."""
        return self._clock() - self._t0

    def to_feed_time(self, clock_value: float) -> float:
        """Convert a reading of this feed's clock into feed time."""
        return clock_value - self._t0

    def new_id(self) -> int:
        """A fresh lane id for a task or connection; never reused within a process."""
        return next(self._ids)

    def add_tap(self, tap: Callable[[Event], None]) -> None:
        """Call *tap* with every event as it is published (synchronously; it must not block)."""
        self._taps.append(tap)

    def publish(self, event: E, *, at: float | None = None) -> E:
        """Stamp *event* (``seq``, and ``t`` = now or *at*) and append it.  Never blocks.

        Returns the same event, stamped.
        """
        t = self.now() if at is None else at
        msgspec.structs.force_setattr(event, "t", round(t, 6))
        self._ring.append(event)
        for tap in self._taps:
            tap(event)
        if self._parked:
            self._parked = False
            self._wakeup.set()
            self._wakeup = trio.Event()
        return event

    async def wait_new(self, cursor: int) -> None:
        """Wait until an event newer than *cursor* exists.

        Always a checkpoint.  Cancellation: safe anywhere; nothing is consumed,
        so the caller retries with the same cursor.
        """
        if self._ring.last_seq > cursor:
            await trio.lowlevel.checkpoint()
            return
        while self._ring.last_seq <= cursor:
            self._parked = True
            await self._wakeup.wait()

    def read_encoded(self, cursor: int, limit: int) -> list[bytes] | Gap:
        """Up to *limit* JSON-encoded events after *cursor*, or a :class:`Gap` (counted)."""
        batch = self._ring.read_encoded(cursor, limit)
        if isinstance(batch, Gap):
            self.dropped += batch.missed
        return batch

    def start_cursor(self, since: int | None) -> int:
        """Where a new reader starts: after *since* if given, else a replay of recent history."""
        if since is None:
            return max(self._ring.last_seq - REPLAY, self._ring.first_seq - 1)
        return self._ring.clamp(since)
