"""One connection's failure ends that connection only; the server and every other client go on."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio

from app.feed.events import Notice
from app.web.wsapi import WebSocket
from app.web.wstrio import serve_websocket

from conftest import Running
from netclient import http_request, read_close_code, ws_connect, ws_handshake


async def test_a_subscriber_reset_mid_send_harms_no_one(ws_server: Running) -> None:
    feed = ws_server.hub.feed
    with trio.fail_after(10):
        async with ws_connect(ws_server.url("/ws/events")) as bystander:
            await bystander.get_message()  # hello
            for _ in range(10):
                stream, _ = await ws_handshake(ws_server.ports.http, "/ws/events")
                for i in range(2000):
                    feed.publish(Notice(level="info", text=f"filler {i} " + "x" * 100))
                await trio.sleep(0.01)  # the server is now sending big batches to it
                stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                stream.socket.close()
            status, _, _ = await http_request(ws_server.ports.http, "/healthz")
            assert status == 200
            feed.publish(Notice(level="info", text="still here"))
            while True:
                message = await bystander.get_message()
                if "still here" in message:
                    break


async def test_an_endpoint_that_fails_closes_1011_and_logs_one_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The websocket shell on a real listener, with one endpoint that has a bug."""

    async def broken(ws: WebSocket) -> None:
        await ws.accept()
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep_forever)
            raise KeyError("a bug")

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send(await ws.receive())

    endpoints = {"/ws/broken": broken, "/ws/echo": echo}

    async def handler(stream: trio.SocketStream) -> None:
        await serve_websocket(
            stream, "peer", endpoints, max_message_size=1024, draining=trio.Event()
        )

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(5):
        stream, rest = await ws_handshake(port, "/ws/broken")
        async with stream:
            assert await read_close_code(stream, rest) == 1011
        async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
            await ws.send_message("fine")
            assert await ws.get_message() == "fine"
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == ["websocket peer /ws/broken failed: KeyError: 'a bug'"]
