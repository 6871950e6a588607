"""A token bucket: the one rate limit of the feed's producers and of its control channel.

Pure: the caller gives the time, so a test needs no clock and no loop.  Used
for the control messages a page may send (:mod:`app.web.ws_events`) and for
the scheduler tracer's budget of step events (:mod:`app.feed.steps`).
"""

from __future__ import annotations


class TokenBucket:
    """At most *rate* actions a second on average, *burst* at once.

    :meth:`take` is the usual call; a hot path that cannot afford a clock read
    per action splits it into :meth:`refill` (now and then, with the time) and
    :meth:`spend` (per action).
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last refill (none at the first), up to *burst*."""
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def spend(self) -> bool:
        """Spend one token if there is one; False means "too many, refuse this one"."""
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def take(self, now: float) -> bool:
        """:meth:`refill` at *now*, then :meth:`spend`."""
        self.refill(now)
        return self.spend()
