"""Feed batches cut on one clock for all subscribers: one frame (and one compression) serves all.

Why: each ``/ws/events`` subscriber used to cut its own batches (whatever was
new when it woke), so 100 subscribers sent 100 different frames of the same
events.  Uncompressed that only costs a ``join`` each; with permessage-deflate
it costs a compression each, ~2 µs per event and subscriber (100 subscribers
at 10k events/s would be two cores of zlib).  Here the batches are cut on a
shared grid of :data:`BATCH_INTERVAL` periods: every
subscriber that is caught up sends the *same* batch, built once, and a
compressed form of it (:class:`SharedText`) is made once per set of deflate
parameters.  RFC 7692 allows that only for messages compressed without
context takeover (each message alone), which ``/ws/events`` asks for
(``server_no_context_takeover``, docs/decisions.md).

Rules of this module: pure (no trio, no sockets: times are passed in); bounded
(:data:`MAX_KEPT` batches, :data:`MAX_FORMS` compressed forms each).
"""

from __future__ import annotations

import math
import zlib
from typing import Final

# A subscriber sends at most one frame per period of this many seconds, so a busy feed costs
# each browser ~20 frames/s, not one frame per event; it is also the added latency, well
# under the 100 ms the page can notice.
BATCH_INTERVAL: Final = 0.05
# Compressed forms kept per batch: one per (window bits, memLevel) actually negotiated.
MAX_FORMS: Final = 4
# Batches kept for sharing: the caught-up subscribers' one, and a few groups of laggards'.
# At most ~150 KiB each plus their compressed forms: ~2 MiB in all at the worst.
MAX_KEPT: Final = 8


class SharedText:
    """One text message sent as-is to many subscribers: its UTF-8 and its deflated forms.

    :meth:`deflated` compresses on first use per parameter set and keeps the
    result: N subscribers with the same parameters cost one compression.
    """

    __slots__ = ("_forms", "data")

    def __init__(self, data: bytes) -> None:
        #: The message, UTF-8.
        self.data = data
        self._forms: dict[tuple[int, int], bytes] = {}

    def deflated(self, window_bits: int, mem_level: int) -> bytes:
        """The message compressed alone (RFC 7692 7.2.1: raw deflate, the 4-byte tail removed)."""
        key = (window_bits, mem_level)
        form = self._forms.get(key)
        if form is None:
            c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, mem_level)
            form = (c.compress(self.data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
            if len(self._forms) < MAX_FORMS:
                self._forms[key] = form
        return form


class BatchGrid:
    """Where batches end, period by period, and the last few batches built, to share.

    A period is ``[k * interval, (k + 1) * interval)``.  The first subscriber
    to read in period *k* fixes its cut (the feed's last seq then); every
    subscriber reading in that period sends events up to that cut, no
    further, and waits for :meth:`next_tick` before its next frame.  So the
    subscribers that were caught up all send the same ``(previous cut, cut]``,
    and those that fell behind together (a loaded loop woke them a period
    late) share theirs too.

    A batch is named by its seq range, whose events never change, so a batch
    built by one subscriber serves any other that asks for the same range
    (:meth:`shared` / :meth:`keep`), whatever the period.  The last
    :data:`MAX_KEPT` batches are kept, the least recently used dropped first.
    """

    def __init__(self, interval: float = BATCH_INTERVAL) -> None:
        self.interval = interval
        self._period = -1
        self._cut = 0
        self._kept: dict[tuple[int, int], SharedText] = {}

    def cut(self, now: float, last_seq: int) -> int:
        """The last seq that a batch read at *now* may include."""
        period = math.floor(now / self.interval)
        if period != self._period:
            self._period = period
            self._cut = last_seq
        return self._cut

    def next_tick(self, now: float) -> float:
        """When the period after the one holding *now* begins."""
        return (math.floor(now / self.interval) + 1) * self.interval

    def shared(self, start: int, end: int) -> SharedText | None:
        """The batch of events ``(start, end]`` if it was built lately."""
        message = self._kept.pop((start, end), None)
        if message is not None:
            self._kept[(start, end)] = message  # most recently used: last to go
        return message

    def keep(self, start: int, end: int, message: SharedText) -> None:
        """Keep a batch just built for others that ask for the same range."""
        kept = self._kept
        kept[(start, end)] = message
        if len(kept) > MAX_KEPT:
            del kept[next(iter(kept))]
