"""Latency histogram and the benchmark's summary: pure, no trio, no sockets.

Rules of this module:

* Memory is bounded whatever the run length: a latency is counted in one of
  :data:`BUCKETS` log-linear buckets (about 3% wide), never stored.
* Percentiles are read from the buckets; a value is reported as its bucket's
  upper bound, so they err on the slow side, never the fast one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

# Microseconds below this are counted exactly...
_EXACT: Final = 64
# ...above, with this many buckets per power of two (5 significant bits: ~3%).
_PER_OCTAVE: Final = 32
# Powers of two covered above _EXACT: up to 2**46 us, over two years.
_OCTAVES: Final = 40
BUCKETS: Final = _EXACT + _OCTAVES * _PER_OCTAVE


def bucket_of(us: int) -> int:
    """The bucket a latency of *us* microseconds is counted in."""
    if us < _EXACT:
        return max(us, 0)
    shift = us.bit_length() - 6
    index = _EXACT + (shift - 1) * _PER_OCTAVE + ((us >> shift) - _PER_OCTAVE)
    return min(index, BUCKETS - 1)


def bucket_top(index: int) -> int:
    """The largest latency (us) counted in bucket *index*."""
    if index < _EXACT:
        return index
    shift = (index - _EXACT) // _PER_OCTAVE + 1
    top = (index - _EXACT) % _PER_OCTAVE + _PER_OCTAVE
    return ((top + 1) << shift) - 1


class Histogram:
    """Counts of latencies in :data:`BUCKETS` buckets; :meth:`add` is O(1)."""

    __slots__ = ("counts", "max_us", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0
        self.max_us = 0

    def add(self, us: int, count: int = 1) -> None:
        """Count *count* samples of *us* microseconds."""
        self.counts[bucket_of(us)] += count
        self.total += count
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: Histogram) -> None:
        """Add *other*'s samples to these (one histogram per connection, merged at the end)."""
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, p: float) -> int:
        """The latency (us) that *p* percent of the samples do not exceed; 0 when empty."""
        if not self.total:
            return 0
        rank = max(1, -(-self.total * p // 100))  # ceil, at least the first sample
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(bucket_top(i), self.max_us)
        return self.max_us


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of one histogram, in microseconds."""

    p50: int
    p90: int
    p99: int
    max: int
    n: int

    @classmethod
    def of(cls, h: Histogram) -> Latency:
        """The percentiles of *h*."""
        return cls(h.percentile(50), h.percentile(90), h.percentile(99), h.max_us, h.total)


@dataclass(frozen=True, slots=True)
class Summary:
    """What one run measured."""

    mode: str
    target: str
    connections: int
    size: int
    seconds: float
    established: int
    messages: int
    bytes: int
    errors: dict[str, int]
    latency: Latency
    #: Per-phase lag figures of a feed run (empty otherwise).
    phases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def msgs_per_s(self) -> float:
        """Echoed messages per second over the measured time."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The summary as ``--json`` prints it, with the derived rates."""
        out = asdict(self)
        out["msgs_per_s"] = round(self.msgs_per_s, 1)
        out["mbytes_per_s"] = round(self.bytes / self.seconds / 1e6, 3) if self.seconds else 0
        return out


def format_us(us: float) -> str:
    """A latency for people: µs below a millisecond, then ms, then s."""
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.2f} s"


def format_rate(x: float) -> str:
    """A rate for people: ``12.3k`` from ten thousand up, whole numbers below."""
    return f"{x / 1000:.1f}k" if x >= 10_000 else f"{x:.0f}"


def table(summary: Summary) -> str:
    """The summary as a small Markdown table (readable in a terminal, pasteable in docs)."""
    s = summary
    lat = s.latency
    errors = sum(s.errors.values())
    if s.mode == "feed":
        rows = [
            ("target", f"{s.mode} {s.target}"),
            ("subscribers", f"{s.established} of {s.connections}"),
            ("window", f"{s.seconds:.1f} s (all phases)"),
            ("events delivered/s", format_rate(s.msgs_per_s)),
            ("lag p50", format_us(lat.p50)),
            ("lag p90", format_us(lat.p90)),
            ("lag p99", format_us(lat.p99)),
            ("lag max", format_us(lat.max)),
        ]
    else:
        rows = [
            ("target", f"{s.mode} {s.target}"),
            ("connections", f"{s.established} of {s.connections}"),
            ("message size", f"{s.size} B"),
            ("window", f"{s.seconds:.1f} s"),
            ("msgs/s", format_rate(s.msgs_per_s)),
            ("MB/s", f"{s.bytes / s.seconds / 1e6:.2f}" if s.seconds else "0"),
            ("latency p50", format_us(lat.p50)),
            ("latency p90", format_us(lat.p90)),
            ("latency p99", format_us(lat.p99)),
            ("latency max", format_us(lat.max)),
        ]
    rows.append(("errors", f"{errors}" + (f" {s.errors}" if errors else "")))
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if s.phases:
        lines += [
            "",
            "| phase | subscribers | events/s | lag p50 | lag p99 (median subscriber) "
            "| lag p99 (worst subscriber) | gaps | wire B/event |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for ph in s.phases:
            lines.append(
                f"| {ph['phase']} | {ph['subscribers']} | {format_rate(ph['events_per_s'])} | "
                f"{format_us(ph['lag_p50_us'])} | {format_us(ph['lag_p99_median_us'])} | "
                f"{format_us(ph['lag_p99_worst_us'])} | {ph['gaps']} | "
                f"{ph.get('wire_bytes_per_event', 0):g} |"
            )
    return "\n".join(lines)
