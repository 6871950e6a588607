"""The PROXY protocol on real listeners: the TCP echo (both engines) and the web front.

Loopback only, port 0, every wait under ``trio.fail_after``.  The address a
header carries must be what the feed shows (``conn_open.peer``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio

from app.echo.proxy import build_v1, build_v2
from app.feed.events import ConnOpen

from conftest import ENGINES, Running, read_all, start_server, wait_until
from netclient import http_request

CLIENT4 = ("203.0.113.7", 40001)
CLIENT6 = ("2001:db8::42", 40002)
SERVER4 = ("192.0.2.1", 8001)
SERVER6 = ("2001:db8::1", 8001)


@pytest.fixture(params=ENGINES)
async def proxied(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[Running]:
    """A server that requires a PROXY header (v1 or v2) on TCP echo and web, per engine."""
    yield await start_server(nursery, engine=request.param, proxy_protocol="any")


async def opens_since(running: Running, cursor: int, transport: str = "tcp") -> list[ConnOpen]:
    events = running.events[cursor:]
    assert isinstance(events, list)
    return [e for e in events if isinstance(e, ConnOpen) and e.transport == transport]


async def wait_open(running: Running, cursor: int, transport: str = "tcp") -> ConnOpen:
    with trio.fail_after(5):
        while not (opens := await opens_since(running, cursor, transport)):  # noqa: ASYNC110
            await trio.sleep(0.01)  # the feed's ring, polled as the TCP tests do
    assert len(opens) == 1
    return opens[0]


async def closed_without_echo(stream: trio.SocketStream, data: bytes | None = None) -> bool:
    """Send *data* and EOF (the server may be gone already); True if it closed, echoing nothing."""
    try:
        if data is not None:
            await stream.send_all(data)
            await stream.send_eof()
        return await read_all(stream) == b""
    except trio.BrokenResourceError:
        return True


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (build_v1(CLIENT4, SERVER4), "203.0.113.7:40001"),
        (build_v1(CLIENT6, SERVER6), "[2001:db8::42]:40002"),
        (build_v2(CLIENT4, SERVER4), "203.0.113.7:40001"),
        (build_v2(CLIENT6, SERVER6, b"\x04\x00\x03abc"), "[2001:db8::42]:40002"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6-tlv"],
)
async def test_carried_address_is_the_peer_and_bytes_after_the_header_echo(
    proxied: Running, header: bytes, peer: str
) -> None:
    cursor = len(proxied.events)
    payload = bytes(range(256)) * 300
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*proxied.tcp) as s:
            # The header and the first payload bytes in one segment, as HAProxy may send them.
            await s.send_all(header + payload)
            await s.send_eof()
            assert await read_all(s) == payload
    assert (await wait_open(proxied, cursor)).peer == peer


@pytest.mark.parametrize(
    "header",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ff::1 ff::2 1 2\r\n", build_v2(None, None)],
    ids=["v1-unknown", "v1-unknown-addresses", "v2-local"],
)
async def test_unknown_and_local_keep_the_socket_address(proxied: Running, header: bytes) -> None:
    cursor = len(proxied.events)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*proxied.tcp) as s:
            await s.send_all(header)
            await s.send_all(b"ping")
            await s.send_eof()
            assert await read_all(s) == b"ping"
            local = s.socket.getsockname()
    assert (await wait_open(proxied, cursor)).peer == f"127.0.0.1:{local[1]}"


async def test_a_header_split_across_reads(proxied: Running) -> None:
    header = build_v2(CLIENT4, SERVER4, b"\x01\x00\x02h2")
    cursor = len(proxied.events)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*proxied.tcp) as s:
            for piece in (header[:3], header[3:14], header[14:20], header[20:]):
                await s.send_all(piece)
                await trio.sleep(0.05)  # separate segments, each read on its own
            await s.send_all(b"after")
            await s.send_eof()
            assert await read_all(s) == b"after"
    assert (await wait_open(proxied, cursor)).peer == "203.0.113.7:40001"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, no header\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nhello",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        build_v2(CLIENT4, SERVER4)[:-1] + b"",  # truncated, then EOF
        b"PROXY TCP4 1.2.3.4",  # truncated v1, then EOF
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # v2 with version 3
        b"PROXY " + b"A" * 200,  # no CRLF within 107 bytes
    ],
    ids=["none", "v1-bad-port", "v1-lf", "v2-truncated", "v1-truncated", "v2-version", "v1-long"],
)
async def test_malformed_or_truncated_headers_are_closed_with_one_log_line(
    proxied: Running, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cursor = len(proxied.events)
    before = proxied.hub.proxy_refusals.total
    with caplog.at_level(logging.WARNING, logger="app.echo.proxy"), trio.fail_after(10):
        async with await trio.open_tcp_stream(*proxied.tcp) as s:
            assert await closed_without_echo(s, data)
        await wait_until(lambda: proxied.hub.proxy_refusals.total == before + 1)
    assert await opens_since(proxied, cursor) == []
    lines = [r for r in caplog.records if r.name == "app.echo.proxy"]
    assert len(lines) == 1 and "closing 127.0.0.1:" in lines[0].getMessage()
    # The server is fine: a good connection still echoes.
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*proxied.tcp) as s:
            await s.send_all(build_v1(CLIENT4, SERVER4) + b"ok")
            await s.send_eof()
            assert await read_all(s) == b"ok"


@pytest.mark.parametrize("engine", ENGINES)
async def test_untrusted_source_is_closed_even_with_a_valid_header(
    nursery: trio.Nursery, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(
        nursery, engine=engine, proxy_protocol="v2", proxy_trusted="10.0.0.0/8"
    )
    with caplog.at_level(logging.WARNING, logger="app.echo.proxy"), trio.fail_after(10):
        async with await trio.open_tcp_stream(*running.tcp) as s:
            assert await closed_without_echo(s, build_v2(CLIENT4, SERVER4) + b"x")
        await wait_until(lambda: running.hub.proxy_refusals.total == 1)
    assert any("not in --proxy-trusted" in r.getMessage() for r in caplog.records)


async def test_a_v1_only_listener_refuses_v2(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, proxy_protocol="v1")
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*running.tcp) as s:
            assert await closed_without_echo(s, build_v2(CLIENT4, SERVER4) + b"x")


# -- the web listener ----------------------------------------------------------------------


async def test_web_http_after_a_v1_header(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, proxy_protocol="v1")
    port = running.ports.http
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            await s.send_all(build_v1(CLIENT4, SERVER4))
            request = (
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )
            await s.send_all(request.encode())
            reply = await read_all(s)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    # Without the header the web listener closes the connection.
    with trio.fail_after(10):
        status, _, _ = await _status_or_zero(port)
    assert status == 0


async def _status_or_zero(port: int) -> tuple[int, dict[str, str], bytes]:
    try:
        return await http_request(port, "/healthz")
    except (trio.BrokenResourceError, Exception):  # h11 sees the close as a protocol error
        return 0, {}, b""


async def test_web_websocket_echo_shows_the_carried_address(proxied: Running) -> None:
    port = proxied.ports.http
    cursor = len(proxied.events)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            request = (
                f"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            # Header and request in one write: not a byte of the request may be lost.
            await s.send_all(build_v2(CLIENT6, SERVER6) + request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await s.receive_some(4096)
                assert chunk
                head += chunk
            assert head.startswith(b"HTTP/1.1 101")
    assert (await wait_open(proxied, cursor, "ws")).peer == "[2001:db8::42]:40002"


async def test_web_untrusted_is_closed(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, proxy_protocol="any", proxy_trusted="192.0.2.0/24")
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.http) as s:
            assert await closed_without_echo(
                s, build_v1(CLIENT4, SERVER4) + b"GET / HTTP/1.1\r\n\r\n"
            )
    assert running.hub.proxy_refusals.total == 1


async def test_a_trusted_peer_that_never_finishes_its_header_is_closed(
    nursery: trio.Nursery,
) -> None:
    """HEADER_TIMEOUT (5 s): both engines and the web port at once, so the test waits once."""
    servers = [await start_server(nursery, engine=e, proxy_protocol="any") for e in ENGINES]
    targets = [r.tcp for r in servers] + [("127.0.0.1", servers[0].ports.http)]
    closed: list[bool] = []

    async def stall(target: tuple[str, int]) -> None:
        async with await trio.open_tcp_stream(*target) as s:
            await s.send_all(b"PROXY TCP4 1.2.3.4 ")  # and nothing more
            closed.append(await closed_without_echo(s))

    with trio.fail_after(30):
        async with trio.open_nursery() as waiting:
            for target in targets:
                waiting.start_soon(stall, target)
    assert closed == [True] * len(targets)
    assert servers[0].hub.proxy_refusals.total == 2  # its echo port and its web port
    assert [r.hub.proxy_refusals.total for r in servers[1:]] == [1] * (len(servers) - 1)
