"""What crosses the process boundary between a watched child and ``trio-echo watch``.

Rules of this module:

* Pure data: msgspec structs, no I/O, no trio.  The agent (inside the child)
  builds plain tuples in the same field order (cheaper than structs on the
  hot path of an instrument hook) and the exporter thread encodes them; the
  parent decodes them into these typed structs, so a message that does not
  match is a ``msgspec.ValidationError`` there, not a guess.
* One message per line: JSON arrays, ``["spawn", run, task, ...]`` (tag first,
  ``array_like``).  JSON keeps the stream readable with ``socat``; the
  volume is bounded by the agent (coalesced steps, a bounded buffer).
* ``run`` is the agent's own number for one ``trio.run`` (1, 2, ... in this
  process); ``task`` its own number for one task of that run.  The parent
  maps both to feed ids.  Times ``t`` are ``time.perf_counter()`` readings:
  ``CLOCK_MONOTONIC`` on Linux, the same clock in every process of the
  machine, so the parent converts them with :meth:`app.feed.live.Feed.to_feed_time`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

#: Longest line the parent accepts (a snapshot of 10,000 tasks with 16 frames each is ~20 MB);
#: a longer one closes that process's link.
MAX_LINE: Final = 32 * 1024 * 1024


class Msg(msgspec.Struct, array_like=True, frozen=True, tag_field="op", gc=False):
    """Base of every message; encoded as ``[tag, field, ...]``."""


class Hello(Msg, tag="hello", frozen=True):
    """First message of a connection: who the child is."""

    pid: int
    argv: list[str]


class RunStart(Msg, tag="run_start", frozen=True):
    """A ``trio.run`` began in the child."""

    run: int
    t: float


class RunEnd(Msg, tag="run_end", frozen=True):
    """A ``trio.run`` returned (*error* empty) or raised (*error* names the exception)."""

    run: int
    t: float
    error: str


class Spawn(Msg, tag="spawn", frozen=True):
    """A task started in nursery *nursery*, whose parent task is *parent* (0: the run's root)."""

    run: int
    task: int
    name: str
    parent: int
    nursery: int
    t: float


class Exit(Msg, tag="exit", frozen=True):
    """A task ended after *steps* scheduler steps and *busy* seconds of running."""

    run: int
    task: int
    t: float
    steps: int
    busy: float


class Step(Msg, tag="step", frozen=True):
    """Coalesced steps of one task: from *t* for *dur* s, *busy* s of it running, *count* steps."""

    run: int
    task: int
    t: float
    dur: float
    busy: float
    count: int


class Block(Msg, tag="block", frozen=True):
    """One step held the loop *dur* seconds from *t* (over the block threshold)."""

    run: int
    task: int
    name: str
    t: float
    dur: float


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One frame of a stack: ``{"file", "line", "function"}``."""

    file: str
    line: int
    function: str


class Stall(Msg, tag="stall", frozen=True):
    """The step of *task* has held the loop *seconds* so far; *frames* innermost last."""

    run: int
    task: int
    name: str
    t: float
    seconds: float
    frames: list[Frame]


class Output(Msg, tag="out", frozen=True):
    """A line the child wrote to stdout or stderr while *task* ran (0: outside any task)."""

    run: int
    task: int
    stream: str
    text: str
    t: float


class Dropped(Msg, tag="dropped", frozen=True):
    """*count* records were dropped because the buffer was full (the exporter fell behind)."""

    count: int


class TasksReply(Msg, tag="tasks", frozen=True):
    """The answer to a :class:`TasksRequest`: one entry per live run (see ``snapshot``)."""

    id: int
    runs: list[dict[str, Any]]


class TasksRequest(Msg, tag="tasks?", frozen=True):
    """Parent to child: list every task of every live run, with stacks (``detail`` for one)."""

    id: int
    detail: int = 0


class StepsRequest(Msg, tag="steps", frozen=True):
    """Parent to child: install (*on*) or remove the per-step hooks in every run."""

    on: bool


FromAgent = Hello | RunStart | RunEnd | Spawn | Exit | Step | Block | Stall | Output | Dropped
FromAgentAll = FromAgent | TasksReply

_decoder: Final = msgspec.json.Decoder(FromAgentAll)
_request_decoder: Final = msgspec.json.Decoder(TasksRequest)
_encoder: Final = msgspec.json.Encoder()


def decode(line: bytes) -> FromAgentAll:
    """One line from the agent as a message; raises :class:`msgspec.DecodeError` if not one."""
    msg: FromAgentAll = _decoder.decode(line)
    return msg


def decode_request(line: bytes) -> TasksRequest:
    """One line from the parent as a request; raises :class:`msgspec.DecodeError` if not one."""
    req: TasksRequest = _request_decoder.decode(line)
    return req


def encode_line(msg: object) -> bytes:
    """*msg* (a struct or a tuple in wire order) as one JSON line, newline included."""
    return _encoder.encode(msg) + b"\n"
