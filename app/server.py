"""One trio-echo server: the root nursery and the order things start and stop in.

::

    Server.run
    └── root nursery
        ├── feed link          --feed redis://...: outbox flusher and stream mirror (else none)
        ├── echo engine        TCP echo on --tcp-port (epoll: one task; tasks, trio: a task each)
        ├── udp echo engine    UDP echo on --udp-port (one task), unless --no-udp
        ├── ws echo engine     /ws/echo after the handshake, one task (--ws-engine epoll)
        ├── tls echo engine    TCP echo over TLS on --tls-port (one task; without epoll a
                               task each; issue 11)
        ├── web front          Hypercorn per connection on --http-port (page, feed, /ws/echo)
                               and, with TLS, on --https-port (HTTPS, WSS)
        ├── scenario runner    the tutorial's examples as worker tasks, started from the page
        └── ticker             loop lag, idle sweeps, 1 Hz summaries

The tracer (a Trio instrument) is installed for the server's lifetime.

Both listeners are bound before anything starts, so a port in use fails
fast with one clear error and nothing half-started.  Shutdown (:meth:`stop`)
is a drain: the web front stops accepting and endpoints close with 1001,
for at most ``--graceful-timeout`` seconds; then the root scope is
cancelled and every task and connection goes with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from app import portability
from app.certs import ServerTls, server_tls
from app.config import EchoEngine, Settings, WsEngine, is_loopback, parse_networks
from app.echo.conns import LimitLog
from app.echo.proxy import ProxyRefusals
from app.echo.tasks import TaskEngine
from app.echo.udp import RateGate, UdpEngine, open_datagram
from app.echo.wsprotocol import DeflateSettings
from app.feed.events import ECHO_RUN
from app.feed.live import Feed
from app.hub import Hub
from app.metrics import HubCollector
from app.net import bound_port, named_error, open_listener
from app.ready import bracket
from app.ticker import run_ticker
from app.watch.own import OwnLoop
from app.web.asgi import build_app, websocket_endpoints
from app.web.front import WebFront
from app.web.info import ServerIdentity
from app.web.ws_events import FeedChannel
from app.web.wsasgi import DeflateLimits

if TYPE_CHECKING:
    # Imported where they run: they need epoll, which not every system has.
    from app.echo.epoll import EpollEngine
    from app.echo.tls import TlsEchoEngine
    from app.echo.tlstasks import TlsTaskEngine
    from app.echo.websocket import WsEchoEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ports:
    """Where a started server listens (the real ports, also when 0 was asked)."""

    host: str
    tcp: int
    http: int
    #: A worker's private web port (0 when not one of ``--workers N``).
    private_http: int = 0
    # Issue 11: the TLS echo and HTTPS ports (0 when TLS is off).
    tls: int = 0
    https: int = 0

    @property
    def tls_address(self) -> str:
        """``host:port`` of the TLS echo listener."""
        return f"{bracket(self.host)}:{self.tls}"

    @property
    def https_url(self) -> str:
        """The page's URL on the HTTPS port."""
        return f"https://{bracket(self.host)}:{self.https}"

    #: UDP echo port (0 when ``--no-udp``).
    udp: int = 0

    @property
    def udp_address(self) -> str:
        """``host:port`` of the UDP echo socket (IPv6 hosts in brackets)."""
        return f"{bracket(self.host)}:{self.udp}"

    @property
    def tcp_address(self) -> str:
        """``host:port`` of the TCP echo listener (IPv6 hosts in brackets)."""
        return f"{bracket(self.host)}:{self.tcp}"

    @property
    def web_url(self) -> str:
        """The page's URL on the shared web port."""
        return f"http://{bracket(self.host)}:{self.http}"

    @property
    def private_url(self) -> str:
        """This worker's own web URL, which always reaches this process (``--workers``)."""
        return f"http://{bracket(self.host)}:{self.private_http}"


