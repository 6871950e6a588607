"""Messages of the ``/ws/events`` channel, as data, and their JSON form.

Rules of this module:

* Pure: no trio, no sockets.  The web shell feeds it text and sends what it
  returns.
* Server to client: ``hello`` (once, first), ``events`` (a batch of feed
  events, oldest first), ``gap`` (events the client missed because it fell
  behind; it resumes after ``resume``), ``reply`` (the answer to a control
  message) and ``error`` (a control message that was refused, with why).
* Client to server: control messages, validated by :mod:`app.feed.control`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec


class Hello(msgspec.Struct, kw_only=True, tag_field="type", tag="hello"):
    """The first message on ``/ws/events``: who the server is and what it can run."""

    version: str
    pid: int
    worker: int
    #: Wall-clock start time of the server (Unix seconds); events' ``t`` counts from it.
    started_at: float
    #: Feed time now, so that the page can line its clock up with events' ``t``.
    now: float
    #: ``seq`` of the newest event when this hello was sent.
    seq: int
    #: Whether this connection may start and cancel scenario runs (always, once the
    #: handshake passed the Origin check).
    control: bool
    scenarios: list[dict[str, Any]]
    #: Recent scenario runs, oldest first: ``id``, ``scenario``, ``params``, ``state``.
    runs: list[dict[str, Any]]
    #: The states a run ends in (any other state means it still runs).
    final_states: list[str]
    #: The ``run`` of echo connections' events (not a scenario run).
    echo_run: str
    limits: dict[str, Any]
    listeners: dict[str, str]
    #: With ``serve --workers N``: every worker's own web URL,
    #: ``[{"worker": 1, "url": "http://127.0.0.1:40123"}, ...]``; empty when alone.
    peers: list[dict[str, Any]] = []


class GapMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="gap"):
    """The client fell behind: *missed* events are gone; the next batch starts after *resume*."""

    missed: int
    resume: int


class Reply(msgspec.Struct, kw_only=True, tag_field="type", tag="reply", omit_defaults=True):
    """The answer to a control message; *id* echoes the request's ``id``."""

    id: str | int | None = None
    ok: bool = True
    run: str = ""
    result: dict[str, Any] = {}


class ErrorMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="error", omit_defaults=True):
    """A control message was refused; *message* says what was expected and what came."""

    message: str
    id: str | int | None = None


_encoder: Final = msgspec.json.Encoder()


def encode(message: Hello | GapMessage | Reply | ErrorMessage) -> bytes:
    """The message as the UTF-8 payload of a websocket text frame."""
    return _encoder.encode(message)


def encode_events(chunks: list[bytes]) -> bytes:
    """A batch of already-encoded events as the UTF-8 payload of one ``events`` text frame.

    The events' JSON is the ring's, encoded once per event for every reader;
    the frame goes out as these bytes (``WebSocket.send_utf8``), never decoded
    to ``str`` and encoded again per subscriber.
    """
    return b'{"type":"events","events":[' + b",".join(chunks) + b"]}"
