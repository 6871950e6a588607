"""``/ws/events``: the live feed for the page, and the channel that carries its control messages.

A subscriber gets ``hello``, then a replay of recent events (or everything
after ``?since=SEQ`` that the ring still holds), then live events in batches.
Its writer only ever holds a cursor into the ring; when it falls behind it
gets a ``gap`` and jumps forward.  A stuck browser therefore costs no memory
here; the front's write timeout cuts its connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

import trio

from app.feed import protocol
from app.feed.bucket import TokenBucket
from app.feed.control import BadControlMessage, Start, parse_control, request_id
from app.feed.live import Feed
from app.feed.ring import Gap
from app.scenarios.runner import Runner, RunRefused
from app.tracer import TaskWatcher
from app.web.origin import origin_allowed
from app.web.wsapi import WebSocket, WebSocketClosed

log = logging.getLogger(__name__)

# Events per ``events`` frame; at ~150 bytes each, frames stay under ~150 KiB.
MAX_BATCH: Final = 1_000
# A subscriber sends at most one frame per this many seconds, so a busy feed
# costs each browser ~20 frames/s, not one frame per event; it is also the
# added latency, well under the 100 ms the page can notice.
MIN_BATCH_INTERVAL: Final = 0.05
# Control messages per connection: a burst of 20, then 10 a second.
CONTROL_RATE: Final = 10.0
CONTROL_BURST: Final = 20


def parse_since(query: str) -> int | None:
    """The ``since`` cursor of a query string, if any.

    Raises:
        ValueError: ``since`` is not a whole number >= 0.
    """
    values = parse_qs(query).get("since")
    if not values:
        return None
    since = int(values[-1])
    if since < 0 or since > 2**53:
        raise ValueError(f"since must be between 0 and 2**53, got {since}")
    return since


@dataclass(frozen=True, slots=True)
class FeedChannel:
    """What ``/ws/events`` needs of the server, and nothing more."""

    feed: Feed
    #: Starts and cancels runs for the control messages.
    runner: Runner
    #: Asked to trace steps while a subscriber watches.
    tracer: TaskWatcher
    #: Origins allowed besides the page's own (``--allowed-origins``).
    origins: frozenset[str]
    #: The ``hello`` for a new subscriber, as of now.
    hello: Callable[[], protocol.Hello]


async def events(ws: WebSocket, channel: FeedChannel) -> None:
    """Serve one subscriber until it leaves or the server drains."""
    if not origin_allowed(ws.header("origin"), ws.header("host"), channel.origins):
        log.warning("/ws/events: refused a connection from foreign origin %s", ws.header("origin"))
        await ws.reject(403)
        return
    try:
        since = parse_since(ws.query_string)
    except ValueError as exc:
        log.info("/ws/events: bad query from %s: %s", ws.peer, exc)
        await ws.reject(400)
        return
    await ws.accept()
    await ws.send_utf8(protocol.encode(channel.hello()))
    feed = channel.feed
    feed.subscribers += 1
    try:
        with channel.tracer.stepping():  # someone watches: the scheduler's steps are worth tracing
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_control, ws, channel.runner, nursery.cancel_scope)
                try:
                    await _stream(ws, feed, feed.start_cursor(since))
                except WebSocketClosed:
                    nursery.cancel_scope.cancel()  # the reader's receive ends with it
    finally:
        feed.subscribers -= 1


async def _stream(ws: WebSocket, feed: Feed, cursor: int) -> None:
    """Send events after *cursor* as they come, in batches, gaps announced."""
    while True:
        await feed.wait_new(cursor)
        batch = feed.read_encoded(cursor, MAX_BATCH)
        if isinstance(batch, Gap):
            await ws.send_utf8(
                protocol.encode(protocol.GapMessage(missed=batch.missed, resume=batch.resume))
            )
            cursor = batch.resume
            continue
        await ws.send_utf8(protocol.encode_events(batch))
        cursor += len(batch)
        await trio.sleep(MIN_BATCH_INTERVAL)


async def _read_control(ws: WebSocket, runner: Runner, done: trio.CancelScope) -> None:
    """Answer each control message; when the client leaves, stop the writer too.

    A refused message gets an ``error`` reply and the connection stays open;
    only the client's own messages are refused, nothing else is affected.
    """
    bucket = TokenBucket(CONTROL_RATE, CONTROL_BURST)
    try:
        while True:
            data = await ws.receive()
            if bucket.take(trio.current_time()):
                answer = control_answer(runner, data)
            else:
                answer = protocol.ErrorMessage(
                    message=f"too many control messages: at most {CONTROL_RATE:g} a second",
                    id=request_id(data),
                )
            await ws.send_utf8(protocol.encode(answer))
    except WebSocketClosed:
        done.cancel()


def control_answer(runner: Runner, data: str | bytes) -> protocol.Reply | protocol.ErrorMessage:
    """Carry out one control message and say how it went."""
    try:
        message = parse_control(data)
        if isinstance(message, Start):
            record = runner.start(message.scenario, message.params)
        else:
            record = runner.cancel(message.run)
    except (BadControlMessage, RunRefused) as exc:
        return protocol.ErrorMessage(message=str(exc), id=request_id(data))
    return protocol.Reply(id=message.id, run=record.id, result=record.describe())
