"""A shared feed's Redis Stream entries, and the events and instances they carry.

Rules of this module:

* Pure: no trio, no Redis library; the Lua scripts are text that
  :mod:`app.feed.redis` hands to Redis.  (No RESP here: the client library
  speaks it.)
* The stream's entry ids are ``<seq>-0``, where ``seq`` is one counter for the
  whole stream, incremented by the append script inside Redis.  So ``seq`` is
  the same for an event on every instance (``?since=SEQ`` resumes on any of
  them), and a reader that sees ``seq`` jump knows exactly how many events it
  lost: the stream trimmed them (MAXLEN) or an outbox dropped them (the
  append script reserves one ``seq`` per dropped event).
* An entry is ``i`` (the publishing instance, JSON), ``n`` (that instance's
  own count, to recognise its own events coming back) and ``e`` (the event's
  JSON, as :func:`app.feed.events.encode` makes it).  A ``skip`` entry only
  moves the counter (after Redis lost its data and came back): no event, no gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from app.feed.events import AnyEvent, Event, decode

# KEYS: stream, counter.  ARGV: reserved (dropped events), maxlen, instance, then n/event pairs.
# Returns the seq of the last entry added.  Atomic: no other writer interleaves a batch.
APPEND_SCRIPT: Final = """
local c = tonumber(redis.call('INCRBY', KEYS[2], ARGV[1]))
for i = 4, #ARGV, 2 do
  c = c + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-0', c),
             'i', ARGV[3], 'n', ARGV[i], 'e', ARGV[i + 1])
end
redis.call('SET', KEYS[2], string.format('%d', c))
return c
"""

# KEYS: stream, counter.  ARGV: floor, maxlen.  Run on every (re)connect.  Makes the counter
# at least the stream's newest id and at least *floor* (the highest seq this instance has
# shown), with a ``skip`` entry so readers move past the jump without calling it a gap.
# Returns {counter before, counter after}; "before" below what we had seen means Redis
# lost the stream (restarted without persistence).
FLOOR_SCRIPT: Final = """
local before = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local c = before
if #top > 0 then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last > c then c = last end
end
local floor = tonumber(ARGV[1])
if floor > c then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-0', floor), 'skip', '1')
  c = floor
end
redis.call('SET', KEYS[2], string.format('%d', c))
return {before, c}
"""


class Instance(msgspec.Struct, frozen=True, gc=False):
    """One ``trio-echo serve`` process feeding the stream."""

    host: str
    pid: int
    worker: int
    #: Its feed's wall-clock start (Unix seconds): its events' ``t`` count from here.
    started_at: float

    @property
    def key(self) -> str:
        """``host/pid/worker``: the ``inst`` of its events."""
        return f"{self.host}/{self.pid}/{self.worker}"

    def describe(self) -> dict[str, object]:
        """The instance as ``hello.instances`` lists it."""
        return {
            "inst": self.key,
            "host": self.host,
            "pid": self.pid,
            "worker": self.worker,
            "started_at": self.started_at,
        }


_instance_encoder: Final = msgspec.json.Encoder()
_instance_decoder: Final = msgspec.json.Decoder(Instance)


def encode_instance(instance: Instance) -> bytes:
    """The ``i`` field of this instance's entries."""
    return _instance_encoder.encode(instance)


class BadEntry(ValueError):
    """An entry of the stream is not one of ours (another writer?); it is skipped, counted."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry, parsed: a ``skip`` entry has no event."""

    seq: int
    instance: Instance | None = None
    n: int = 0
    event: AnyEvent | None = None
    #: ``instance.key``, built once per instance rather than once per event.
    inst: str = ""


def entry_seq(identifier: bytes | str) -> int:
    """``seq`` of a stream id ``b"123-0"``.

    Raises:
        BadEntry: not ``<digits>-<digits>``.
    """
    raw = identifier.encode() if isinstance(identifier, str) else identifier
    ms = raw.partition(b"-")[0]
    if not ms.isdigit():
        raise BadEntry(f"expected a stream id like 123-0, got {raw!r}")
    return int(ms)


def stream_id(seq: int) -> str:
    """The stream id of ``seq``, for XREAD's "after this id"."""
    return f"{seq}-0"


# Instances whose JSON is kept decoded; each restart of an instance is a new one (a new pid),
# so the oldest are forgotten (and decoded again if they show up).
MAX_INSTANCES: Final = 256


class EntryParser:
    """Turns raw entries into :class:`Entry`, decoding each instance's JSON once."""

    def __init__(self) -> None:
        self._instances: dict[bytes, tuple[Instance, str]] = {}

    @property
    def instances(self) -> list[Instance]:
        """The instances decoded so far (at most :data:`MAX_INSTANCES`), oldest first."""
        return [instance for instance, _ in self._instances.values()]

    def parse(self, identifier: bytes | str, fields: dict[bytes, bytes]) -> Entry:
        """Parse one entry.

        Raises:
            BadEntry: a field is missing or does not decode.
        """
        seq = entry_seq(identifier)
        if b"skip" in fields:
            return Entry(seq)
        try:
            raw_instance, raw_n, raw_event = fields[b"i"], fields[b"n"], fields[b"e"]
            known = self._instances.get(raw_instance)
            if known is None:
                instance = _instance_decoder.decode(raw_instance)
                if len(self._instances) >= MAX_INSTANCES:
                    del self._instances[next(iter(self._instances))]
                known = self._instances[raw_instance] = (instance, instance.key)
            return Entry(seq, known[0], int(raw_n), decode(raw_event), known[1])
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise BadEntry(f"entry {seq}: {exc}") from None


def localize(event: Event, seq: int, instance: Instance, started_at: float, inst: str) -> None:
    """Make a stream event this instance's: stream-wide ``seq``, ``inst``, ``t`` on our clock.

    *inst* is ``instance.key`` (passed in: built once per instance, not per event).

    ``t`` counts from the publishing instance's start; readers here count from
    ours (*started_at*), so it moves by the difference of the two wall clocks.
    """
    msgspec.structs.force_setattr(event, "seq", seq)
    msgspec.structs.force_setattr(event, "inst", inst)
    if instance.started_at != started_at:
        t = event.t + instance.started_at - started_at
        msgspec.structs.force_setattr(event, "t", round(t, 6))
