"""The load itself: ping-pong connections (TCP or websocket) and feed subscribers, under Trio.

Every client is a task in one nursery that :func:`run_bench` owns; the run
ends when the window closes, at Ctrl-C, or on cancellation, and then every
connection is closed with it.  Ping-pong: each connection sends one message
of ``size`` bytes (a slice of a random pool at a random offset, so a stale
or foreign echo cannot pass), waits for all of it to come back, compares it
byte for byte, and sends the next.  A connection that sees a wrong byte, a
reset or an early close counts an error and stops.

The feed benchmark (``--feed``) opens subscribers to ``/ws/events`` and
makes the server publish: it opens and resets TCP echo connections at half
the wanted event rate (each one is a ``conn_open`` and a ``conn_close``
event), so it needs no hook in the server.  Each subscriber's lag is the
time from an event's ``t`` (the server's clock, lined up with ours through
``hello.now``; both are ``CLOCK_MONOTONIC`` on one machine) to the arrival
of the frame carrying it.  Events are not decoded one by one (a client that
parses a million events a second would be the bottleneck): a frame's first
and last ``t`` are read and the events between are spread evenly.

``deflate`` (``--deflate``): websocket clients offer permessage-deflate as a
browser does (RFC 7692; ``client_max_window_bits``, memLevel 5); each feed
phase then also reports the bytes on the wire per event (issue 12).

TLS (issue 11): ``--tls`` and ``wss://`` URLs (ping-pong and feed) verify the
server as ``trio-echo client`` does (``--insecure``, ``--cafile``), through
``trio.SSLStream`` with the handshake done before anything else, so that one
that fails is counted as ``tls_handshake_failed`` with its reason in words.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import statistics
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN, Event
from websockets.uri import parse_uri

from app.bench.command import UDP_TIMEOUT
from app.bench.stats import Histogram, Latency, Summary
from app.client import proxy_header
from app.tlsclient import client_context, handshake_failure

# Handshakes in flight at once while connecting, so the server's listen
# backlog does not distort the start (as the Node client does).
CONNECT_CONCURRENCY: Final = 64
# A connection that is not up by then counts as a connect error.
CONNECT_TIMEOUT: Final = 15.0
# Random bytes the payloads are cut from (per run, shared by all connections).
POOL_SIZE: Final = 4 * 1024 * 1024
# Largest single read.
RECV_SIZE: Final = 64 * 1024
# Progress lines per second on stderr.
PROGRESS_INTERVAL: Final = 1.0
# A feed frame is spread into at most this many lag samples (bounds client CPU).
LAG_STRATA: Final = 16
# Feed churn: connections opened (and reset) per tick, ticks this far apart.
CHURN_TICK: Final = 0.01
# The largest messages this tool sends (the server's default limit is 1 MiB).
MAX_SIZE: Final = 16 * 1024 * 1024
# The stalled feed subscriber's receive buffer (bytes): small, so the server feels it soon.
STALLED_RCVBUF: Final = 4096

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run.  *target* is ``host:port`` for TCP, a ``ws://`` URL otherwise."""

    mode: str  # "tcp", "tls", "udp", "ws" or "feed"
    target: str
    connections: int = 100
    size: int = 64
    duration: float = 5.0
    warmup: float = 0.5
    text: bool = False
    #: Feed mode: events per second to make the server publish.
    rate: int = 10_000
    # Issue 11: TLS ("tls" mode, and wss:// URLs) verifies the server like the client does.
    insecure: bool = False
    cafile: str = ""
    #: Websocket and feed modes: offer permessage-deflate, as browsers do.
    deflate: bool = False
    #: TCP, TLS (before the handshake) and websocket modes: send a PROXY protocol header
    #: (``v1`` or ``v2``) first on each connection.
    send_proxy: str = ""


class BenchError(Exception):
    """The run could not start (nothing to connect to, a bad target)."""


