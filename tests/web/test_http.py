"""The HTTP side: health, the page from the installed package, the connection limit."""

from __future__ import annotations

import json

import trio

from conftest import Running, start_server, wait_until
from netclient import http_request


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
        await wait_until(lambda: running.hub.web_connections == 2)
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
        for stream in held:
            await stream.aclose()
        # Once they are gone, new connections are welcome again.
        await wait_until(lambda: running.hub.web_connections == 0)
        status, _, _ = await http_request(running.ports.http, "/healthz")
        assert status == 200
    assert running.server.hub.settings.max_web_connections == 2
