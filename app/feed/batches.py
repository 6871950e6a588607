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
(one shared batch per period, two periods kept).
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
    """Where batches end, period by period, and the one batch per period that is shared.

    A period is ``[k * interval, (k + 1) * interval)``.  The first subscriber
    to read in period *k* fixes its cut (the feed's last seq then); every
    subscriber reading in that period sends events up to that cut, no
    further, and waits for :meth:`next_tick` before its next frame.  Those
    that were caught up to the previous cut all send ``(previous cut, cut]``
    (at most ``limit`` events of it): the shared batch, built once
    (:meth:`shared` / :meth:`keep`).
    """

    def __init__(self, interval: float = BATCH_INTERVAL) -> None:
        self.interval = interval
        self._period = -1
        self._cut = 0
        self._previous_cut = 0
        #: The shared batch of this period, ``(start, end, message)``, once built.
        self._batch: tuple[int, int, SharedText] | None = None

    def cut(self, now: float, last_seq: int) -> int:
        """The last seq that a batch read at *now* may include."""
        period = math.floor(now / self.interval)
        if period != self._period:
            # Subscribers that were caught up stopped at the last cut made, however long ago.
            self._previous_cut = self._cut
            self._period = period
            self._cut = last_seq
            self._batch = None
        return self._cut

    def next_tick(self, now: float) -> float:
        """When the period after the one holding *now* begins."""
        return (math.floor(now / self.interval) + 1) * self.interval

    def shared(self, start: int, end: int) -> SharedText | None:
        """The shared batch of this period if it is ``(start, end]``."""
        batch = self._batch
        if batch is not None and batch[0] == start and batch[1] == end:
            return batch[2]
        return None

    def keep(self, start: int, end: int, message: SharedText) -> None:
        """Offer a batch just built; kept if it is this period's shared one (from the last cut)."""
        if start == self._previous_cut and end <= self._cut and self._batch is None:
            self._batch = (start, end, message)
