"""``trio-echo client``: the tutorial's ``>>:`` client, over TCP, UDP or websocket.

Interactive (stdin is a terminal): prompt ``>>:``, send each line, print
what comes back.  Piped: send all of stdin, half-close, print every echoed
byte to stdout, and exit 0 once all of it came back.  Over TCP the echo is a
byte stream, so the piped mode compares byte counts; over websocket each
line is one text message; over UDP (``--udp``) each line is one datagram,
and its echo must come back whole within ``--udp-timeout``.  With
``--send-proxy v1|v2`` a TCP or websocket client first sends a PROXY protocol
header (before TLS and the HTTP upgrade), as a load balancer would.

With ``--tls`` (issue 11) the TCP echo goes over TLS, to port 8002 unless
``--port`` says otherwise; the server's certificate is verified against the
system's CAs, or ``--cafile``'s, or not at all with ``--insecure`` (for
``--tls self-signed`` servers).  Piped, end of input is TLS's half-close: our
``close_notify``, after which every echoed byte still comes back.  A
``wss://`` URL for ``--ws`` uses the same verification flags.

Exit codes: 0 when everything came back, 1 when the connection was refused
or closed early (one line on stderr says which), 2 for bad arguments.
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import BinaryIO, Final, TextIO, cast
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from app import portability
from app.config import ClientSettings, ConfigError
from app.echo.proxy import build_v1, build_v2
from app.errors import PEER_GONE
from app.tlsclient import TlsClientStream, client_context, handshake_failure

PROMPT: Final = ">>: "
#: What ``--ws`` accepts (the websocket client refuses anything else with a traceback).
WS_SCHEMES: Final = ("ws://", "wss://")
# Read stdin and the socket in chunks of this size.
CHUNK: Final = 64 * 1024
# The largest UDP payload over IPv4: a longer line cannot be one datagram.
MAX_DATAGRAM: Final = 65_507
# Seconds a websocket closing handshake may take when the client is done.
WS_CLOSE_TIMEOUT: Final = 1.0
# Websocket paths whose server sends a message of its own before echoing (docs/protocol.md):
# /ws/info sends the info JSON first.
SPEAKS_FIRST: Final = frozenset({"/ws/info"})


class Stdin:
    """Standard input read without threads: polled when it is a pipe, socket or terminal.

    A thread blocked in ``read()`` cannot be cancelled, and one still blocked
    when the interpreter exits aborts it; so pollable input goes through
    Trio's :class:`trio.lowlevel.FdStream` on a duplicate descriptor.  That
    makes the shared file description non-blocking, which would leak into
    the shell afterwards: :meth:`close` restores the original flags.  Regular
    files and devices such as /dev/null cannot be polled, and never block, so
    they are read directly.

    Windows (no ``fcntl``, no pollable stdin): the one branch that reads in a worker
    thread, abandoned on cancellation; the process exits right after the client does.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._flags: int | None = None
        self._stream: trio.lowlevel.FdStream | None = None
        self._threaded = not portability.CURRENT.fcntl
        if self._threaded:
            return
        import fcntl

        self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
            self._stream = trio.lowlevel.FdStream(os.dup(fd))

    async def read(self, max_bytes: int) -> bytes:
        """Up to *max_bytes*; b"" at end of input."""
        if self._buffer:
            data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
            return data
        return await self._read_raw(max_bytes)

    async def readline(self) -> bytes:
        """One line with its newline; the rest of the input at its end; b"" after that."""
        while b"\n" not in self._buffer:
            chunk = await self._read_raw(CHUNK)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    async def _read_raw(self, max_bytes: int) -> bytes:
        if self._threaded:
            return await trio.to_thread.run_sync(
                os.read, self._fd, max_bytes, abandon_on_cancel=True
            )
        if self._stream is None:
            await trio.lowlevel.checkpoint()
            return os.read(self._fd, max_bytes)
        return bytes(await self._stream.receive_some(max_bytes))

    def close(self) -> None:
        """Give stdin back its blocking mode (the terminal is shared with the shell)."""
        if self._stream is not None and self._flags is not None:
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETFL, self._flags)


class ClientError(Exception):
    """The server could not be reached or went away; the message says which, in one line."""


