"""The reader for listeners that hand a stream on: it takes the header and not one byte more.

Real sockets (a Unix socketpair, and TCP on loopback), every wait under ``fail_after``.
"""

from __future__ import annotations

import select
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from app.echo.proxy import (
    HEADER_TIMEOUT,
    ProxyHeader,
    ProxyProtocolError,
    ProxyRefusals,
    build_v1,
    build_v2,
    proxy_policy,
)
from app.echo.proxyread import ProxiedSocket, greet, read_proxy_header, refuse_untrusted

POLICY = proxy_policy("any", "127.0.0.1")
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
V1 = build_v1(("203.0.113.7", 5), ("192.0.2.1", 80))
V2 = build_v2(("2001:db8::9", 5), ("::1", 80))

Pair = tuple[trio.socket.SocketType, trio.socket.SocketType]


@asynccontextmanager
async def unix_pair() -> AsyncIterator[Pair]:
    a, b = trio.socket.socketpair()
    with a, b:
        yield a, b


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[Pair]:
    """(the server's end, the client's end) of a TCP connection on loopback."""
    with trio.socket.socket() as listener, trio.socket.socket() as client:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
        with server:
            yield server, client


@pytest.fixture(params=["unix", "tcp"])
def pair(request: pytest.FixtureRequest) -> Callable[[], AbstractAsyncContextManager[Pair]]:
    """A connected pair of real sockets, the server's end first."""
    return unix_pair if request.param == "unix" else tcp_pair


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
async def test_exactly_the_header_is_consumed(
    pair: Callable[[], AbstractAsyncContextManager[Pair]], header: bytes
) -> None:
    assert POLICY is not None
    async with pair() as (a, b):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:
                    # The header in two pieces, the request right behind it.
                    await b.send(header[:7])
                    await trio.sleep(0.05)
                    await b.send(header[7:] + REQUEST)

                nursery.start_soon(trickle)
                got = await read_proxy_header(a, POLICY)
            assert got.length == len(header)
            assert got.source is not None
            wrapped = ProxiedSocket(a, got.source)
            assert wrapped.getpeername() == got.source  # what Hypercorn puts in ASGI's client
            assert wrapped.fileno() == a.fileno()  # everything else is the real socket
            assert await wrapped.recv(1000) == REQUEST  # not a byte of the request was taken


async def test_garbage_and_early_close_are_errors() -> None:
    assert POLICY is not None
    for data in (REQUEST, b"PROXY TCP4 1.2"):
        a, b = trio.socket.socketpair()
        with a, b, trio.fail_after(10):
            await b.send(data)
            b.close()
            with pytest.raises(ProxyProtocolError):
                await read_proxy_header(a, POLICY)


@pytest.mark.parametrize(
    ("header", "pieces"),
    [(V1, [7]), (V1, [7, 20]), (V2, [12]), (V2, [3, 17])],
    ids=["v1", "v1-twice", "v2", "v2-twice"],
)
async def test_a_truncated_header_then_fin_is_refused_at_once(
    pair: Callable[[], AbstractAsyncContextManager[Pair]], header: bytes, pieces: list[int]
) -> None:
    """The peer sends part of a header (in one or two writes), then its FIN.

    Refused as "closed", not after HEADER_TIMEOUT: the error names which.
    """
    assert POLICY is not None
    async with pair() as (server, client):
        with trio.fail_after(HEADER_TIMEOUT * 2):
            async with trio.open_nursery() as nursery:

                async def truncate() -> None:
                    sent = 0
                    for end in pieces:
                        await client.send(header[sent:end])
                        sent = end
                        await trio.sleep(0.05)  # each piece read on its own
                    client.shutdown(socket.SHUT_WR)

                nursery.start_soon(truncate)
                with pytest.raises(ProxyProtocolError) as refused:
                    await read_proxy_header(server, POLICY)
    assert str(refused.value) == (
        f"connection closed after {pieces[-1]} bytes of an unfinished PROXY header"
    )


