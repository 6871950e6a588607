"""Odd and hostile HTTP against the web front (issue 14): each answer is the RFC's.

Every test here speaks raw bytes over a real socket to a real server, on
every websocket engine where the path differs, and checks three things: the
answer, that the connection (and its ``--max-web-connections`` slot) is
released, and that a client's mistake leaves nothing above INFO in the log.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable

import pytest
import trio

from conftest import WS_ENGINES, Running, start_server, wait_until
from netclient import frame, read_close_code

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's sample key
KEEP_ALIVE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def upgrade(path: str, *, version: str | None = "13", key: str | None = KEY) -> bytes:
    """A websocket upgrade request for *path*, with the given version and key (None: absent)."""
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def exchange(port: int, data: bytes, *, limit: float = 10) -> bytes:
    """Send *data*, then read until the server closes; fails if it does not within *limit* s."""
    with trio.fail_after(limit):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(data)
            got = b""
            try:
                while chunk := await stream.receive_some(65536):
                    got += chunk
            except trio.BrokenResourceError:
                pytest.fail(f"reset instead of a close, after {got[:200]!r}")
            return got


def statuses(data: bytes) -> list[int]:
    """The status codes of the HTTP responses in *data*, in order."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3})", data)]


def complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines above INFO, except the ticker's loop-lag reports (the shared machine's load)."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno > logging.INFO and r.name != "app.ticker"
    ]


async def released(running: Running) -> None:
    """Wait until no web connection holds a slot."""
    with trio.fail_after(10):
        await wait_until(lambda: running.server.web_connections == 0)


@pytest.fixture(params=WS_ENGINES)
async def server(request: pytest.FixtureRequest, nursery: trio.Nursery) -> Running:
    """A server per websocket engine, with three web slots (so a leaked one shows at once)."""
    return await start_server(
        nursery, ws_engine=request.param, max_web_connections=3, keep_alive_timeout=0.5
    )


@pytest.fixture(params=[b"", KEEP_ALIVE], ids=["fresh", "after-healthz"])
def first(request: pytest.FixtureRequest) -> bytes:
    """What goes before the request under test: nothing, or a keep-alive GET /healthz (after
    which the request reaches Hypercorn whatever the websocket engine)."""
    return bytes(request.param)


def before(first: bytes) -> list[int]:
    """The statuses answering *first*."""
    return [200] if first else []


