"""Floods and abrupt endings: the server stays up, serves everyone in the limits, leaks nothing."""

from __future__ import annotations

import json
import logging
import os

import pytest
import trio

from app.ticker import count_tasks

from conftest import ENGINES, start_server, wait_until
from netclient import http_request, rst_close


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def echo_once(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some(65536)
        assert chunk, "closed while echoing"
        got += chunk
    assert got == data


@pytest.mark.parametrize("engine", ENGINES)
async def test_connect_flood_far_past_the_limit(nursery: trio.Nursery, engine: str) -> None:
    running = await start_server(nursery, engine=engine, max_connections=20)
    with trio.fail_after(30):
        good = [await trio.open_tcp_stream(*running.tcp) for _ in range(20)]
        for s in good:
            await echo_once(s, b"in")
        flood: list[trio.SocketStream] = []
        for _ in range(600):  # 30x the limit, as fast as connects go
            flood.append(await trio.open_tcp_stream(*running.tcp))
        await wait_until(lambda: running.hub.tcp.refusals.total >= 600)
        # Everyone inside the limit is served as before, and so is the web side.
        for s in good:
            await echo_once(s, b"still served")
        status, _, body = await http_request(running.ports.http, "/healthz")
        assert status == 200
        assert json.loads(body)["tcp"]["refused"] >= 600
        for s in flood:
            await s.aclose()
        # Full recovery: slots freed by the good ones are taken by new ones.
        for s in good[:10]:
            await s.aclose()
        await wait_until(lambda: len(running.hub.tcp) == 10)
        fresh = [await trio.open_tcp_stream(*running.tcp) for _ in range(10)]
        for s in fresh:
            await echo_once(s, b"new")
        for s in good[10:] + fresh:
            await s.aclose()
    assert len(running.hub.tcp) <= 20


@pytest.mark.parametrize("engine", ENGINES)
async def test_resets_and_vanishing_clients_during_shutdown_leak_nothing(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    fds_before = open_fds()
    tasks_before = count_tasks()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running = await start_server(nursery, engine=engine)
            streams = [await trio.open_tcp_stream(*running.tcp) for _ in range(200)]
            for s in streams:
                await s.send_all(os.urandom(32 * 1024))  # echoes in flight
            await wait_until(lambda: len(running.hub.tcp) == 200)
            # Half of them reset mid-echo, then the server shuts down while the
            # other half vanish the same way.
            for s in streams[:100]:
                rst_close(s)
            running.server.stop()
            for s in streams[100:]:
                rst_close(s)
    assert count_tasks() == tasks_before
    assert open_fds() == fds_before
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == []


async def test_web_connection_flood_gets_503s_and_recovers(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, max_web_connections=10)
    with trio.fail_after(30):
        held = [await trio.open_tcp_stream("127.0.0.1", running.ports.http) for _ in range(10)]
        await wait_until(lambda: running.server.web_connections == 10)
        refused = 0
        for _ in range(200):
            async with await trio.open_tcp_stream("127.0.0.1", running.ports.http) as s:
                try:
                    answer = await s.receive_some(100)
                except trio.BrokenResourceError:
                    answer = b""
                refused += answer.startswith(b"HTTP/1.1 503")
        assert refused >= 150  # the rest were reset before our read: closed either way
        for s in held:
            await s.aclose()
        await wait_until(lambda: running.server.web_connections == 0)
        status, _, _ = await http_request(running.ports.http, "/healthz")
        assert status == 200
