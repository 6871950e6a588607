"""Slow and stuck peers are cut off by a timeout, with one log line, and delay no one else."""

from __future__ import annotations

import logging

import pytest
import trio

from app.feed.events import Notice

from conftest import start_server, wait_until
from netclient import read_close_code, ws_connect, ws_handshake


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_feed_subscriber_that_stops_reading_is_cut_off(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, write_timeout=0.5)
    feed = running.hub.feed
    with trio.fail_after(20):
        async with ws_connect(running.url("/ws/events")) as reader:
            await reader.get_message()  # hello
            stuck, _ = await ws_handshake(running.ports.http, "/ws/events")
            await wait_until(lambda: feed.subscribers == 2)
            # Publish until the stuck one's socket buffers are full and its send stalls.
            while feed.subscribers == 2:
                for i in range(500):
                    feed.publish(Notice(level="info", text=f"{i} " + "x" * 500))
                await reader.get_message()  # the reader keeps up meanwhile
                await trio.sleep(0.05)
            await stuck.aclose()
    assert len(lines(caplog, "took no data for 0.5 s; closing it")) == 1


async def test_a_websocket_that_never_answers_pings_is_closed_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, ws_ping_interval=0.2)
    with trio.fail_after(10):
        # A raw client: it never answers the server's pings.
        silent, rest = await ws_handshake(running.ports.http, "/ws/echo")
        async with silent:
            assert await read_close_code(silent, rest) == 1011
        # A real client answers pings and stays.
        async with ws_connect(running.url("/ws/echo")) as ws:
            await trio.sleep(0.7)
            await ws.send_message("alive")
            assert await ws.get_message() == "alive"
    assert len(lines(caplog, "keepalive ping timeout; closed it")) == 1


async def test_a_slowloris_request_is_cut_off(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 200
    sent = 0
    with trio.fail_after(20):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.http) as slow:
            try:
                for byte in request:
                    await slow.send_all(bytes([byte]))
                    sent += 1
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
            try:
                assert await slow.receive_some(100) == b""
            except trio.BrokenResourceError:
                pass
    assert sent < len(request), "the server waited for the whole trickle"
    assert len(lines(caplog, "sent an incomplete request and stalled")) == 1