class Server:
    """A server process's root: build it, ``await nursery.start(server.run)``, then :meth:`stop`."""

    def __init__(self, settings: Settings, *, feed: Feed | None = None, worker: int = 0) -> None:
        self.settings = settings
        self.hub = Hub.create(settings, feed, worker)
        self._stop = trio.Event()
        self._front: WebFront | None = None
        #: The TLS contexts and certificate fingerprint, once :meth:`run` has set them up.
        self.tls: ServerTls | None = None

    @property
    def web_connections(self) -> int:
        """Open web connections (HTTP and websocket), as ``/healthz`` reports them."""
        return self._front.connections if self._front is not None else 0

    def _web_counts(self) -> tuple[int, int]:
        """Web connections open now and refused so far (the front keeps both)."""
        refused = self._front.refusals.total if self._front is not None else 0
        return self.web_connections, refused

    def _health(self) -> dict[str, Any]:
        return self.hub.health(*self._web_counts())

    def set_peers(self, peers: list[dict[str, Any]]) -> None:
        """Every worker's private web URL (``--workers N``), for ``hello.peers``."""
        self.hub.peers = peers

    def stop(self) -> None:
        """Begin a graceful shutdown; :meth:`run` returns a little after ``graceful_timeout``."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Ports] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, start every part, report :class:`Ports`, and serve until :meth:`stop` or cancelled.

        Raises:
            OSError: a listener could not be bound (the message names the address).
            app.certs.TlsSetupError: the TLS key or certificate cannot be used.
        """
        s = self.settings
        hub = self.hub
        reuse_port = s.workers > 1
        if s.tls_enabled:
            self.tls = server_tls(s.tls_cert, s.tls_key, s.host)
        with contextlib.ExitStack() as listeners:
            tcp_listener = listeners.enter_context(
                open_listener(s.host, s.tcp_port, s.backlog, "tcp echo", reuse_port=reuse_port)
            )
            web_listeners = [
                listeners.enter_context(
                    open_listener(s.host, s.http_port, s.backlog, "web", reuse_port=reuse_port)
                )
            ]
            if hub.worker:
                # This worker's own web port, so that the page can link to each worker.
                web_listeners.append(
                    listeners.enter_context(open_listener(s.host, 0, s.backlog, "worker web"))
                )
            # Issue 11: the TLS echo and HTTPS listeners.
            tls_listener = https_listener = None
            if self.tls is not None:
                tls_listener = listeners.enter_context(
                    open_listener(s.host, s.tls_port, s.backlog, "tls echo", reuse_port=reuse_port)
                )
                https_listener = listeners.enter_context(
                    open_listener(s.host, s.https_port, s.backlog, "https", reuse_port=reuse_port)
                )
            ports = Ports(
                s.host,
                bound_port(tcp_listener),
                bound_port(web_listeners[0]),
                bound_port(web_listeners[-1]) if hub.worker else 0,
                tls=bound_port(tls_listener) if tls_listener else 0,
                https=bound_port(https_listener) if https_listener else 0,
            )
            hub.listeners.update(tcp=ports.tcp_address, web=ports.web_url)
            if self.tls is not None:
                hub.listeners.update(tls=ports.tls_address, https=ports.https_url)
            # -- issue 11 (part 2): UDP echo on the TCP echo port's number unless told otherwise
            udp_engine = None
            if s.udp:
                udp_port = ports.tcp if s.udp_port < 0 else s.udp_port
                udp_sock = listeners.enter_context(_bind_udp(s.host, udp_port, reuse_port))
                ports = dataclasses.replace(ports, udp=bound_port(udp_sock))
                hub.listeners.update(udp=ports.udp_address)
                udp_engine = _udp_engine(udp_sock, hub)
            if not is_loopback(s.host):
                log.warning(
                    "listening on %s: the echo server and the page are reachable from the network",
                    s.host,
                )
            choice = portability.choose_engines(s.engine, s.ws_engine, portability.CURRENT)
            if choice.note is not None:
                log.warning("%s", choice.note)
            channel = FeedChannel(hub.feed, hub.runner, hub.tracer, s.origins, hub.hello)
            endpoints = websocket_endpoints(hub.ws, channel)
            # Issue 10: the stall watchdog of this loop, and /api/tasks from it.
            own = OwnLoop(hub.feed, hub.tracer, s.stall_threshold)
            app = build_app(
                health=self._health,
                find_run=hub.runner.get,
                websockets=endpoints,
                draining=hub.draining,
                identity=ServerIdentity(hub.pid, hub.worker),
                deflate=DeflateLimits(DeflateSettings.from_settings(s), s.max_message_size),
                metrics=HubCollector(hub, self._web_counts),
                tasks=own.tasks,
            )
            ws_echo = _ws_engine(choice.ws_engine, hub)
            fast = endpoints if choice.ws_engine != "asgi" else None
            front = self._front = WebFront(
                web_listeners,
                app,
                s,
                hub.draining,
                fast,
                ws_echo,
                https=(https_listener, self.tls.web) if https_listener and self.tls else None,
                handshakes=hub.handshakes["web"],
                proxy=hub.proxy,
                proxy_refusals=hub.proxy_refusals.listener("web"),
            )
            engine = _engine(choice.engine, tcp_listener, hub)
            log.info("engines: tcp echo %s, /ws/echo %s", engine.name, choice.ws_engine)
            tls_engine = (
                _tls_engine(choice.engine, tls_listener, self.tls.echo, hub)
                if tls_listener and self.tls
                else None
            )
            trio.lowlevel.add_instrument(hub.tracer)
            listeners.enter_context(own.installed())  # issue 10: the stall watchdog
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(hub.feed.run, name="feed link")
                    await nursery.start(hub.runner.serve, name="scenario runner")
                    nursery.start_soon(engine.run, name=f"echo engine ({engine.name})")
                    if tls_engine is not None:
                        nursery.start_soon(tls_engine.run, name="tls echo engine")
                    if udp_engine is not None:
                        nursery.start_soon(udp_engine.run, name="udp echo engine")
                    if ws_echo is not None:
                        await nursery.start(ws_echo.run, name="ws echo engine")
                    nursery.start_soon(front.run, name="web front")
                    refusals: list[LimitLog | ProxyRefusals] = [front.refusals, hub.proxy_refusals]
                    nursery.start_soon(run_ticker, hub, refusals, own.watchdog, name="ticker")
                    task_status.started(ports)
                    await self._stop.wait()
                    log.info("shutting down")
                    hub.draining.set()
                    hub.tcp.abort_all("shutdown")
                    hub.tls.abort_all("shutdown")
                    await front.drain(s.graceful_timeout)
                    nursery.cancel_scope.cancel()
            finally:
                trio.lowlevel.remove_instrument(hub.tracer)


