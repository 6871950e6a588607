"""The reader for listeners that hand a stream on: it takes the header and not one byte more."""

from __future__ import annotations

import pytest
import trio

from app.echo.proxy import ProxyProtocolError, build_v1, build_v2, proxy_policy
from app.echo.proxyread import ProxiedSocket, read_proxy_header

POLICY = proxy_policy("any", "127.0.0.1")
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "header",
    [build_v1(("203.0.113.7", 5), ("192.0.2.1", 80)), build_v2(("2001:db8::9", 5), ("::1", 80))],
    ids=["v1", "v2"],
)
async def test_exactly_the_header_is_consumed(header: bytes) -> None:
    assert POLICY is not None
    a, b = trio.socket.socketpair()
    with a, b, trio.fail_after(10):
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
