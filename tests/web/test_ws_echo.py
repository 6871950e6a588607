"""``/ws/echo``: exact echo, limits, protocol errors and shutdown, over real websockets."""

from __future__ import annotations

import os

import pytest
import trio
from trio_websocket import ConnectionClosed

from app.units import MiB

from conftest import Running, wait_until
from netclient import frame, read_close_code, ws_connect, ws_handshake


async def test_text_stays_text_and_binary_stays_binary(ws_server: Running) -> None:
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.send_message("héllo ✓")
            assert await ws.get_message() == "héllo ✓"
            blob = os.urandom(1000)
            await ws.send_message(blob)
            assert await ws.get_message() == blob
            await ws.send_message(b"")
            assert await ws.get_message() == b""


async def test_message_of_exactly_the_limit_is_echoed_and_one_more_byte_closes_1009(
    ws_server: Running,
) -> None:
    limit = ws_server.hub.settings.max_message_size
    assert limit == 1 * MiB
    with trio.fail_after(10):
        async with ws_connect(ws_server.url("/ws/echo"), max_message_size=4 * MiB) as ws:
            blob = os.urandom(limit)
            await ws.send_message(blob)
            assert await ws.get_message() == blob
        # One byte more, sent as one raw frame.
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            await stream.send_all(frame(0x2, os.urandom(limit + 1)))
            assert await read_close_code(stream, rest) == 1009


async def test_ping_is_answered(ws_server: Running) -> None:
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.ping(b"are you there")
            await ws.send_message("after ping")
            assert await ws.get_message() == "after ping"


@pytest.mark.parametrize(
    ("hostile", "code"),
    [
        (frame(0x1, b"unmasked", masked=False), 1002),
        (frame(0x3, b"reserved opcode"), 1002),
        (frame(0x9, b"p" * 126), 1002),  # control frame over 125 bytes
        (frame(0x1, b"\xff\xfe not utf-8"), 1007),
    ],
    ids=["unmasked", "bad-opcode", "long-control", "bad-utf8"],
)
async def test_protocol_errors_close_with_the_right_code(
    ws_server: Running, hostile: bytes, code: int, request: pytest.FixtureRequest
) -> None:
    if ws_server.hub.settings.ws_engine == "asgi":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="Hypercorn 0.18 drops the connection without a close frame when "
                "wsproto reports a protocol error (docs/decisions.md); the default path is strict",
            )
        )
    with trio.fail_after(5):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            await stream.send_all(hostile)
            assert await read_close_code(stream, rest) == code
        # The server is still there for everyone else.
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.send_message("fine")
            assert await ws.get_message() == "fine"


async def test_shutdown_closes_websockets_with_1001(ws_server: Running) -> None:
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
            ws_server.server.stop()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001


async def test_feed_counts_websocket_echo_connections(ws_server: Running) -> None:
    from app.events import ConnClose

    cursor = ws_server.hub.feed.last_seq
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.send_message("abc")
            assert await ws.get_message() == "abc"
        await wait_until(lambda: len(ws_server.hub.ws) == 0)
    events = ws_server.hub.feed.ring.read(cursor, 100)
    assert isinstance(events, list)
    closes = [e for e in events if isinstance(e, ConnClose)]
    assert len(closes) == 1
    assert (closes[0].transport, closes[0].bytes_in, closes[0].bytes_out, closes[0].msgs) == (
        "ws",
        3,
        3,
        1,
    )
