"""The HTTP side: health, the page from the installed package, the connection limit."""

from __future__ import annotations

import json

import pytest
import trio

from conftest import Running, start_server, wait_until
from netclient import http_request, upgrade_status


async def test_healthz_answers_json(running: Running) -> None:
    with trio.fail_after(5):
        status, headers, body = await http_request(running.ports.http, "/healthz")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["tcp"]["limit"] == 10_000
    assert health["feed"]["seq"] >= 0


async def test_page_is_served(running: Running) -> None:
    with trio.fail_after(5):
        status, headers, body = await http_request(running.ports.http, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"/ws/events" in body or b"app.js" in body


async def test_static_lookup_does_not_escape_its_folder(running: Running) -> None:
    with trio.fail_after(5):
        status, _, body = await http_request(running.ports.http, "/../../app/config.py")
        assert status == 404
        status, _, body = await http_request(running.ports.http, "/%2e%2e/%2e%2e/etc/passwd")
        assert status == 404
    assert b"root:" not in body


async def test_web_connection_over_the_limit_gets_503_and_others_keep_working(
    nursery: trio.Nursery,
) -> None:
    running = await start_server(nursery, max_web_connections=2)
    with trio.fail_after(5):
        held = [await trio.open_tcp_stream("127.0.0.1", running.ports.http) for _ in range(2)]
        await wait_until(lambda: running.server.web_connections == 2)
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.http) as extra:
            answer = b""
            try:
                while chunk := await extra.receive_some(1000):
                    answer += chunk
            except trio.BrokenResourceError:
                pass
        assert answer.startswith(b"HTTP/1.1 503")
        # A held connection is still served.
        await held[0].send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := await held[0].receive_some(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")
        health = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert health["web"] == {"connections": 2, "limit": 2, "refused": 1}
        for stream in held:
            await stream.aclose()
        # Once they are gone, new connections are welcome again.
        await wait_until(lambda: running.server.web_connections == 0)
        status, _, _ = await http_request(running.ports.http, "/healthz")
        assert status == 200
    assert running.server.hub.settings.max_web_connections == 2


async def test_a_request_head_over_16_kib_gets_431_and_others_are_served(
    running: Running,
) -> None:
    """Hypercorn buffers at most 16 KiB of an unfinished request head, then answers 431."""
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.http) as stream:
            # 20 KiB of head, never finished: all of it fits in the socket buffers, so the
            # server reads every byte and its close is a FIN, not a reset that would eat the 431.
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 431")
        status, _, _ = await http_request(running.ports.http, "/healthz")
        assert status == 200


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/events"])
async def test_an_upgrade_header_line_over_8_kib_gets_431(running: Running, path: str) -> None:
    """The websockets library bounds each head line at 8 KiB and the head at 128 lines."""
    with trio.fail_after(5):
        assert await upgrade_status(running.ports.http, path, [("X-Big", "a" * 9_000)]) == 431
        assert await upgrade_status(running.ports.http, path) == 101
