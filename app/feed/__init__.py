"""The live feed: what every producer publishes and every watcher reads.

One room, one rule: everything here is pure data and logic (no trio, no sockets, no web
library; ``tests/feed/test_purity.py`` enforces it) except :mod:`app.feed.live`, the
waking :class:`~app.feed.live.Feed` that tasks await on.

- :mod:`app.feed.events`: the event records and their JSON form.
- :mod:`app.feed.ring`: the bounded ring with a global sequence number, cursors and gaps.
- :mod:`app.feed.protocol`: what the server sends on ``/ws/events`` (``hello``, batches, ``gap``).
- :mod:`app.feed.control`: what a page sends on ``/ws/events`` (start, cancel).
- :mod:`app.feed.chrome_trace`: a run's events as a Chrome trace (Perfetto).
- :mod:`app.feed.steps`: scheduler steps coalesced into ``step`` events within a budget
  (the tracer's arithmetic; :mod:`app.tracer` is its Trio shell).
- :mod:`app.feed.bucket`: the token bucket that bounds the step budget and control messages.
- :mod:`app.feed.live`: the waking feed over a ring (the in-process backend).
"""
