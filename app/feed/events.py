"""The events of the live feed: small immutable records, and their JSON form.

Rules of this module:

* Pure data.  No trio, no sockets; the feed, the tracer and the web shells
  import it, never the other way round.
* An event is built by its producer without ``seq`` and ``t``;
  :meth:`app.feed.live.Feed.publish` stamps both exactly once, as it appends the
  event to the ring.  After that nobody changes it.
* ``task`` is a lane id from :func:`app.feed.live.Feed.new_id`: a Trio task of a
  scenario, an echo connection, or 0 for the server itself.  ``run`` says
  which scenario run the task belongs to, ``"echo"`` for echo connections.
* The JSON form is the one the page reads: ``{"kind": "output", "seq": 7,
  "t": 1.25, ...}`` with fields left out when they hold their default.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgspec

#: The ``run`` of every echo connection's events.
ECHO_RUN: Final = "echo"

#: Where a scenario run stands: ``running``, then exactly one of the final states.
RunState = Literal["running", "done", "cancelled", "timeout", "error"]
#: The states a run ends in (``run_end.state``); the page learns them from ``hello``.
FINAL_RUN_STATES: Final[tuple[RunState, ...]] = tuple(
    s for s in get_args(RunState) if s != "running"
)

#: The transports of echo connections (``conn_open.transport``).
Transport = Literal["tcp", "tls", "ws", "udp"]

#: How much a :class:`Notice` matters to whoever watches.
NoticeLevel = Literal["info", "warning", "error"]


class Event(
    msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="kind", omit_defaults=True
):
    """Base of every feed event.

    ``gc=False``: events hold only scalars and small lists of scalars, never a
    cycle, and a busy feed holds tens of thousands of them; keeping them out of
    the cyclic collector's lists keeps its passes short.
    """

    #: Global and increasing; stamped by the feed.
    seq: int = 0
    #: Seconds since the feed started (monotonic); stamped by the feed.
    t: float = 0.0
    #: Lane id; 0 is the server itself.
    task: int = 0
    #: Scenario run id, :data:`ECHO_RUN`, or "" for the server.
    run: str = ""
    #: The instance that published it, ``host/pid/worker``, on a shared (Redis) feed;
    #: "" on the in-process feed, where every event is this process's own.
    inst: str = ""


class Spawn(Event, tag="spawn", frozen=True):
    """A watched task started.  *parent* is the lane of the task whose nursery holds it."""

    name: str
    parent: int = 0
    #: The nursery it sits in (an id from the feed's counter, shared by the nursery's
    #: tasks; 0 when not known).  Set under ``trio-echo watch``.
    nursery: int = 0


class Exit(Event, tag="exit", frozen=True):
    """A watched task ended, after *steps* scheduler steps and *busy* seconds of running."""

    steps: int = 0
    busy: float = 0.0


class Output(Event, tag="output", frozen=True):
    """A line a scenario task printed (the tutorial's ``print``)."""

    text: str
    #: ``stdout`` or ``stderr`` for a watched program's lines; "" for a scenario's.
    stream: str = ""


class Step(Event, tag="step", frozen=True):
    """Scheduler steps of one task, coalesced: from ``t`` for ``dur`` s, ``busy`` s of it running.

    A step is one run of the task between two checkpoints.  Consecutive steps
    of a task are merged into one event so that the feed rate stays bounded
    whatever the task count; ``count`` says how many were merged.
    """

    dur: float
    busy: float
    count: int = 1


class Block(Event, tag="block", frozen=True):
    """One step held the loop for *dur* seconds: every other task was stalled meanwhile."""

    name: str
    dur: float


class TlsInfo(msgspec.Struct, frozen=True, gc=False):
    """What a TLS handshake agreed on (issue 11): ``{"version", "cipher", "sni", "alpn"}``.

    *version* is ``TLSv1.2`` or ``TLSv1.3``, *cipher* the OpenSSL suite name;
    *sni* the server name the client asked for (RFC 6066) and *alpn* the
    protocol chosen (RFC 7301), each None when the client sent none.
    """

    version: str
    cipher: str
    sni: str | None = None
    alpn: str | None = None


class StackFrame(msgspec.Struct, frozen=True, gc=False):
    """One frame of a stack: ``{"file", "line", "function"}``."""

    file: str
    line: int
    function: str


class Stall(Event, tag="stall", frozen=True):
    """A step has held the loop *seconds* so far and still does (the stall watchdog).

    Published when a step passes ``--stall-threshold`` and again every second
    until it returns; the ``block`` published when it returns closes it.
    ``t`` is when the stack was taken (the step began at ``t - seconds``);
    *frames* is the stack of the stuck task then, innermost last.
    """

    name: str
    seconds: float
    frames: list[StackFrame] = []


class ConnOpen(Event, tag="conn_open", frozen=True):
    """An echo connection was accepted: *transport* is ``tcp``, ``tls``, ``ws`` or ``udp``
    (a source).  *tls* is set for connections over TLS, once their handshake is done.
    """

    transport: Transport
    peer: str
    tls: TlsInfo | None = None


class ConnClose(Event, tag="conn_close", frozen=True):
    """An echo connection ended, with its totals and the reason it ended."""

    transport: Transport
    peer: str
    bytes_in: int
    bytes_out: int
    msgs: int
    dur: float
    reason: str


class ConnSample(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One busy connection in a :class:`EchoStats` tick: ``[task, bytes_in, bytes_out, msgs]``."""

    task: int
    bytes_in: int
    bytes_out: int
    msgs: int


class EchoStats(Event, tag="echo_stats", frozen=True):
    """Once a second while any echo connection is open: totals and the busiest connections.

    Per-connection counters are summarised here instead of one event per
    message; ``conns`` lists at most a bounded number of the connections that
    moved bytes during the tick (cumulative counters), busiest first.
    """

    tcp: int
    ws: int
    bytes_per_s: float
    msgs_per_s: float
    conns: list[ConnSample] = []
    #: UDP echo sources with a lane, and datagrams dropped so far (all reasons; issue 11).
    udp: int = 0
    udp_dropped: int = 0
    #: TLS echo connections (issue 11); left out of the JSON while 0.
    tls: int = 0
    #: Bytes moved over TLS echo since start (both directions, as ``/metrics`` counts them),
    #: and UDP datagrams echoed since start; left out of the JSON while 0.
    tls_bytes: int = 0
    udp_datagrams: int = 0


class Stats(Event, tag="stats", frozen=True):
    """Once a second: the server's own health; ``lag`` is the worst loop wake-up delay seen."""

    lag: float
    tasks: int
    subscribers: int
    dropped: int = 0
    #: Wake-up delays of the lag probe during the second, oldest first (for the chart).
    lags: list[float] = []


class RunStart(Event, tag="run_start", frozen=True):
    """A scenario run began with these (validated) parameters."""

    scenario: str
    params: dict[str, Any]


class RunEnd(Event, tag="run_end", frozen=True):
    """A scenario run ended: *state* is one of :data:`FINAL_RUN_STATES`."""

    state: RunState
    error: str = ""
    summary: dict[str, Any] = {}


class Notice(Event, tag="notice", frozen=True):
    """Something the server wants a human watching the page to know (a warning, a refusal)."""

    level: NoticeLevel
    text: str


AnyEvent = (
    Spawn
    | Exit
    | Output
    | Step
    | Block
    | Stall
    | ConnOpen
    | ConnClose
    | EchoStats
    | Stats
    | RunStart
    | RunEnd
    | Notice
)

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """The JSON form of one event (UTF-8)."""
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    """Parse one event's JSON form; raises :class:`msgspec.ValidationError` if it is not one."""
    event: AnyEvent = _decoder.decode(data)
    return event