# -- 1. HTTP/1.0 and Connection: close after static files; keep-alive timeout -----------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
        b"HEAD / HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ],
    ids=["http10-page", "close-app-js", "close-in-list", "http10-head", "http10-healthz"],
)
async def test_a_request_that_says_close_is_answered_then_closed(
    server: Running, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9112 9.3/9.6: after the response to a closing request, the server closes."""
    port = server.ports.http
    # Three times the limit in a row: each finished page load gives its slot back.
    for _ in range(9):
        answer = await exchange(port, request_bytes)
        assert statuses(answer) == [200], answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        assert len(body) == (0 if request_bytes.startswith(b"HEAD") else length)
    await released(server)
    assert statuses(await exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == [200]
    assert complaints(caplog) == []


async def test_an_idle_keep_alive_connection_after_a_static_file_closes_at_the_timeout(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.ports.http
    with trio.fail_after(10):
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        for stream in streams:
            await stream.send_all(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
        for stream in streams:
            # The response, then (idle past the keep-alive timeout) the server's close.
            got = b""
            while chunk := await stream.receive_some(65536):
                got += chunk
            assert statuses(got) == [200]
            await stream.aclose()
    await released(server)
    assert statuses(await exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == [200]
    assert complaints(caplog) == []


# -- 2. Empty lines around a request (RFC 9112 section 2.2) -------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /healthz HTTP/1.0\r\n\r\n\r\n", [200]),
        (b"GET /healthz HTTP/1.0\r\n\r\n\n\n\r\n", [200]),
        (b"\r\nGET /healthz HTTP/1.0\r\n\r\n", [200]),
        (b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\r\n", [200]),
        # Keep-alive: empty lines between requests, then a closing one.
        (KEEP_ALIVE + b"\r\n" + KEEP_ALIVE + b"\n\r\n" + b"GET / HTTP/1.0\r\n\r\n", [200] * 3),
        # A websocket's path without an upgrade: 426 (RFC 9110 15.5.22).
        (b"\r\nGET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\r\n", [426]),
        (b"\r\nGET /ws/events HTTP/1.1\r\nHost: x\r\n\r\n\r\n", [426]),
        (b"GET /ws/echo HTTP/1.0\r\n\r\n\r\n", [505]),
    ],
    ids=[
        "after",
        "after-mixed",
        "before",
        "around-close",
        "between-keep-alive",
        "ws-echo-path",
        "ws-events-path",
        "ws-path-http10",
    ],
)
async def test_empty_lines_around_a_request_are_ignored(
    server: Running,
    request_bytes: bytes,
    expected: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = server.ports.http
    for _ in range(6):  # what `echo -e ... | nc` sends, again and again
        answer = await exchange(port, request_bytes)
        assert statuses(answer) == expected, answer[:300]
    await released(server)
    assert complaints(caplog) == []


async def test_a_stream_of_empty_lines_is_closed_without_a_word(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Ignoring empty lines has a bound (MAX_BLANK_PREFIX): past it, not an HTTP client."""
    answer = await exchange(server.ports.http, b"\r\n" * 2000 + b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer == b""
    await released(server)
    assert complaints(caplog) == []


# -- 4. Bytes after an upgrade request for a path that is not a websocket ---------------------


@pytest.mark.parametrize("path", ["/", "/healthz", "/app.js", "/ws/nowhere"])
@pytest.mark.parametrize(
    "trailing", [b"x\n", frame(0x1, b"A"), b""], ids=["text", "one-byte-frame", "nothing"]
)
async def test_an_upgrade_for_a_plain_path_gets_one_404_then_a_close(
    server: Running,
    path: str,
    trailing: bytes,
    first: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a websocket here: one 404, and the bytes after it are never read as a request."""
    port = server.ports.http
    for _ in range(3):
        answer = await exchange(port, first + upgrade(path) + trailing)
        assert statuses(answer) == [*before(first), 404], answer[:300]
        assert answer.endswith(b"404 no websocket endpoint here\n") or path.startswith("/ws/")
    await released(server)
    assert complaints(caplog) == []


# -- 5. Handshake errors say what we speak (RFC 6455 4.2.1, 4.2.2, 4.4) -----------------------

BAD_HANDSHAKES = [
    ({"version": "8"}, 426),
    ({"version": None}, 426),
    ({"version": "13, 8"}, 426),
    ({"key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400),
    ({"key": "aGVsbG8="}, 400),  # base64 of 5 bytes
    ({"key": None}, 400),
]


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/events"])
@pytest.mark.parametrize(("fields", "status"), BAD_HANDSHAKES)
async def test_a_bad_handshake_is_refused_with_the_rfc_status(
    server: Running,
    path: str,
    fields: dict[str, str | None],
    status: int,
    first: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = server.ports.http
    request = upgrade(path, **fields)  # type: ignore[arg-type]
    answer = await exchange(port, first + request)
    assert statuses(answer) == [*before(first), status], answer[:400]
    refusal = answer.split(b"HTTP/1.1 ")[-1]
    if status == 426:
        # The refusal names the version we speak.
        assert re.search(rb"(?im)^sec-websocket-version: 13\r$", refusal), refusal
    await released(server)
    assert complaints(caplog) == []


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/events"])
async def test_a_good_handshake_is_still_accepted(server: Running, path: str, first: bytes) -> None:
    port = server.ports.http
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(first + upgrade(path))
            got = await read_until(stream, b"", lambda data: has_101(data))
            head, rest = split_101(got)
            assert statuses(head)[-1] == 101
            # The accept token of RFC 6455 section 1.3's sample key.
            assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
            await stream.send_all(frame(0x8, struct.pack("!H", 1000)))
            assert await read_close_code(stream, rest) == 1000
    await released(server)


# -- 6. Frames in the same write as the upgrade -------------------------------------------------


def has_101(data: bytes) -> bool:
    """Whether *data* holds a whole 101 response head."""
    at = data.find(b"HTTP/1.1 101")
    return at >= 0 and data.find(b"\r\n\r\n", at) >= 0


async def read_until(stream: trio.SocketStream, got: bytes, done: Callable[[bytes], bool]) -> bytes:
    """Read from *stream* onto *got* until *done(got)*; the server must not close first."""
    while not done(got):
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed early after {got[:300]!r}"
        got += chunk
    return got


def split_101(data: bytes) -> tuple[bytes, bytes]:
    """(everything up to and including the 101's head, the bytes after it)."""
    at = data.index(b"HTTP/1.1 101")
    end = data.index(b"\r\n\r\n", at) + 4
    return data[:end], data[end:]


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's (unmasked) frames in *data*, as (opcode, payload), whole frames only."""
    out = []
    while len(data) >= 2:
        n = data[1] & 0x7F
        offset = 2
        if n == 126:
            n = struct.unpack("!H", data[2:4])[0]
            offset = 4
        elif n == 127:
            n = struct.unpack("!Q", data[2:10])[0]
            offset = 10
        if len(data) < offset + n:
            break
        out.append((data[0] & 0x0F, data[offset : offset + n]))
        data = data[offset + n :]
    return out


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/events"])
async def test_a_ping_sent_with_the_upgrade_is_answered_after_the_101(
    server: Running, path: str, first: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.ports.http
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(first + upgrade(path) + frame(0x9, b"pp"))

            def pong_after_101(data: bytes) -> bool:
                return has_101(data) and (0xA, b"pp") in frames(split_101(data)[1])

            got = await read_until(stream, b"", pong_after_101)
    # Nothing before the status line of the 101 (or of the 200 that came first).
    if first:
        assert got.startswith(b"HTTP/1.1 200")
        assert b"}HTTP/1.1 101" in got  # the 200's JSON body, then straight to the 101
    else:
        assert got.startswith(b"HTTP/1.1 101"), got[:40]
    await released(server)
    assert complaints(caplog) == []


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/events"])
async def test_a_close_sent_with_the_upgrade_is_answered_at_once(
    server: Running, path: str, first: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """101, then our close frame (the same code), then the connection ends: no keepalive wait."""
    port = server.ports.http
    close = frame(0x8, struct.pack("!H", 1000) + b"bye")
    # Well under the keepalive ping interval (20 s) that used to end it.
    answer = await exchange(port, first + upgrade(path) + close, limit=5)
    head, after = split_101(answer)
    assert statuses(head)[-1] == 101
    replies = frames(after)
    assert replies, after
    assert replies[-1][0] == 0x8
    assert struct.unpack("!H", replies[-1][1][:2])[0] == 1000
    await released(server)
    assert complaints(caplog) == []
