"""``/ws/echo``: exact echo, limits, protocol errors and shutdown, over real websockets."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from app.units import MiB

from conftest import WS_ENGINES, Running, expect_hypercorn_drop, start_server, wait_until
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
    expect_hypercorn_drop(ws_server, request)
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
    from app.feed.events import ConnClose

    cursor = ws_server.hub.feed.last_seq
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/echo")) as ws:
            await ws.send_message("abc")
            assert await ws.get_message() == "abc"
        await wait_until(lambda: len(ws_server.hub.ws) == 0)
    events = [e for e in ws_server.events if e.seq > cursor]
    closes = [e for e in events if isinstance(e, ConnClose)]
    assert len(closes) == 1
    assert (closes[0].transport, closes[0].bytes_in, closes[0].bytes_out, closes[0].msgs) == (
        "ws",
        3,
        3,
        1,
    )


async def read_message_frames(
    stream: trio.SocketStream, already: bytes = b""
) -> list[tuple[int, bool, bytes]]:
    """Read server frames up to the end of one message: ``(opcode, fin, payload)`` each.

    Servers never mask; the payloads here are short (under 126 bytes).
    """
    data = already
    frames: list[tuple[int, bool, bytes]] = []
    while not frames or not frames[-1][1]:
        n = data[1] & 0x7F if len(data) >= 2 else 0
        assert n < 126, "long frames are not expected here"
        if len(data) >= 2 + n:
            frames.append((data[0] & 0x0F, bool(data[0] & 0x80), data[2 : 2 + n]))
            data = data[2 + n :]
            continue
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed after {frames}"
        data += chunk
    return frames


async def test_fragmented_text_split_inside_a_character_comes_back_whole(
    ws_server: Running,
) -> None:
    text = "fragments: ✓✓✓".encode()
    cut = text.index("✓".encode()) + 1  # inside the three bytes of the first ✓
    with trio.fail_after(5):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            await stream.send_all(frame(0x1, text[:cut], fin=False) + frame(0x0, text[cut:]))
            frames = await read_message_frames(stream, rest)
    assert frames[0][0] == 0x1
    assert all(opcode == 0x0 for opcode, _, _ in frames[1:])
    assert b"".join(payload for _, _, payload in frames) == text


async def test_invalid_utf8_across_fragments_closes_1007(
    ws_server: Running, request: pytest.FixtureRequest
) -> None:
    if ws_server.hub.settings.ws_engine == "asgi":
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="Hypercorn drops the connection (decisions.md)")
        )
    with trio.fail_after(5):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            # A lead byte of a 3-byte character, then a continuation that is not one.
            await stream.send_all(frame(0x1, b"ok \xe2", fin=False) + frame(0x0, b"\x28 no"))
            assert await read_close_code(stream, rest) == 1007


async def test_fragmented_message_over_the_limit_in_total_closes_1009(
    nursery: trio.Nursery,
) -> None:
    for engine in WS_ENGINES:
        if engine == "asgi":
            continue  # Hypercorn measures text in characters (decisions.md); binary is covered
        running = await start_server(nursery, ws_engine=engine, max_message_size=1000)
        with trio.fail_after(5):
            stream, rest = await ws_handshake(running.ports.http)
            async with stream:
                # Two fragments of 600 bytes: each under the limit, the message over it.
                await stream.send_all(frame(0x2, b"a" * 600, fin=False) + frame(0x0, b"b" * 600))
                assert await read_close_code(stream, rest) == 1009, engine


async def test_frame_sent_with_the_handshake_is_echoed(
    ws_server: Running, request: pytest.FixtureRequest
) -> None:
    """A client may send its first frame before it has read the 101 answer."""
    if ws_server.hub.settings.ws_engine == "asgi":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="Hypercorn 0.18's h11 answers 400 to bytes pipelined after the upgrade",
            )
        )
    port = ws_server.ports.http
    upgrade = (
        f"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(upgrade + frame(0x2, b"eager"))
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert await read_message_frames(stream, rest) == [(0x2, True, b"eager")]


async def test_client_close_is_answered_with_the_same_code(ws_server: Running) -> None:
    with trio.fail_after(5):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            await stream.send_all(frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
            assert await read_close_code(stream, rest) == 1000
            # And then the server closes the TCP connection.
            while await stream.receive_some(65536):
                pass
        await wait_until(lambda: len(ws_server.hub.ws) == 0)


@pytest.mark.parametrize("engine", WS_ENGINES)
async def test_idle_websocket_is_closed(nursery: trio.Nursery, engine: str) -> None:
    running = await start_server(nursery, ws_engine=engine, idle_timeout=0.3)
    with trio.fail_after(5):
        async with ws_connect(running.url("/ws/echo")) as ws:
            await ws.send_message("once")
            assert await ws.get_message() == "once"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason.code == 1000
    assert closed.value.reason.reason == "idle"


async def test_a_bug_while_echoing_one_websocket_ends_only_that_one(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The multiplexed engine serves every connection in one task: a failure stays with one."""
    from websockets.frames import Frame

    from app.echo.websocket import WsEchoEngine

    echo = WsEchoEngine._echo

    def buggy(self: WsEchoEngine, link: Any, events: list[Any]) -> None:
        if any(isinstance(e, Frame) and e.data == b"boom" for e in events):
            raise KeyError("a bug")
        echo(self, link, events)

    monkeypatch.setattr(WsEchoEngine, "_echo", buggy)
    running = await start_server(nursery, ws_engine="epoll")
    with trio.fail_after(5):
        async with ws_connect(running.url("/ws/echo")) as bystander:
            async with ws_connect(running.url("/ws/echo")) as victim:
                await victim.send_message(b"boom")
                with pytest.raises(ConnectionClosed):
                    await victim.get_message()
            await bystander.send_message("still here")
            assert await bystander.get_message() == "still here"
    failed = [r for r in caplog.records if "failed: KeyError" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelname == "ERROR"
