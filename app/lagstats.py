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


# -- a lag that was the whole process's pause, not a task's (issue H3) ------------------------

# A lag is put down to a pause of the whole process only when it lasts at least this many
# heartbeat polls: a shorter one cannot be told from a heartbeat that merely beat late.
MIN_PAUSE_POLLS: Final = 3
# "Got no CPU": the process used less than this share of the lag in CPU time.  A task that
# holds the loop either computes (CPU time advances with the wall clock) or blocks in a call
# such as time.sleep, while the process's other threads keep running.
PAUSED_CPU_SHARE: Final = 0.1


def process_paused(
    *,
    lag_start: float,
    lag_end: float,
    cpu: float,
    last_beat: float,
    silence: tuple[float, float],
    poll: float,
) -> bool:
    """Whether the process as a whole, not one of its tasks, kept the loop from running.

    The loop was late from *lag_start* to *lag_end* (seconds on the heartbeat's
    clock); meanwhile the process used *cpu* seconds of CPU time (measured over
    a window that contains the lag).  *last_beat* is the newest beat of a thread
    that beats every *poll* seconds (the stall watchdog's), and *silence* its
    last gap between two beats far over *poll* (start, end).  True when the
    process got (almost) no CPU and that thread did not beat during the lag
    either: nothing in the process ran (SIGSTOP, a VM pause, a host that gave it
    no CPU).  A task holding the loop leaves the other thread beating.

    The silence is kept, not just the last two beats: after a SIGCONT the thread
    may beat twice before the loop gets to ask (a loaded host), and the gap that
    was the pause would be gone from a pair.  It must cover at least half of the
    lag (the rest: the loop catching up after the resume).
    """
    lag = lag_end - lag_start
    if lag < MIN_PAUSE_POLLS * poll or cpu >= PAUSED_CPU_SHARE * lag:
        return False
    margin = poll / 2  # a beat can be late by some scheduling noise
    if last_beat <= lag_start + margin:
        return True  # the thread has not beaten since the lag began
    covered = min(silence[1], lag_end) - max(silence[0], lag_start)
    return covered >= max(MIN_PAUSE_POLLS * poll, lag / 2)
