"""Loop lag as a histogram: the ticker observes, ``/metrics`` reads.

Pure: no trio, no Prometheus.  Buckets are cumulative upper bounds in
seconds, as Prometheus histograms want them; the ticker probes 10 times a
second, so one ``observe`` per probe costs nothing worth measuring.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

# From "on time" (1 ms) to "the page shows it as a block" (50 ms) to "a human
# notices" (1 s and more): the ranges a Trio loop's wake-up delay falls in.
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LagHistogram:
    """Counts of observed lags per bucket (non-cumulative inside; cumulative out)."""

    def __init__(self, buckets: tuple[float, ...] = LAG_BUCKETS) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        #: Sum of every observed lag, seconds.
        self.sum = 0.0
        #: How many lags were observed.
        self.count = 0

    def observe(self, lag: float) -> None:
        """Count one lag of *lag* seconds (negative readings count as 0)."""
        lag = max(0.0, lag)
        self._counts[bisect_left(self.buckets, lag)] += 1
        self.sum += lag
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(upper bound, count <= it), ..., ("+Inf", count)]`` for Prometheus."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.buckets, self._counts, strict=False):
            running += n
            out.append((repr(bound), running))
        out.append(("+Inf", self.count))
        return out
