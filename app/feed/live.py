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
from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec
import trio

from app.feed.events import Event
from app.feed.ring import DEFAULT_CAPACITY, Gap, Ring

E = TypeVar("E", bound=Event)

# Events a new reader gets replayed before live ones, when it gives no ?since.
REPLAY: Final = 2_000


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A shared feed's link to Redis, for ``/metrics`` (see :mod:`app.feed.redis`)."""

    #: Whether events go through the stream now.
    online: bool
    #: Events waiting in the outbox, and how many it holds at most.
    outbox_depth: int
    outbox_capacity: int
    #: Events the outbox dropped (full, or a batch cut in flight), in total.
    outbox_dropped: int
    #: Events other instances published that never reached this ring (readers' gaps).
    lost: int
    #: Times the link came back after it was lost.
    reconnects: int


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
        #: Events published by this process, in total.
        self.published = 0
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
        self.published += 1
        self._ring.append(event)
        for tap in self._taps:
            tap(event)
        self._wake()
        return event

    def _wake(self) -> None:
        """Wake every parked reader (if any): the ring moved."""
        if self._parked:
            self._parked = False
            self._wakeup.set()
            self._wakeup = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The feed's own background work, if any: none for the in-process ring (returns at once).

        A shared feed (:class:`app.feed.redis.RedisFeed`) keeps its Redis link here.
        """
        task_status.started()

    def link_statistics(self) -> LinkStats | None:
        """The Redis link's numbers; None for the in-process feed, which has no link."""
        return None

    @property
    def backend(self) -> str:
        """What keeps the feed: ``memory`` here, a redis URL on a shared feed."""
        return "memory"

    def instances(self) -> list[dict[str, object]]:
        """The instances whose events this feed shows (none listed: only this process)."""
        return []

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

    def resume(self, since: int | None) -> tuple[int, int]:
        """A new reader's ``(cursor, missed)``: :meth:`start_cursor`, and nothing missed.

        A shared feed resumes by the stream-wide ``seq`` instead, and may have
        to say that some events after *since* are gone.
        """
        return self.start_cursor(since), 0

    def resume_seq(self, gap: Gap) -> int:
        """The ``seq`` the page resumes after, for a gap (the ring's cursor, here)."""
        return gap.resume

    def start_cursor(self, since: int | None) -> int:
        """Where a new reader starts: after *since* if given, else a replay of recent history."""
        if since is None:
            return max(self._ring.last_seq - REPLAY, self._ring.first_seq - 1)
        return self._ring.clamp(since)