async def run_client(
    settings: ClientSettings, stdin: Stdin, stdout: BinaryIO, interactive: bool
) -> None:
    """Echo *stdin* through the server to *stdout*.

    Raises:
        ClientError: connection refused, closed early, or timed out.
    """
    if settings.ws:
        await _ws_client(settings, stdin, stdout, interactive)
    elif settings.udp:
        await _udp_client(settings, stdin, stdout, interactive)
    else:
        await _tcp_client(settings, stdin, stdout, interactive)


def _tls_context(settings: ClientSettings) -> ssl.SSLContext:
    """The client's TLS context from ``--insecure`` / ``--cafile``.

    Raises:
        ClientError: the CA file cannot be used.
    """
    try:
        return client_context(insecure=settings.insecure, cafile=settings.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"cannot use the CA file {settings.cafile}: {_reason(exc)}") from None


async def _connect_tcp(settings: ClientSettings) -> trio.abc.HalfCloseableStream:
    ctx = _tls_context(settings) if settings.tls else None
    return await _connect(settings, settings.host, settings.tcp_port, ctx, settings.send_proxy)


async def _connect(
    settings: ClientSettings,
    host: str,
    port: int,
    ctx: ssl.SSLContext | None,
    send_proxy: str | None = None,
) -> trio.abc.HalfCloseableStream:
    """A TCP connection to *host*:*port*: a PROXY header first with *send_proxy*, then
    TLS (handshake done) when *ctx* is given.

    Raises:
        ClientError: refused, no answer within ``--connect-timeout``, or the
            handshake failed (the reason in words).
    """
    where = f"{host}:{port}"
    timeout = settings.connect_timeout
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            if send_proxy:
                await stream.send_all(proxy_header(send_proxy, stream.socket))
            if ctx is None:
                return stream
            tls = TlsClientStream(stream, ctx, host)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return tls
    except trio.TooSlowError:
        raise ClientError(f"no answer from {where} within {timeout:g} s") from None
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ssl.SSLError) or "close_notify" in str(exc):
            raise ClientError(
                f"TLS handshake with {where} failed: {handshake_failure(exc)}"
            ) from None
        raise ClientError(f"cannot connect to {where}: {_reason(exc)}") from None
    except OSError as exc:
        raise ClientError(f"cannot connect to {where}: {_reason(exc)}") from None


def proxy_header(version: str, sock: trio.socket.SocketType) -> bytes:
    """A PROXY protocol header (``v1`` or ``v2``) for *sock*'s own connection, as a balancer sends.

    It carries this socket's own address as the client's, so the server
    shows what it would see without a balancer: the point is to test that
    the server (or a balancer in between) takes the header.
    """
    source = sock.getsockname()[:2]
    destination = sock.getpeername()[:2]
    return build_v1(source, destination) if version == "v1" else build_v2(source, destination)


async def _udp_client(
    settings: ClientSettings, stdin: Stdin, stdout: BinaryIO, interactive: bool
) -> None:
    """Each line is one datagram to ``host:port``; its echo must come back within the timeout."""
    where = f"{settings.host}:{settings.tcp_port}"
    try:
        infos = await trio.socket.getaddrinfo(
            settings.host, settings.tcp_port, type=trio.socket.SOCK_DGRAM
        )
        family, kind, proto, _, address = infos[0]
        sock = trio.socket.socket(family, kind, proto)
        await sock.connect(address)  # only its replies reach us; ICMP errors surface
    except OSError as exc:
        raise ClientError(f"cannot reach {where}: {_reason(exc)}") from None
    with sock:
        while True:
            line = await _prompt(stdin, stdout) if interactive else await stdin.readline()
            if not line:
                return
            if len(line) > MAX_DATAGRAM:
                raise ClientError(
                    f"a line of {len(line)} bytes does not fit one datagram ({MAX_DATAGRAM})"
                )
            try:
                await sock.send(line)
                with trio.move_on_after(settings.udp_timeout) as scope:
                    reply = await sock.recv(MAX_DATAGRAM + 1)
            except ConnectionRefusedError:
                raise ClientError(f"{where}: nothing listens on that UDP port") from None
            if scope.cancelled_caught:
                raise ClientError(
                    f"no echo from {where} within {settings.udp_timeout:g} s "
                    "(lost, dropped by a rate bound, or no UDP echo there)"
                )
            if reply != line:
                raise ClientError(f"{where} answered {len(reply)} bytes that are not the line sent")
            stdout.write(reply)
            stdout.flush()


