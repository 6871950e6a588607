"""The shared feed: one Redis Stream for every instance (``--feed redis://...``).

Every instance (and every ``--workers`` process) publishes into a bounded
:class:`~app.feed.outbox.Outbox`; one *flusher* task appends the outbox to the
stream in batches (one Lua call each, :data:`~app.feed.entries.APPEND_SCRIPT`).
One *mirror* task per instance reads the stream with ``XREAD BLOCK`` and
appends every entry, its own included, to the local ring; the ``/ws/events``
subscribers read that ring exactly as with the in-process feed.

Why one reader per instance and not one ``XREAD`` per subscriber: the ring
already fans out at O(1) per event (each event is decoded and encoded once,
whatever the number of browsers), so 100 subscribers cost one Redis
connection and one decode per event instead of 100 of each; a stuck browser
still holds only a cursor, never a Redis connection.  The price is that
``?since=SEQ`` resumes from what this instance's ring holds (``--feed-capacity``
events, like the stream's own MAXLEN); older than that is a gap, as before.

Faults never reach the publishers (:meth:`RedisFeed.publish` is sync, never
awaits, and only appends to the outbox):

* Redis down at start, or lost later: one log line and a ``notice``; this
  instance's own events are shown locally (with ``seq`` continuing above the
  last one seen) and the link is retried with capped exponential backoff.
* Back again: a ``notice``; the outbox drains, the mirror reads on from where
  it stopped; what was lost meanwhile (an overflowing outbox, a batch cut in
  flight, entries trimmed) reaches every reader as a ``gap`` of exactly that
  many events.  If Redis lost the stream itself (restarted without
  persistence), a ``notice`` says so: that loss cannot be counted.
* Redis slow: the outbox bound holds (the oldest events are dropped and
  counted); a call that takes longer than :data:`CALL_TIMEOUT` is treated
  as a lost link.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import coredis
import coredis.exceptions
import msgspec
import trio

from app.feed.entries import (
    APPEND_SCRIPT,
    FLOOR_SCRIPT,
    BadEntry,
    EntryParser,
    Instance,
    encode_instance,
    localize,
    stream_id,
)
from app.feed.events import Event, Notice, NoticeLevel, encode
from app.feed.live import REPLAY, Feed, LinkStats
from app.feed.outbox import Outbox
from app.feed.redis_url import RedisFeedURL
from app.feed.ring import DEFAULT_CAPACITY, Gap

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

# Events the outbox holds while Redis is slow or away: ~10 s at 1k events/s,
# ~2 MiB.  More are dropped, oldest first, and readers see the gap.
DEFAULT_OUTBOX: Final = 10_000
# How long XREAD parks in Redis before it returns empty (and we ask again).
BLOCK_MS: Final = 1_000
# Entries per XREAD: one ring append each; a busy stream is read in these steps.
READ_COUNT: Final = 1_000
# Any one Redis call (a flush, a read past its BLOCK) taking longer means the
# link is as good as gone: drop it and reconnect.
CALL_TIMEOUT: Final = 5.0
CONNECT_TIMEOUT: Final = 2.0
# Reconnect backoff: 0.1 s doubling to 5 s, each wait jittered down to half,
# so that N instances restarting together do not reconnect in lockstep.
BACKOFF_FIRST: Final = 0.1
BACKOFF_MAX: Final = 5.0
# Lane ids of different instances must not collide on one page: each instance
# numbers its lanes from a random base (20 bits of instance, 32 of lane, under
# JavaScript's 2**53).
LANE_BITS: Final = 32
INSTANCE_BITS: Final = 20

# hello lists the instances whose events arrived in this many seconds (every instance
# publishes its stats once a second while it runs).
INSTANCE_FRESH: Final = 30.0

# What a lost or unusable Redis link raises (coredis wraps most of them; a
# timeout of ours is trio.TooSlowError).  Anything else is a bug, and still
# ends only the link (see RedisFeed.run).
LINK_ERRORS: Final = (coredis.exceptions.RedisError, OSError, trio.TooSlowError)


def backoff_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect attempt number *failures* (1, 2, ...)."""
    ceiling: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))
    return ceiling * (0.5 + rand() / 2)


