"""What the parts of one server share: settings, the feed, the connection tables, the drain signal.

The root task (:mod:`app.server`) builds one :class:`Hub` and hands each
part what that part needs from it (a connection table, the feed, a few
settings), so that a part never reaches into another part to find these.
Only the root writes to it.  It holds state, not behaviour, plus the two
snapshots of the whole server that the web shows: :meth:`Hub.hello` and
:meth:`Hub.health`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from app import __version__
from app.config import Settings
from app.echo.conns import ConnTable, HandshakeCounts
from app.echo.proxy import ProxyPolicy, ProxyRefusals, proxy_policy
from app.echo.udp import LANE_IDLE, MAX_LANES, UdpDrops
from app.feed.events import ECHO_RUN, FINAL_RUN_STATES, Transport
from app.feed.live import Feed
from app.feed.protocol import Hello
from app.feed.redis_url import parse_feed
from app.lagstats import LagHistogram
from app.scenarios.runner import KEEP_RUNS, Runner
from app.tracer import StepTracer, TaskWatcher


@dataclass(eq=False)
class Hub:
    """The shared state of one server process."""

    settings: Settings
    feed: Feed
    #: TCP echo connections.
    tcp: ConnTable
    #: Websocket echo connections.
    ws: ConnTable
    #: TLS echo connections (issue 11; empty unless TLS is on).
    tls: ConnTable
    #: The Trio instrument that gives watched tasks their lanes (and traces steps).
    tracer: TaskWatcher
    runner: Runner
    #: Set once shutdown begins: endpoints say goodbye (1001), listeners stop accepting.
    draining: trio.Event = field(default_factory=trio.Event)
    #: ``tcp`` and ``web`` listening addresses, once bound.
    listeners: dict[str, str] = field(default_factory=dict)
    #: Worker number when running as one of ``--workers N`` (0 when alone).
    worker: int = 0
    #: Every worker's private web URL, ``{"worker": n, "url": ...}``, when one of several.
    peers: list[dict[str, Any]] = field(default_factory=list)
    # -- issue 11 (part 2): UDP echo and the PROXY protocol --
    #: UDP echo sources with a lane (at most MAX_LANES; a lane ends after LANE_IDLE s quiet).
    udp: ConnTable | None = None
    #: Datagrams not echoed, by reason.
    udp_drops: UdpDrops = field(default_factory=UdpDrops)
    #: Who must send a PROXY header first, and from where (None: --proxy-protocol off).
    proxy: ProxyPolicy | None = None
    #: Connections closed for a missing, bad or untrusted PROXY header (TCP and TLS echo, web);
    #: each listener's own counts, headers accepted too, in its ``listeners`` (for /metrics).
    proxy_refusals: ProxyRefusals = field(default_factory=lambda: ProxyRefusals("proxy protocol"))
    pid: int = field(default_factory=os.getpid)
    version: str = __version__
    # Issue 11 (TLS): the handshakes of both TLS listeners.
    #: Handshakes by listener, ``echo`` and ``web``.
    handshakes: dict[str, HandshakeCounts] = field(
        default_factory=lambda: {"echo": HandshakeCounts(), "web": HandshakeCounts()}
    )
    # -- issue 13: what /metrics reads ---------------------------------------------------------
    #: The ticker's loop-lag probes.
    lag: LagHistogram = field(default_factory=LagHistogram)

    @classmethod
    def create(cls, settings: Settings, feed: Feed | None = None, worker: int = 0) -> Hub:
        """A hub with fresh tables sharing *feed* (a new one if not given)."""
        feed = feed or make_feed(settings, worker)

        def table(transport: Transport, limit: int) -> ConnTable:
            return ConnTable(
                transport,
                limit,
                settings.idle_timeout,
                new_id=feed.new_id,
                publish=feed.publish,
                now=feed.now,
            )

        tracer = StepTracer(feed, settings.block_threshold) if settings.trace else TaskWatcher(feed)
        return cls(
            settings=settings,
            feed=feed,
            tcp=table("tcp", settings.max_connections),
            ws=table("ws", settings.max_web_connections),
            tracer=tracer,
            runner=Runner(
                feed, tracer, max_runs=settings.max_runs, run_timeout=settings.run_timeout
            ),
            worker=worker,
            tls=table("tls", settings.max_connections),
            udp=ConnTable(
                "udp",
                MAX_LANES,
                LANE_IDLE,
                new_id=feed.new_id,
                publish=feed.publish,
                now=feed.now,
                log_idle=False,
            ),
            proxy=proxy_policy(settings.proxy_protocol, settings.proxy_trusted),
        )

    def hello(self) -> Hello:
        """What a new ``/ws/events`` subscriber is told about this server first."""
        s = self.settings
        return Hello(
            version=self.version,
            pid=self.pid,
            worker=self.worker,
            started_at=self.feed.started_at,
            now=round(self.feed.now(), 6),
            seq=self.feed.last_seq,
            control=True,
            scenarios=[s.info.describe() for s in self.runner.scenarios.values()],
            runs=self.runner.runs(),
            final_states=list(FINAL_RUN_STATES),
            echo_run=ECHO_RUN,
            limits={
                "max_connections": s.max_connections,
                "max_web_connections": s.max_web_connections,
                "idle_timeout": s.idle_timeout,
                "max_message_size": s.max_message_size,
                "block_threshold": s.block_threshold,
                "stall_threshold": s.stall_threshold,  # issue 10: the stall watchdog's
                "keep_runs": KEEP_RUNS,
            },
            listeners=dict(self.listeners),
            peers=list(self.peers),
            feed=self.feed.backend,
            instances=self.feed.instances(),
        )

    def health(self, web_connections: int, web_refused: int) -> dict[str, Any]:
        """The ``/healthz`` body; the front counts *web_connections* open and *web_refused*."""
        return {
            "status": "draining" if self.draining.is_set() else "ok",
            "version": self.version,
            "pid": self.pid,
            "worker": self.worker,
            "uptime": round(self.feed.now(), 3),
            "time": time.time(),
            "tcp": {
                "connections": len(self.tcp),
                "limit": self.tcp.limit,
                "refused": self.tcp.refusals.total,
                "engine": self.settings.engine,
            },
            "web": {
                "connections": web_connections,
                "limit": self.settings.max_web_connections,
                "refused": web_refused,
            },
            "ws_echo": {"connections": len(self.ws), "refused": self.ws.refusals.total},
            # Issue 11: TLS echo connections and both TLS listeners' handshakes.
            "tls": {
                "connections": len(self.tls),
                "refused": self.tls.refusals.total,
                "handshakes": {k: v.as_json() for k, v in self.handshakes.items()},
            }
            if self.settings.tls_enabled
            else None,
            "feed": {"seq": self.feed.last_seq, "subscribers": self.feed.subscribers},
            # -- issue 11 (part 2): UDP echo and the PROXY protocol --
            "udp": {
                "address": self.listeners.get("udp"),
                "sources": len(self.udp) if self.udp is not None else 0,
                "dropped": dataclasses.asdict(self.udp_drops),
            },
            "proxy_protocol": {
                "mode": self.settings.proxy_protocol,
                "refused": self.proxy_refusals.total,
            },
        }


def make_feed(settings: Settings, worker: int = 0) -> Feed:
    """The feed ``--feed`` asks for: the in-process ring, or the shared Redis Stream.

    Raises:
        BadFeedURL: ``--feed`` is not a feed URL (the CLI checks it first).
    """
    url = parse_feed(settings.feed)
    if url is None:
        return Feed(settings.feed_capacity)
    # Imported only when asked for: the in-process feed does not load a Redis client.
    from app.feed.redis import RedisFeed

    return RedisFeed(url, settings.feed_capacity, outbox=settings.feed_outbox, worker=worker)