async def _tcp_client(
    settings: ClientSettings, stdin: Stdin, stdout: BinaryIO, interactive: bool
) -> None:
    stream = await _connect_tcp(settings)
    async with stream:
        try:
            if interactive:
                await _tcp_interactive(stream, stdin, stdout)
            else:
                await _tcp_piped(stream, stdin, stdout)
        except NothingEchoed as exc:
            raise ClientError(
                f"{exc} {_nothing_echoed_hint(settings, exc.reset)}".rstrip()
            ) from None


class NothingEchoed(ClientError):
    """The server closed (or reset) before echoing a byte: often a flag's mismatch."""

    def __init__(self, message: str, *, reset: bool = False) -> None:
        super().__init__(message)
        self.reset = reset


def _nothing_echoed_hint(settings: ClientSettings, reset: bool) -> str:
    """What a server that took our connection but echoed nothing may want, as a hint.

    A TLS port resets plain bytes (they are no ClientHello); a ``--proxy-protocol``
    listener closes a connection whose first bytes are no PROXY header.
    """
    if settings.tls:
        return ""
    if reset:
        return "(is it a TLS port? --tls)"
    if not settings.send_proxy:
        return "(does the server want a PROXY header? --send-proxy v1|v2)"
    return ""


async def _tcp_piped(stream: trio.abc.HalfCloseableStream, stdin: Stdin, stdout: BinaryIO) -> None:
    """Send all of *stdin*, half-close, and copy every echoed byte to *stdout*.

    Raises:
        NothingEchoed: closed or reset before the first echoed byte.
        ClientError: closed or reset later, with bytes still owed.
    """
    sent = 0
    received = 0
    failure = ""
    all_sent = False

    async def pump_in() -> None:
        nonlocal sent, all_sent
        try:
            while chunk := await stdin.read(CHUNK):
                sent += len(chunk)  # counted before sending: a failed send still owes an echo
                await stream.send_all(chunk)
            await stream.send_eof()
            all_sent = True
        except PEER_GONE:
            pass  # the reader sees the same broken connection and reports it

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_in)
        try:
            while data := await stream.receive_some(CHUNK):
                received += len(data)
                stdout.write(data)
                stdout.flush()
        except PEER_GONE as exc:
            failure = f"connection lost after {received} bytes: {exc}"
        # Whatever stdin still holds can no longer come back.
        nursery.cancel_scope.cancel()
    if failure:
        raise NothingEchoed(failure, reset=True) if received == 0 else ClientError(failure)
    if not all_sent:
        message = f"server closed the connection after echoing {received} bytes, input left"
    elif received != sent:
        message = f"server closed the connection after echoing {received} of {sent} bytes"
    else:
        return
    raise NothingEchoed(message) if received == 0 else ClientError(message)


async def _tcp_interactive(
    stream: trio.abc.HalfCloseableStream, stdin: Stdin, stdout: BinaryIO
) -> None:
    buffer = b""
    echoed = False
    while True:
        line = await _prompt(stdin, stdout)
        if line is None:
            return
        await _send_or_fail(stream, line)
        # The tutorial's client waits for the echo of what it sent.
        while len(buffer) < len(line):
            try:
                data = await stream.receive_some(CHUNK)
            except PEER_GONE as exc:
                if echoed:
                    raise ClientError(f"connection lost: {exc}") from None
                raise NothingEchoed(f"connection lost: {exc}", reset=True) from None
            if not data:
                error = ClientError if echoed else NothingEchoed
                raise error("server closed the connection")
            echoed = True
            buffer += data
        stdout.write(buffer[: len(line)])
        stdout.flush()
        buffer = buffer[len(line) :]


