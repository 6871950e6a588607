"""UDP echo (RFC 862) over real loopback sockets: exact echoes, the size bound, the rate bounds.

Many sources are real: sockets bound to 127.0.0.2, 127.0.0.3, ... (Linux routes
all of 127/8 to the loopback interface), each a distinct source address, as
forged sources would be.  "No answer" is judged after a short quiet wait;
a late answer would still fail the count that follows.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Final

import pytest
import trio

from app.echo.udp import RateGate, UdpDrops
from app.feed.events import ConnOpen

from conftest import Running, start_server, wait_until
from netclient import http_request

# How long a datagram that should not come back is waited for.
QUIET: Final = 0.3


async def udp_socket(
    host: str = "127.0.0.1", family: int = socket.AF_INET
) -> trio.socket.SocketType:
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    await sock.bind((host, 0))
    return sock


async def replies(sock: trio.socket.SocketType, quiet: float = QUIET) -> list[bytes]:
    """Every datagram that arrives until none came for *quiet* seconds."""
    got = []
    while True:
        with trio.move_on_after(quiet):
            got.append(await sock.recv(70_000))
            continue
        return got


def server_udp(running: Running, host: str = "127.0.0.1") -> tuple[str, int]:
    return (host, running.ports.udp)


@pytest.mark.parametrize("size", [1, 2, 1472, 9000, 65_507])
async def test_each_datagram_comes_back_exactly(running: Running, size: int) -> None:
    payload = bytes((i * 7 + size) % 256 for i in range(size))
    with trio.fail_after(10):
        sock = await udp_socket()
        with sock:
            await sock.sendto(payload, server_udp(running))
            data, addr = await sock.recvfrom(70_000)
            assert data == payload  # byte for byte, and not one more
            assert addr == server_udp(running)
            assert await replies(sock) == []  # exactly one answer


async def test_default_udp_port_is_the_tcp_port_and_no_udp_turns_it_off(
    running: Running, nursery: trio.Nursery
) -> None:
    assert running.ports.udp == running.ports.tcp
    off = await start_server(nursery, udp=False)
    assert off.ports.udp == 0
    picked = await start_server(nursery, udp_port=0)
    assert picked.ports.udp != 0


async def test_a_datagram_over_the_bound_is_dropped_not_cut(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, udp_max_datagram=1000)
    with trio.fail_after(10):
        sock = await udp_socket()
        with sock:
            await sock.sendto(b"x" * 1001, server_udp(running))
            assert await replies(sock) == []
            await sock.sendto(b"y" * 1000, server_udp(running))
            assert await replies(sock) == [b"y" * 1000]
        assert running.hub.udp_drops.oversize == 1
        status, _, body = await http_request(running.ports.http, "/healthz")
    assert status == 200
    udp = json.loads(body)["udp"]
    assert udp["address"] == f"127.0.0.1:{running.ports.udp}"
    assert udp["dropped"] == {"source": 0, "total": 0, "oversize": 1, "failed": 0}


async def test_ipv6_datagram_over_65507_is_dropped(nursery: trio.Nursery) -> None:
    # Over IPv6 a UDP payload may reach 65,527 bytes: past the IPv4 maximum we echo.
    try:
        running = await start_server(nursery, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with trio.fail_after(10):
        sock = await udp_socket("::1", socket.AF_INET6)
        with sock:
            await sock.sendto(b"z" * 65_508, ("::1", running.ports.udp))
            assert await replies(sock) == []
            await sock.sendto(b"z" * 65_507, ("::1", running.ports.udp))
            assert await replies(sock) == [b"z" * 65_507]
    assert running.hub.udp_drops.oversize == 1


async def test_per_source_bound_counts_datagrams_and_bytes(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, udp_rate_exempt="", udp_source_rate=5)
    with caplog.at_level(logging.WARNING, logger="app.echo.udp"), trio.fail_after(10):
        sock = await udp_socket()
        other = await udp_socket()  # same address, another port: the same source
        with sock, other:
            for i in range(20):
                await (sock if i % 2 else other).sendto(b"%02d" % i, server_udp(running))
            got = await replies(sock, 0.5) + await replies(other, 0.1)
        # All 20 were sent within one window: the first 5 came back, the rest were dropped.
        assert sorted(got) == [b"00", b"01", b"02", b"03", b"04"]
        assert running.hub.udp_drops.source == 15
        # The next window's log line sums the drops up.
        await wait_until(lambda: any("dropped 15" in r.getMessage() for r in caplog.records))


async def test_per_source_byte_bound(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, udp_rate_exempt="", udp_source_bytes=65_507)
    with trio.fail_after(10):
        sock = await udp_socket("127.0.0.9")
        with sock:
            for _ in range(3):
                await sock.sendto(b"b" * 30_000, server_udp(running))
            got = await replies(sock, 0.5)
    assert len(got) == 2  # 60,000 bytes fit in 65,507; the third would not
    assert running.hub.udp_drops.source == 1


async def test_many_forged_sources_hit_the_global_bound(nursery: trio.Nursery) -> None:
    """The reflection case: each source stays under its own bound, together they are stopped."""
    running = await start_server(
        nursery, udp_rate_exempt="", udp_source_rate=100, udp_global_rate=10
    )
    with trio.fail_after(20):
        socks = [await udp_socket(f"127.0.0.{i}") for i in range(2, 32)]
        try:
            for sock in socks:
                await sock.sendto(b"spoof", server_udp(running))
            # The last source was sent to last: once it stays quiet, every answer is in.
            answered = len(await replies(socks[-1], 0.5))
            for sock in socks[:-1]:
                answered += len(await replies(sock, 0.01))
        finally:
            for sock in socks:
                sock.close()
    assert answered == 10
    assert running.hub.udp_drops.total == 20


async def test_loopback_is_exempt_by_default(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, udp_source_rate=5, udp_global_rate=5)
    with trio.fail_after(10):
        sock = await udp_socket()
        with sock:
            for i in range(40):
                await sock.sendto(b"%02d" % i, server_udp(running))
                assert await sock.recv(100) == b"%02d" % i
    assert running.hub.udp_drops.all == 0


async def test_each_source_gets_a_lane_up_to_the_bound(running: Running) -> None:
    table = running.hub.udp
    assert table is not None
    table.limit = 3  # MAX_LANES is 256; the same rule at a size a test can reach
    cursor = len(running.events)
    with trio.fail_after(10):
        socks = [await udp_socket(f"127.0.1.{i}") for i in range(1, 6)]
        try:
            for sock in socks:
                await sock.sendto(b"hi", server_udp(running))
                assert await sock.recv(100) == b"hi"  # every source is echoed, lane or not
        finally:
            for sock in socks:
                sock.close()
    events = running.events[cursor:]
    assert isinstance(events, list)
    opens = [e for e in events if isinstance(e, ConnOpen) and e.transport == "udp"]
    assert [e.peer.rsplit(":", 1)[0] for e in opens] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert len(table) == 3
    _, total_bytes, total_msgs = table.samples()
    assert (total_bytes, total_msgs) == (5 * 4, 5)  # untracked sources still count


def test_gate_windows_restart_together() -> None:
    drops = UdpDrops()
    gate = RateGate(
        source_rate=2,
        source_bytes=1000,
        global_rate=3,
        global_bytes=10_000,
        exempt=(),
        drops=drops,
    )
    gate.start_batch(0.0)
    assert [gate.admit("192.0.2.1", 10) for _ in range(3)] == [True, True, False]
    assert gate.admit("192.0.2.2", 10) is True  # the global bound's third
    assert gate.admit("192.0.2.3", 10) is False  # global bound reached
    assert (drops.source, drops.total) == (1, 1)
    gate.start_batch(0.5)  # same window
    assert gate.admit("192.0.2.4", 10) is False
    gate.start_batch(1.0)  # a new window for everyone
    assert gate.admit("192.0.2.1", 10) is True
    assert gate.admit("192.0.2.1", 991) is False  # 10 + 991 bytes > 1000