class TlsHandshakeError(BenchError):
    """A TLS handshake failed: not TLS, or a certificate that does not verify (the reason)."""


def tcp_address(target: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets) as a connectable ``(host, port)``.

    Raises:
        BenchError: not ``host:port`` with a port in 1..65535.
    """
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BenchError(f"{target!r}: expected HOST:PORT with a port in 1..65535")
    return host.strip("[]"), int(port)


def check_url(url: str) -> None:
    """Refuse a websocket URL the clients cannot use, before any connection is tried.

    Raises:
        BenchError: not ``ws://`` or ``wss://`` with a host, or a port out of range.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        raise BenchError(f"{url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise BenchError(f"{url!r}: expected a ws:// or wss:// URL with a host")
    del port


class Recorder:
    """Counts of one run, shared by every client task; only counts inside the window."""

    def __init__(self, connections: int = 0) -> None:
        self.hist = Histogram()
        self.messages = 0
        self.bytes = 0
        self.total_messages = 0
        self.errors: Counter[str] = Counter()
        #: The first reason given for each kind of connect error, for the one-line report.
        self.reasons: dict[str, str] = {}
        self.established = 0
        self.measuring = False
        self._unsettled = connections
        #: Set once every connection is up or has failed to come up.
        self.settled = trio.Event()

    def up(self, error: str = "", reason: str = "") -> None:
        """One connection came up, or failed to (*error* says how, *reason* why in words)."""
        if error:
            self.errors[error] += 1
            if reason:
                self.reasons.setdefault(error, reason)
        else:
            self.established += 1
        self._unsettled -= 1
        if self._unsettled <= 0:
            self.settled.set()

    def done(self, ns: int, size: int, count: int = 1) -> None:
        """*count* messages of *size* bytes came back, the last after *ns* nanoseconds."""
        self.total_messages += count
        if self.measuring:
            self.messages += count
            self.bytes += size * count
            if size:
                self.hist.add(ns // 1000)


class Payloads:
    """Random messages of one size, cut from one pool at random offsets."""

    def __init__(self, size: int, text: bool) -> None:
        pool = bytearray(os.urandom(max(POOL_SIZE, 8 * size) + size))
        if text:  # printable ASCII: valid UTF-8, one byte a character
            pool = bytearray(0x20 + b % 95 for b in pool)
        self._pool = bytes(pool)
        self._size = size
        self._span = len(pool) - size

    def next(self) -> bytes:
        """A payload of the configured size, from a random place in the pool."""
        offset = random.randrange(self._span)
        return self._pool[offset : offset + self._size]


# -- ping-pong clients --------------------------------------------------------------------


async def _tcp_client(
    host: str, port: int, plan: Plan, rec: Recorder, payloads: Payloads, up: trio.Semaphore
) -> None:
    size = plan.size
    with trio.socket.socket() as sock:
        async with up:
            try:
                with trio.move_on_after(CONNECT_TIMEOUT) as scope:
                    await sock.connect((host, port))
            except OSError:
                rec.up("connect_failed")
                return
        if scope.cancelled_caught:
            rec.up("connect_timeout")
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if plan.send_proxy:
            await _send_all(sock, proxy_header(plan.send_proxy, sock))
        rec.up()
        buf = bytearray(size)
        view = memoryview(buf)
        now = time.perf_counter_ns
        while True:
            payload = payloads.next()
            start = now()
            await _send_all(sock, payload)
            got = 0
            while got < size:
                n = await sock.recv_into(view[got:])
                if n == 0:
                    rec.errors["eof"] += 1
                    return
                got += n
            elapsed = now() - start
            if buf != payload:
                rec.errors["mismatch"] += 1
                return
            rec.done(elapsed, size)


async def _udp_client(
    host: str, port: int, plan: Plan, rec: Recorder, payloads: Payloads, up: trio.Semaphore
) -> None:
    """One connected UDP socket, one datagram in flight: unanswered after UDP_TIMEOUT is lost."""
    size = plan.size
    try:
        family, kind, proto, _, address = (
            await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        )[0]
    except OSError:
        rec.up("resolve_failed")
        return
    with trio.socket.socket(family, kind, proto) as sock:
        async with up:
            await sock.connect(address)
        rec.up()
        buf = bytearray(size + 1)  # one more: an echo longer than sent is seen as such
        now = time.perf_counter_ns
        while True:
            payload = payloads.next()
            start = now()
            try:
                await sock.send(payload)
                while True:
                    with trio.move_on_after(UDP_TIMEOUT) as waited:
                        n = await sock.recv_into(buf)
                    if waited.cancelled_caught:
                        rec.errors["lost"] += 1
                        break
                    if n == size and buf[:n] == payload:
                        rec.done(now() - start, size)
                        break
                    # A late echo of a datagram already counted lost, or a wrong one.
                    rec.errors["late_or_wrong"] += 1
            except ConnectionRefusedError:
                rec.errors["refused"] += 1  # nothing listens (an ICMP error came back)
                await trio.sleep(UDP_TIMEOUT)


async def _tls_client(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    plan: Plan,
    rec: Recorder,
    payloads: Payloads,
    up: trio.Semaphore,
) -> None:
    """TCP echo over TLS: handshake (bounded like a connect), then ping-pong as over TCP.

    ``trio.SSLStream`` (OpenSSL through memory buffers); the run's figures
    include this client's own TLS cost, as the Node client's include its.
    """
    size = plan.size
    async with up:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                tcp = await trio.open_tcp_stream(host, port)  # TCP_NODELAY is Trio's default
                stream = trio.SSLStream(tcp, ctx, server_hostname=host)
                try:
                    if plan.send_proxy:  # before TLS, as a balancer sends it (and `client --tls`)
                        await tcp.send_all(proxy_header(plan.send_proxy, tcp.socket))
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(tcp)
                    raise
        except trio.TooSlowError:
            rec.up("connect_timeout")
            return
        except OSError:
            rec.up("connect_failed")  # refused, unreachable: as over TCP
            return
        except trio.BrokenResourceError as exc:
            # Not TLS, or a certificate that does not verify.
            rec.up("tls_handshake_failed", handshake_failure(exc))
            return
    async with stream:
        rec.up()
        received = bytearray()
        now = time.perf_counter_ns
        while True:
            payload = payloads.next()
            start = now()
            try:
                await stream.send_all(payload)
                received.clear()
                while len(received) < size:
                    data = await stream.receive_some(RECV_SIZE)
                    if not data:
                        rec.errors["eof"] += 1
                        return
                    received += data
            except trio.BrokenResourceError:
                rec.errors["reset"] += 1
                return
            elapsed = now() - start
            if received != payload:
                rec.errors["mismatch"] += 1
                return
            rec.done(elapsed, size)


def _tls_context(plan: Plan) -> ssl.SSLContext | None:
    """The client context for ``--tls`` and ``wss://`` targets, verifying as ``client --tls``
    does; None for plain TCP, UDP and ``ws://``.

    Raises:
        BenchError: ``--cafile`` cannot be read or holds no certificate.
    """
    if plan.mode != "tls" and not plan.target.startswith("wss://"):
        return None
    try:
        return client_context(insecure=plan.insecure, cafile=plan.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise BenchError(f"--cafile {plan.cafile}: {exc.strerror or exc}") from None


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await sock.send(view) :]


class _WsClient:
    """One websocket client connection: websockets' sans-IO protocol over a trio socket.

    ``ws://`` reads and writes the socket itself (the benchmark's hot path);
    ``wss://`` goes through ``trio.SSLStream`` over the same socket.
    """

    def __init__(
        self,
        sock: trio.socket.SocketType,
        protocol: ClientProtocol,
        tls: trio.SSLStream[trio.SocketStream] | None = None,
    ) -> None:
        self.sock = sock
        self.protocol = protocol
        self.tls = tls
        #: Events received but not consumed yet (frames that came with the handshake answer).
        self.pending: list[Event] = []
        #: Bytes read from the socket after the handshake (compressed, if deflate; TLS
        #: records' payload, not their framing, over ``wss://``).
        self.wire_in = 0

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        ctx: ssl.SSLContext | None = None,
        max_size: int | None = MAX_SIZE,
        deflate: bool = False,
        rcvbuf: int = 0,
        send_proxy: str = "",
    ) -> _WsClient:
        """Connect, do the TLS handshake for ``wss://`` (verified by *ctx*, else by the
        system's CAs), then the
        opening handshake; with *deflate*, offer permessage-deflate.  *rcvbuf* sets a
        small ``SO_RCVBUF`` (bytes) before connecting.  *send_proxy* (``v1``, ``v2``)
        sends a PROXY protocol header first, before TLS and HTTP, as a balancer does.

        Cancellation: the socket is closed; nothing is left open.

        Raises:
            OSError: no connection.
            TlsHandshakeError: the TLS handshake failed (``wss://``).
            BenchError: the handshake was refused.
        """
        uri = parse_uri(url)
        extensions = enable_client_permessage_deflate(None) if deflate else None
        protocol = ClientProtocol(uri, extensions=extensions, max_size=max_size)
        sock = trio.socket.socket()
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            await sock.connect((uri.host, uri.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if send_proxy:
                await _send_all(sock, proxy_header(send_proxy, sock))
            tls = None
            if uri.secure:
                ctx = ctx or client_context()
                tls = trio.SSLStream(trio.SocketStream(sock), ctx, server_hostname=uri.host)
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    raise TlsHandshakeError(handshake_failure(exc)) from None
            client = cls(sock, protocol, tls)
            protocol.send_request(protocol.connect())
            await client.flush()
            while True:
                data = await client.recv()
                if not data:
                    raise BenchError(f"{url}: closed during the handshake")
                protocol.receive_data(data)
                events = protocol.events_received()
                if events and isinstance(events[0], Response):
                    if protocol.state is not OPEN:
                        raise BenchError(f"{url}: handshake refused: {events[0].status_code}")
                    client.pending = events[1:]
                    return client
        except BaseException:
            sock.close()
            raise

    async def flush(self) -> None:
        """Send whatever the protocol queued (messages, pongs, close answers)."""
        for data in self.protocol.data_to_send():
            if not data:
                continue
            if self.tls is None:
                await _send_all(self.sock, data)
            else:
                await self.tls.send_all(data)

    async def recv(self) -> bytes | bytearray:
        """The next bytes from the server; ``b""`` at its end.

        Raises:
            OSError: the socket failed (a reset).
            trio.BrokenResourceError: over ``wss://``, the TLS stream failed or was cut.
        """
        if self.tls is None:
            return await self.sock.recv(RECV_SIZE)
        return await self.tls.receive_some(RECV_SIZE)

    async def receive(self) -> tuple[Opcode, bytes] | None:
        """The next whole data message ``(opcode, payload)``; None when the connection closed."""
        protocol = self.protocol
        parts: list[bytes] = []
        opcode: Opcode | None = None
        while True:
            events, self.pending = self.pending + protocol.events_received(), []
            for i, event in enumerate(events):
                if not isinstance(event, Frame):
                    continue
                if event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY:
                    opcode = event.opcode
                elif event.opcode is not Opcode.CONT:
                    continue
                parts.append(bytes(event.data))
                if event.fin:
                    assert opcode is not None
                    self.pending = events[i + 1 :]
                    return opcode, parts[0] if len(parts) == 1 else b"".join(parts)
            await self.flush()
            if protocol.state is not OPEN:
                return None
            data = await self.recv()
            if not data:
                protocol.receive_eof()
                return None
            self.wire_in += len(data)
            protocol.receive_data(data)


async def _ws_client(
    plan: Plan,
    ctx: ssl.SSLContext | None,
    rec: Recorder,
    payloads: Payloads,
    up: trio.Semaphore,
) -> None:
    """Websocket echo (``ws://``, or ``wss://`` verified by *ctx*): ping-pong, as over TCP."""
    async with up:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                client = await _WsClient.open(
                    plan.target, ctx=ctx, deflate=plan.deflate, send_proxy=plan.send_proxy
                )
        except TlsHandshakeError as exc:
            rec.up("tls_handshake_failed", str(exc))
            return
        except (OSError, BenchError, trio.TooSlowError):
            rec.up("connect_failed")
            return
    with client.sock:
        rec.up()
        protocol = client.protocol
        want = Opcode.TEXT if plan.text else Opcode.BINARY
        now = time.perf_counter_ns
        while True:
            payload = payloads.next()
            start = now()
            if plan.text:
                protocol.send_text(payload)
            else:
                protocol.send_binary(payload)
            try:
                await client.flush()
                message = await client.receive()
            except (OSError, trio.BrokenResourceError):
                rec.errors["reset"] += 1  # as over TLS: this connection ends, the run goes on
                return
            elapsed = now() - start
            if message is None:
                rec.errors["closed"] += 1
                return
            opcode, data = message
            if opcode is not want or data != payload:
                rec.errors["mismatch"] += 1
                return
            rec.done(elapsed, plan.size)


# -- feed subscribers ---------------------------------------------------------------------


class Subscriber:
    """Lag figures of one ``/ws/events`` reader, per phase."""

    def __init__(self, phases: int) -> None:
        self.hists = [Histogram() for _ in range(phases)]
        self.gaps = [0] * phases
        self.events = [0] * phases
        #: Bytes on the wire (after the handshake) per phase.
        self.wire = [0] * phases
        self.offset = 0.0  # our perf_counter minus the server's feed time
        self.tcp = ""


def parse_batch(frame: bytes) -> tuple[int, float, float] | None:
    """``(count, first t, last t)`` of an ``events`` frame, without decoding every event."""
    first = frame.find(b'"t":')
    if first < 0:
        return None
    last = frame.rfind(b'"t":')
    return frame.count(b'"seq":'), _number_at(frame, first + 4), _number_at(frame, last + 4)


def _number_at(frame: bytes, start: int) -> float:
    end = start
    while frame[end] not in b",}":
        end += 1
    return float(frame[start:end])


def add_lags(hist: Histogram, arrival: float, count: int, first: float, last: float) -> None:
    """Count *count* events spread from *first* to *last* (already our clock) arriving now."""
    strata = min(count, LAG_STRATA)
    for i in range(strata):
        t = first + (last - first) * (i + 0.5) / strata
        weight = count // strata + (1 if i < count % strata else 0)
        hist.add(max(0, int((arrival - t) * 1e6)), weight)


async def _subscribe(
    url: str,
    sub: Subscriber,
    phase: list[int],
    rec: Recorder,
    up: trio.Semaphore,
    ready: trio.Event | None,
    deflate: bool = False,
    ctx: ssl.SSLContext | None = None,
) -> None:
    async with up:
        client = await _WsClient.open(url, ctx=ctx, max_size=None, deflate=deflate)
    with client.sock:
        hello = await client.receive()
        if hello is None:
            raise BenchError(f"{url}: closed before hello")
        got = json.loads(hello[1])
        sub.offset = time.perf_counter() - got["now"]
        sub.tcp = got.get("listeners", {}).get("tcp", "")
        if ready is not None:
            ready.set()
        while True:
            wire = client.wire_in
            message = await client.receive()
            if message is None:
                return
            arrival = time.perf_counter()
            data = message[1]
            p = phase[0]
            if p < 0:
                continue
            sub.wire[p] += client.wire_in - wire
            if data.startswith(b'{"type":"gap"'):
                sub.gaps[p] += 1
                continue
            batch = parse_batch(data)
            if batch is None:
                continue
            count, first, last = batch
            sub.events[p] += count
            rec.done(0, 0, count)
            add_lags(sub.hists[p], arrival, count, first + sub.offset, last + sub.offset)


async def _stalled_subscriber(url: str, ctx: ssl.SSLContext | None) -> None:
    """A subscriber that does the handshake, then never reads again (a frozen browser tab)."""
    # A small receive buffer, so that the server feels the stall soon.
    client = await _WsClient.open(url, ctx=ctx, rcvbuf=STALLED_RCVBUF)
    with client.sock:
        await trio.sleep_forever()


async def _churn(tcp: str, rate: int, rec: Recorder) -> None:
    """Open and reset TCP echo connections, ``rate / 2`` a second: ``rate`` feed events."""
    address = tcp_address(tcp)
    linger = struct.pack("ii", 1, 0)
    per_second = rate / 2
    start = trio.current_time()
    opened = 0
    while True:
        due = int((trio.current_time() - start) * per_second)
        while opened < due:
            opened += 1
            sock = trio.socket.socket()
            try:
                await sock.connect(address)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                rec.errors["churn_connect"] += 1
            finally:
                sock.close()  # with SO_LINGER 0: a reset, no TIME_WAIT
        await trio.sleep(CHURN_TICK)


# -- the run ------------------------------------------------------------------------------


async def run_bench(plan: Plan, progress: Progress) -> Summary:
    """Run *plan* and return what it measured.  Ctrl-C ends the window early, cleanly.

    Cancellation: every connection is closed; nothing is returned.

    Raises:
        BenchError: no connection could be made at all.
    """
    if plan.mode == "feed":
        return await _run_feed(plan, progress)
    rec = Recorder(plan.connections)
    payloads = Payloads(plan.size, plan.text)
    up = trio.Semaphore(CONNECT_CONCURRENCY)
    if plan.mode in ("tcp", "tls", "udp"):
        host, port = tcp_address(plan.target)
    else:
        check_url(plan.target)
    ctx = _tls_context(plan)
    async with trio.open_nursery() as nursery:
        for _ in range(plan.connections):
            if plan.mode in ("tcp", "udp"):
                client = _tcp_client if plan.mode == "tcp" else _udp_client
                nursery.start_soon(client, host, port, plan, rec, payloads, up)
            elif plan.mode == "tls":
                assert ctx is not None  # a tls plan always has one (_tls_context)
                nursery.start_soon(_tls_client, host, port, ctx, plan, rec, payloads, up)
            else:
                nursery.start_soon(_ws_client, plan, ctx, rec, payloads, up)
        with trio.move_on_after(CONNECT_TIMEOUT + 1):
            await rec.settled.wait()
        seconds = 0.0
        if rec.established:
            progress(f"{rec.established} connections up; warming up {plan.warmup:g} s")
            await trio.sleep(plan.warmup)
            seconds = await _window(plan, rec, progress)
        nursery.cancel_scope.cancel()
    if not rec.established:
        # Raised outside the nursery, so that callers see it bare, not in a group.
        why = "".join(f"; {error}: {reason}" for error, reason in rec.reasons.items())
        raise BenchError(f"no connection to {plan.target}: {dict(rec.errors)}{why}")
    return Summary(
        mode=plan.mode,
        target=plan.target,
        connections=plan.connections,
        size=plan.size,
        seconds=round(seconds, 3),
        established=rec.established,
        messages=rec.messages,
        bytes=rec.bytes * 2,
        errors=dict(rec.errors),
        latency=Latency.of(rec.hist),
    )


async def _window(plan: Plan, rec: Recorder, progress: Progress) -> float:
    """Measure for ``plan.duration`` (or until Ctrl-C), a progress line a second; the seconds."""
    start = trio.current_time()
    unit = "events" if plan.mode == "feed" else "msgs"
    rec.measuring = True
    last_n, last_t = 0, start
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def interrupt() -> None:
                async for _ in signals:
                    progress("interrupted: summarising what was measured")
                    nursery.cancel_scope.cancel()

            nursery.start_soon(interrupt)
            with trio.move_on_at(start + plan.duration):
                while True:
                    await trio.sleep(PROGRESS_INTERVAL)
                    now = trio.current_time()
                    rate = (rec.messages - last_n) / (now - last_t)
                    p99 = rec.hist.percentile(99) / 1000
                    progress(
                        f"{now - start:5.1f} s  {rate:10.0f} {unit}/s  "
                        + (f"p99 so far {p99:.2f} ms  " if rec.hist.total else "")
                        + f"errors {sum(rec.errors.values())}"
                    )
                    last_n, last_t = rec.messages, now
            nursery.cancel_scope.cancel()
    rec.measuring = False
    return trio.current_time() - start


async def _run_feed(plan: Plan, progress: Progress) -> Summary:
    """Subscribers, churn at ``plan.rate``, then the same again with one subscriber stalled."""
    check_url(plan.target)
    ctx = _tls_context(plan)
    phases = ("all reading", "one stalled")
    subs = [Subscriber(len(phases)) for _ in range(plan.connections)]
    phase = [-1]
    rec = Recorder()
    up = trio.Semaphore(CONNECT_CONCURRENCY)
    async with trio.open_nursery() as nursery:
        first = trio.Event()
        for i, sub in enumerate(subs):
            ready = first if i == 0 else None
            nursery.start_soon(
                _subscribe, plan.target, sub, phase, rec, up, ready, plan.deflate, ctx
            )
        with trio.fail_after(CONNECT_TIMEOUT):
            await first.wait()
        if not subs[0].tcp:
            raise BenchError("the server's hello names no TCP echo listener to churn")
        nursery.start_soon(_churn, subs[0].tcp, plan.rate, rec)
        progress(f"{plan.connections} subscribers; churning {plan.rate} events/s")
        await trio.sleep(plan.warmup)
        results = []
        total = 0.0
        for p, name in enumerate(phases):
            if p == 1:
                nursery.start_soon(_stalled_subscriber, plan.target, ctx)
            phase[0] = p
            progress(f"phase {name!r} for {plan.duration:g} s")
            seconds = await _window(plan, rec, progress)
            total += seconds
            results.append(_phase_figures(name, subs, p, seconds))
        nursery.cancel_scope.cancel()
    merged = Histogram()
    for sub in subs:
        for h in sub.hists:
            merged.merge(h)
    return Summary(
        mode="feed",
        target=plan.target,
        connections=plan.connections,
        size=0,
        seconds=round(total, 3),
        established=sum(1 for s in subs if s.offset),
        messages=rec.messages,
        bytes=0,
        errors=dict(rec.errors),
        latency=Latency.of(merged),
        phases=results,
    )


def _phase_figures(name: str, subs: list[Subscriber], p: int, seconds: float) -> dict[str, Any]:
    p99s = [s.hists[p].percentile(99) for s in subs if s.hists[p].total]
    merged = Histogram()
    for s in subs:
        merged.merge(s.hists[p])
    events = statistics.median(s.events[p] for s in subs) if subs else 0
    total_events = sum(s.events[p] for s in subs)
    return {
        "phase": name,
        "subscribers": len(p99s),
        "events_per_s": round(events / seconds, 1) if seconds else 0,
        "lag_p50_us": merged.percentile(50),
        "lag_p99_median_us": int(statistics.median(p99s)) if p99s else 0,
        "lag_p99_worst_us": max(p99s, default=0),
        "gaps": sum(s.gaps[p] for s in subs),
        "wire_bytes_per_event": (
            round(sum(s.wire[p] for s in subs) / total_events, 1) if total_events else 0
        ),
    }