async def _send_or_fail(stream: trio.abc.HalfCloseableStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except PEER_GONE as exc:
        raise ClientError(f"connection lost: {exc}") from None


async def _prompt(stdin: Stdin, stdout: BinaryIO) -> bytes | None:
    """Show ``>>:`` and read one line (with its newline); None at end of input."""
    stdout.write(PROMPT.encode())
    stdout.flush()
    return await stdin.readline() or None


async def _ws_client(
    settings: ClientSettings, stdin: Stdin, stdout: BinaryIO, interactive: bool
) -> None:
    secure = settings.ws.startswith("wss://")
    ctx = _tls_context(settings) if secure else None
    if ctx is not None and not settings.send_proxy:
        await _check_tls(settings, ctx)
    try:
        opened: AbstractAsyncContextManager[WebSocketConnection, bool | None]
        if settings.send_proxy:
            opened = _open_ws_behind_proxy_header(settings, ctx)
        else:
            opened = open_websocket_url(
                settings.ws,
                ssl_context=ctx,
                connect_timeout=settings.connect_timeout,
                disconnect_timeout=WS_CLOSE_TIMEOUT,
            )
        speaks_first = urlsplit(settings.ws).path.rstrip("/") in SPEAKS_FIRST
        async with opened as ws:
            await _ws_session(ws, stdin, stdout, interactive, speaks_first=speaks_first)
    except ConnectionClosed as exc:
        raise ClientError(f"websocket closed: {exc.reason}") from None
    except ConnectionRejected as exc:
        raise ClientError(
            f"{settings.ws} refused the websocket upgrade: HTTP {exc.status_code}"
        ) from None
    except (OSError, HandshakeError, trio.BrokenResourceError) as exc:
        raise ClientError(f"cannot connect to {settings.ws}: {_reason(exc)}") from None
    except trio.TooSlowError:
        raise ClientError(
            f"no websocket handshake from {settings.ws} within {settings.connect_timeout:g} s"
        ) from None


@asynccontextmanager
async def _open_ws_behind_proxy_header(
    settings: ClientSettings, ctx: ssl.SSLContext | None
) -> AsyncIterator[WebSocketConnection]:
    """``--ws URL --send-proxy v1|v2``: the PROXY header, TLS for ``wss://``, then the upgrade.

    trio-websocket's own connect writes nothing before its handshake, so the
    stream is made here, exactly as for TCP (:func:`_connect`, which also says
    why a TLS handshake failed), and handed to its ``wrap_client_stream``.
    Its reader task runs in our nursery; a single error out of it (a refused
    upgrade, a closed websocket) is raised as itself, not as a group.

    Cancellation: the stream is closed; the websocket close is bounded by
    ``WS_CLOSE_TIMEOUT``.

    Raises:
        ClientError: no connection, or the TLS handshake failed.
        HandshakeError: the server refused the upgrade.
        trio.TooSlowError: no upgrade answer within ``--connect-timeout``.
    """
    url = urlsplit(settings.ws)
    host = url.hostname or "localhost"
    port = url.port or (443 if ctx else 80)
    stream = await _connect(settings, host, port, ctx, settings.send_proxy)
    resource = (url.path or "/") + (f"?{url.query}" if url.query else "")
    host_header = host if url.port is None else f"{host}:{port}"
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(settings.connect_timeout):
                    # Typed for trio's own streams; any trio Stream works (it only sends,
                    # receives and closes), our half-closing TLS stream included.
                    ws = await wrap_client_stream(
                        nursery, cast(trio.SocketStream, stream), host_header, resource
                    )
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            try:
                yield ws
            finally:
                with trio.move_on_after(WS_CLOSE_TIMEOUT, shield=True):
                    await ws.aclose()
    except BaseExceptionGroup as group:
        errors = [exc for exc in _leaves(group) if not isinstance(exc, trio.Cancelled)]
        if len(errors) == 1:
            raise errors[0] from None
        raise


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]


async def _check_tls(settings: ClientSettings, ctx: ssl.SSLContext) -> None:
    """Handshake once with the ``wss://`` server, to say why if TLS fails.

    trio-websocket 0.12 does its TLS handshake inside its reader task and,
    when that fails (a certificate that does not verify), only times out
    ``connect_timeout`` later with a bare ``ConnectionTimeout``.  One short
    connection first turns that into the reason, at once.

    Raises:
        ClientError: no connection, or the handshake failed (the reason in words).
    """
    url = urlsplit(settings.ws)
    stream = await _connect(settings, url.hostname or "localhost", url.port or 443, ctx)
    await stream.aclose()