class RedisFeed(Feed):
    """A :class:`Feed` whose events go through one Redis Stream shared by every instance.

    Build it, ``await nursery.start(feed.run)``, and use it like the in-process
    feed.  Until :meth:`run` connects, it shows this instance's events only.
    """

    def __init__(
        self,
        url: RedisFeedURL,
        capacity: int = DEFAULT_CAPACITY,
        *,
        outbox: int = DEFAULT_OUTBOX,
        worker: int = 0,
        host: str | None = None,
    ) -> None:
        super().__init__(capacity)
        self.url = url
        self.instance = Instance(
            host=host or socket.gethostname(),
            pid=os.getpid(),
            worker=worker,
            started_at=self.started_at,
        )
        self._outbox: Outbox[tuple[int, Event]] = Outbox(outbox)
        self._instance_json = encode_instance(self.instance)
        self._key = self.instance.key
        self._parser = EntryParser()
        # Feed time each instance's newest event arrived at, by instance key.
        self._last_heard: dict[str, tuple[float, Instance]] = {}
        self._lane_base = random.getrandbits(INSTANCE_BITS) << LANE_BITS
        # The highest own ``n`` shown locally while offline: skipped when read back.
        self._shown_own = 0
        # The highest ``seq`` shown in the ring (stream seqs, or local ones while offline).
        self._shown_seq = 0
        # The stream seq the mirror has read up to (0: never read).
        self._read_seq = 0
        self._online = False
        self._linked = False
        self._flush_wakeup = trio.Event()
        self._flusher_parked = False
        # Times the link came back after being lost.
        self._reconnects = 0
        # Events known lost before they reached this ring (trimmed, dropped by an outbox).
        self._lost = 0
        # Stream entries that were not ours and were skipped (the first one is logged).
        self._bad_entries = 0

    # -- what publishers and readers see -------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The stream-wide ``seq`` of the newest event shown here (what ``?since=`` takes)."""
        return self._shown_seq

    @property
    def backend(self) -> str:
        """The stream's URL, without a password."""
        return str(self.url)

    def new_id(self) -> int:
        """A lane id unique across instances (a random per-instance base)."""
        return self._lane_base + super().new_id()

    def link_statistics(self) -> LinkStats:
        """The link's numbers, for ``/metrics``."""
        return LinkStats(
            online=self._online,
            outbox_depth=len(self._outbox),
            outbox_capacity=self._outbox.capacity,
            outbox_dropped=self._outbox.dropped,
            lost=self._lost,
            reconnects=self._reconnects,
        )

    def instances(self) -> list[dict[str, object]]:
        """This instance, then every other one heard from lately (:data:`INSTANCE_FRESH`)."""
        horizon = self.now() - INSTANCE_FRESH
        for key in [k for k, (t, _) in self._last_heard.items() if t < horizon]:
            del self._last_heard[key]  # gone (or silent): also keeps this dict bounded
        others = [i for _, i in self._last_heard.values() if i.key != self.instance.key]
        return [self.instance.describe(), *(i.describe() for i in others)]

    def publish(self, event: E, *, at: float | None = None) -> E:
        """Stamp *event* (``t``, ``inst``) and queue it for the stream.  Never blocks.

        While Redis is away it is also shown locally at once.  Returns the
        same event.
        """
        t = self.now() if at is None else at
        msgspec.structs.force_setattr(event, "t", round(t, 6))
        msgspec.structs.force_setattr(event, "inst", self._key)
        self.published += 1
        self._outbox.push((self.published, event))
        for tap in self._taps:
            tap(event)
        if not self._online:
            self._show_own(self.published, event)
        if self._flusher_parked:
            self._flusher_parked = False
            self._flush_wakeup.set()
            self._flush_wakeup = trio.Event()
        return event

    def resume(self, since: int | None) -> tuple[int, int]:
        """A new reader's ``(cursor, missed)``; *since* is a stream-wide ``seq``."""
        if since is None:
            return self.start_cursor(None), 0
        found = self._ring.cursor_after(since)
        if isinstance(found, Gap):
            self.dropped += found.missed
            return found.resume, found.missed
        return found, 0

    def resume_seq(self, gap: Gap) -> int:
        """The stream ``seq`` a page resumes after, for a gap the ring gave at cursor ``resume``."""
        cursor = gap.resume
        while isinstance(nxt := self._ring.read(cursor, 1), Gap):
            cursor = nxt.resume  # a hole right after the gap: look past it
        # The page skips what is at or below resume: never name more than it missed.
        return nxt[0].seq - 1 if nxt else self._shown_seq

    # -- local display ------------------------------------------------------------------------

    def _show_own(self, n: int, event: Event) -> None:
        """Show one of our own events locally, with the next local ``seq``."""
        self._shown_seq += 1
        msgspec.structs.force_setattr(event, "seq", self._shown_seq)
        self._ring.append(event, stamp=False)
        self._shown_own = max(self._shown_own, n)
        self._wake()

    def _notice(self, level: NoticeLevel, text: str) -> None:
        """Tell this instance's pages something about the link (shown here only)."""
        notice = Notice(level=level, text=text)
        msgspec.structs.force_setattr(notice, "t", round(self.now(), 6))
        msgspec.structs.force_setattr(notice, "inst", self.instance.key)
        self._shown_seq += 1
        msgspec.structs.force_setattr(notice, "seq", self._shown_seq)
        self._ring.append(notice, stamp=False)
        self._wake()

    def _go_offline(self) -> None:
        """The link is down: show our own events here, the queued ones first."""
        self._online = False
        for n, event in self._outbox.pending():
            if n > self._shown_own:
                self._show_own(n, event)
        self._shown_own = max(self._shown_own, self.published)

    def ingest(self, entries: Iterable[tuple[Any, Any]], *, history: bool = False) -> None:
        """Append stream entries ``(id, fields)``, oldest first, to the ring.

        A jump in ``seq`` is a hole of that many lost events (a gap for
        readers), except in *history* (the replay read at first connect) and
        across ``skip`` entries.  Our own events already shown while offline
        are not shown twice.
        """
        lost = 0
        now = self.now()
        for identifier, fields in entries:
            try:
                entry = self._parser.parse(identifier, fields)
            except BadEntry as exc:
                self._bad_entries += 1
                if self._bad_entries == 1:
                    log.warning("feed: skipping a stream entry that is not ours: %s", exc)
                continue
            seq = entry.seq
            if seq <= self._read_seq:
                continue  # read twice: nothing new
            self._read_seq = seq
            if entry.event is None or entry.instance is None:
                self._shown_seq = max(self._shown_seq, seq)  # a skip entry: the counter jumped
                continue
            if not history:  # old entries say nothing about who runs now
                self._last_heard[entry.inst] = (now, entry.instance)
            own_shown = entry.inst == self._key and entry.n <= self._shown_own
            if seq <= self._shown_seq:
                # Published by others while our own link was down, in the range we used to
                # number our local events: the page cannot take it out of order.
                lost += 0 if own_shown else 1
                continue
            if not history:
                lost += seq - self._shown_seq - 1
            self._shown_seq = seq
            if own_shown:
                continue
            localize(entry.event, seq, entry.instance, self.started_at, entry.inst)
            if lost:
                self._skip(lost)
                lost = 0
            self._ring.append(entry.event, stamp=False)
        if lost:
            self._skip(lost)
        self._wake()

    def _skip(self, lost: int) -> None:
        self._ring.skip(lost)
        self._lost += lost

    # -- the link -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link to Redis up until cancelled; started at once, connected in the background.

        Never raises for Redis trouble: a lost link is logged (one line per
        outage), shown as a ``notice``, and retried with backoff.
        Cancellation: safe anywhere; an outbox batch in flight is counted as lost.
        """
        task_status.started()
        failures = 0
        while True:
            self._linked = False
            try:
                await self._connected_session()
            except* LINK_ERRORS as group:
                reason = _describe(group)
            except* Exception as group:  # the link's boundary: a bug here must not end serve
                log.error("feed: unexpected error on the Redis link", exc_info=group)
                reason = _describe(group)
            if self._linked:
                failures = 0
                log.warning(
                    "feed: lost %s (%s); showing this instance's events only, retrying",
                    self.url,
                    reason,
                )
            elif failures == 0:
                log.warning(
                    "feed: %s unavailable (%s); serving this instance's events locally, "
                    "retrying with backoff",
                    self.url,
                    reason,
                )
            else:
                log.debug("feed: %s still unavailable: %s", self.url, reason)
            self._go_offline()
            if failures == 0:
                self._notice(
                    "warning",
                    f"the shared feed is unavailable ({reason}): showing this instance's "
                    "events only until it is back",
                )
            failures += 1
            await trio.sleep(backoff_delay(failures))

    async def _connected_session(self) -> None:
        async with coredis.Redis(
            host=self.url.host,
            port=self.url.port,
            db=self.url.db,
            password=self.url.password,
            connect_timeout=CONNECT_TIMEOUT,
            retry_policy=coredis.retry.NoRetryPolicy(),
            client_name=f"trio-echo-{self.instance.pid}-{self.instance.worker}",
        ) as redis:
            await self._connect(redis)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_loop, redis)
                await self._read_loop(redis)

    async def _connect(self, redis: coredis.Redis[bytes]) -> None:
        """Line the stream's counter up with what we showed, then read on from there.

        From the first await on, our events go to the outbox only: they come
        back through the stream (or are shown by :meth:`_go_offline` if this fails).
        """
        first = self._read_seq == 0
        # Were pages here shown our events only (an outage, or Redis down at start)?
        was_alone = not first or self._shown_seq > 0
        self._online = True
        with trio.fail_after(CALL_TIMEOUT):
            counters: Any = await redis.eval(
                FLOOR_SCRIPT,
                keys=[self.url.stream, self.url.counter],
                args=[self._shown_seq, self._maxlen],
            )
        before, after = int(counters[0]), int(counters[1])
        if first and self._shown_seq == 0:
            with trio.fail_after(CALL_TIMEOUT):
                recent = await redis.xrevrange(self.url.stream, count=REPLAY)
            self.ingest(((e.identifier, e.field_values) for e in reversed(recent)), history=True)
            self._read_seq = max(self._read_seq, after)
        elif first:
            self._read_seq = after
        elif before < self._read_seq:
            log.warning("feed: %s lost the stream (restarted without persistence?)", self.url)
            self._read_seq = after
            # Through the stream (our local numbering is past the floor now).
            self.publish(
                Notice(
                    level="warning",
                    text="Redis lost the shared feed's history (restarted without "
                    "persistence?): what was published while it was away is gone, uncounted",
                )
            )
        self._linked = True
        if first:
            log.info("feed: connected to %s", self.url)
        else:
            self._reconnects += 1
            log.info("feed: %s is back", self.url)
        if was_alone:
            # Through the stream: every page learns that this instance is back.
            self.publish(
                Notice(level="info", text=f"{self.instance.key} is back on the shared feed")
            )

    @property
    def _maxlen(self) -> int:
        return self._ring.capacity

    async def _flush_loop(self, redis: coredis.Redis[bytes]) -> None:
        # Loaded once per connection (a restarted Redis has an empty script cache).
        with trio.fail_after(CALL_TIMEOUT):
            sha = await redis.script_load(APPEND_SCRIPT)
        keys = [self.url.stream, self.url.counter]
        while True:
            if not len(self._outbox) and not self._outbox.unreported:
                self._flusher_parked = True
                await self._flush_wakeup.wait()
                continue
            batch = self._outbox.take()
            args: list[str | bytes | int] = [batch.dropped, self._maxlen, self._instance_json]
            for n, event in batch.events:
                args += [n, encode(event)]
            try:
                with trio.fail_after(CALL_TIMEOUT):
                    await redis.evalsha(sha, keys=keys, args=args)
            except BaseException:
                self._outbox.lost(batch)
                raise

    async def _read_loop(self, redis: coredis.Redis[bytes]) -> None:
        while True:
            with trio.fail_after(CALL_TIMEOUT + BLOCK_MS / 1000):
                found = await redis.xread(
                    {self.url.stream: stream_id(self._read_seq)}, count=READ_COUNT, block=BLOCK_MS
                )
            for entries in (found or {}).values():
                self.ingest((e.identifier, e.field_values) for e in entries)


def _describe(group: BaseExceptionGroup[Any]) -> str:
    """One line for the first leaf of *group*: its type and message."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