async def test_the_reader_needs_no_pollrdhup(
    monkeypatch: pytest.MonkeyPatch, pair: Callable[[], AbstractAsyncContextManager[Pair]]
) -> None:
    """macOS has no POLLRDHUP, Windows no poll() at all: take both away, and the reader still
    takes exactly a real header, and still sees a FIN after a truncated one at once."""
    monkeypatch.delattr(select, "POLLRDHUP", raising=False)
    monkeypatch.delattr(select, "poll", raising=False)
    assert POLICY is not None
    with trio.fail_after(10):
        async with pair() as (server, client):
            await client.send(V2 + REQUEST)
            got = await read_proxy_header(server, POLICY)
            assert got.length == len(V2)
            assert await server.recv(1000) == REQUEST
        async with pair() as (server, client):
            await client.send(V1[:-1])  # all but its LF
            client.shutdown(socket.SHUT_WR)
            with pytest.raises(ProxyProtocolError, match="closed after"):
                await read_proxy_header(server, POLICY)


# -- what every PROXY listener shares: the trust check at accept, the refusal ---------------


@pytest.mark.parametrize(
    ("mode", "peer", "refused"),
    [
        ("off", "203.0.113.7:5", False),  # no policy: nothing to check
        ("any", "127.0.0.1:5", False),
        ("any", "203.0.113.7:5", True),
        ("v2", "[2001:db8::1]:5", True),
    ],
)
def test_refuse_untrusted_closes_only_a_peer_outside_proxy_trusted(
    mode: str, peer: str, refused: bool
) -> None:
    refusals = ProxyRefusals("test")
    counts = refusals.listener("tcp")
    a, b = socket.socketpair()
    with a, b:
        assert refuse_untrusted(proxy_policy(mode, "127.0.0.0/8"), counts, a, peer) is refused
        assert (a.fileno() == -1) is refused
        assert refusals.total == counts.untrusted == int(refused)
        assert counts.invalid == counts.accepted == 0


async def test_greet_returns_the_header_and_keeps_the_socket() -> None:
    refusals = ProxyRefusals("test")
    a, b = socket.socketpair()
    with a, b:
        assert POLICY is not None
        header = POLICY.parse(V1)
        assert isinstance(header, ProxyHeader)

        async def read() -> ProxyHeader:
            await trio.lowlevel.checkpoint()
            return header

        counts = refusals.listener("tcp")
        assert await greet(a, "127.0.0.1:9", counts, read) is header
        assert a.fileno() != -1 and refusals.total == 0
        assert (counts.accepted, counts.invalid, counts.untrusted) == (1, 0, 0)


async def test_greet_refuses_a_bad_header_once_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = ProxyRefusals("test")
    a, b = socket.socketpair()
    with a, b, caplog.at_level("WARNING", logger="app.echo.proxy"):

        async def read() -> ProxyHeader:
            raise ProxyProtocolError("expected a PROXY protocol v2 header, got b'GET'")

        counts = refusals.listener("web")
        assert await greet(a, "127.0.0.1:9", counts, read) is None
        assert a.fileno() == -1 and refusals.total == 1
        assert (counts.accepted, counts.invalid, counts.untrusted) == (0, 1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "test: closing 127.0.0.1:9: expected a PROXY protocol v2 header, got b'GET'"
    ]


async def test_greet_closes_the_socket_when_cancelled() -> None:
    refusals = ProxyRefusals("test")
    a, b = socket.socketpair()
    with a, b:

        async def read() -> ProxyHeader:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        counts = refusals.listener("tls")
        with trio.move_on_after(0.01):
            await greet(a, "127.0.0.1:9", counts, read)
        assert a.fileno() == -1 and refusals.total == 0  # closed, but no refusal
        assert (counts.accepted, counts.invalid, counts.untrusted) == (0, 0, 0)