async def _ws_session(
    ws: WebSocketConnection,
    stdin: Stdin,
    stdout: BinaryIO,
    interactive: bool,
    *,
    speaks_first: bool = False,
) -> None:
    """Send each line of *stdin* as a message and print its echo, until stdin ends.

    *speaks_first*: the server sends one message before any echo (``/ws/info``'s
    JSON); it is printed on a line of its own and not taken for an echo.

    Replies are read by a task of their own, so that a server that closes the
    websocket (a shutdown's 1001) is noticed at once, also while the user is
    still typing or stdin is held open, instead of at the next line.

    Raises:
        ConnectionClosed: the server closed the websocket.
    """
    replies_in, replies = trio.open_memory_channel[str | bytes](1)
    closed: list[ConnectionClosed] = []
    async with trio.open_nursery() as nursery:

        async def read_replies() -> None:
            async with replies_in:
                try:
                    while True:
                        await replies_in.send(await ws.get_message())
                except ConnectionClosed as exc:
                    closed.append(exc)
                    nursery.cancel_scope.cancel()

        def show(message: str | bytes, end: bytes = b"") -> None:
            stdout.write((message.encode() if isinstance(message, str) else message) + end)
            stdout.flush()

        nursery.start_soon(read_replies)
        if speaks_first:
            show(await replies.receive(), b"\n")  # on a line of its own
        while True:
            line = await _prompt(stdin, stdout) if interactive else await stdin.readline()
            if not line:
                break
            try:
                await ws.send_message(line.decode())
            except UnicodeDecodeError:
                await ws.send_message(line)  # not text: binary, so every byte comes back
            show(await replies.receive())
        nursery.cancel_scope.cancel()
    if closed:
        raise closed[0]


def _reason(exc: BaseException) -> str:
    """The deepest OS error's text under *exc*, else *exc*'s own.

    Trio groups one error per address tried, and trio-websocket wraps the connect
    failure in a bare ``HandshakeError``: the reason worth a line is underneath.
    """
    cause: BaseException | None = exc
    while cause is not None:
        while isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__
    return str(exc) or type(exc).__name__  # some errors carry no message at all


def check_flags(settings: ClientSettings) -> None:
    """Refuse flags that cannot work together, instead of ignoring one of them.

    Raises:
        ConfigError: which flags, and why (the CLI's usage error, exit 2).
    """
    if settings.ws and not settings.ws.startswith(WS_SCHEMES):
        raise ConfigError(f"--ws: expected a ws:// or wss:// URL, got {settings.ws!r}")
    if settings.insecure and settings.cafile:
        raise ConfigError("--insecure and --cafile: give one, not both")
    if settings.udp and settings.tls:
        raise ConfigError("--udp and --tls: TLS runs over TCP; give one")
    if settings.udp and settings.ws:
        raise ConfigError("--udp and --ws: give one")
    if settings.tls and settings.ws:
        raise ConfigError("--tls and --ws: --tls is for the TCP echo; use a wss:// URL")
    if settings.udp and settings.send_proxy:
        raise ConfigError("--udp and --send-proxy: a PROXY header is for TCP and websockets")
    if (settings.insecure or settings.cafile) and not (
        settings.tls or settings.ws.startswith("wss://")
    ):
        flag = "--insecure" if settings.insecure else "--cafile"
        raise ConfigError(f"{flag} needs --tls or a wss:// URL for --ws")


def main(settings: ClientSettings, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Run the client; return the exit code (1: it failed, ``trio-echo client: error: ...``).

    Raises:
        ConfigError: flags that cannot work together or a bad URL (the CLI's usage error).
    """
    check_flags(settings)
    interactive = stdin.isatty()
    reader = Stdin(stdin.fileno())
    try:
        trio.run(run_client, settings, reader, stdout.buffer, interactive)
    except ClientError as exc:
        print(f"trio-echo client: error: {exc}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print(file=stderr)
    finally:
        reader.close()
    return 0