def _engine(name: EchoEngine, listener: socket.socket, hub: Hub) -> EpollEngine | TaskEngine:
    """The TCP echo engine *name* (already checked against the platform)."""
    if name == "epoll":
        from app.echo.epoll import EpollEngine

        return EpollEngine(listener, hub.tcp, hub.proxy, hub.proxy_refusals.listener("tcp"))
    return TaskEngine(
        listener,
        hub.tcp,
        _watcher(hub),
        portable=name == "trio",
        proxy=hub.proxy,
        refusals=hub.proxy_refusals.listener("tcp"),
    )


def _watcher(hub: Hub) -> Callable[[int], None]:
    """What a connection task calls to get its lane on the page (the tracer follows it)."""
    tracer = hub.tracer

    def watch_connection(lane: int) -> None:
        tracer.bind(trio.lowlevel.current_task(), lane, ECHO_RUN)

    return watch_connection


def _bind_udp(host: str, port: int, reuse_port: bool) -> socket.socket:
    try:
        return open_datagram(host, port, reuse_port=reuse_port)
    except OSError as exc:
        raise named_error(exc, "udp echo", host, port) from None


def _udp_engine(sock: socket.socket, hub: Hub) -> UdpEngine:
    s = hub.settings
    assert hub.udp is not None
    gate = RateGate(
        source_rate=s.udp_source_rate,
        source_bytes=s.udp_source_bytes,
        global_rate=s.udp_global_rate,
        global_bytes=s.udp_global_bytes,
        exempt=parse_networks(s.udp_rate_exempt, "--udp-rate-exempt"),
        drops=hub.udp_drops,
    )
    return UdpEngine(sock, hub.udp, gate, max_datagram=s.udp_max_datagram)


def _ws_engine(name: WsEngine, hub: Hub) -> WsEchoEngine | None:
    """The multiplexed ``/ws/echo`` engine for ``--ws-engine epoll``, else None."""
    if name != "epoll":
        return None
    from app.echo.websocket import WsEchoEngine

    s = hub.settings
    return WsEchoEngine(
        hub.ws,
        s.max_message_size,
        hub.draining,
        ping_interval=s.ws_ping_interval,
        write_timeout=s.write_timeout,
        deflate=DeflateSettings.from_settings(s),
    )


def _tls_engine(
    engine: str, listener: socket.socket, context: ssl.SSLContext, hub: Hub
) -> TlsEchoEngine | TlsTaskEngine:
    """Issue 11's TLS echo engine, following the TCP one: multiplexed with ``--engine epoll``
    (the platform allowing), else a Trio task per connection (with a lane on the page)."""
    args = (listener, hub.tls, context, hub.settings.tls_handshake_timeout, hub.handshakes["echo"])
    if engine == "epoll":
        from app.echo.tls import TlsEchoEngine

        return TlsEchoEngine(*args, hub.proxy, hub.proxy_refusals.listener("tls"))
    from app.echo.tlstasks import TlsTaskEngine

    refusals = hub.proxy_refusals.listener("tls")
    return TlsTaskEngine(*args, watch=_watcher(hub), proxy=hub.proxy, refusals=refusals)
