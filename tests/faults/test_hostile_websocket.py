"""Hostile websocket framing: every violation gets its RFC 6455 close code; the server stays up."""

from __future__ import annotations

import pytest
import trio

from conftest import Running, expect_hypercorn_drop
from netclient import frame, read_close_code, ws_connect, ws_handshake

CONT, TEXT, BINARY, PING = 0x0, 0x1, 0x2, 0x9


def fragments(opcode: int, payload: bytes, size: int) -> bytes:
    """*payload* as a fragmented message of *size*-byte frames."""
    parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    out = b""
    for i, part in enumerate(parts):
        out += frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1)
    return out


async def assert_still_serving(running: Running) -> None:
    async with ws_connect(running.url("/ws/echo")) as ws:
        await ws.send_message("ok?")
        assert await ws.get_message() == "ok?"


async def test_fragmented_message_is_reassembled_and_echoed(ws_server: Running) -> None:
    with trio.fail_after(5):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            payload = "fragmenté ✓".encode() * 100
            await stream.send_all(fragments(TEXT, payload, 7))  # splits inside UTF-8 sequences too
            # The echo is one text frame holding the whole payload (server frames are unmasked).
            data = rest
            while payload not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, "closed before echoing"
                data += chunk
            assert data[0] == 0x80 | TEXT


@pytest.mark.parametrize(
    ("hostile", "code"),
    [
        (
            fragments(BINARY, b"x" * (1024 * 1024 + 1), 4096),
            1009,
        ),  # a fragmented flood past the limit
        (frame(CONT, b"orphan continuation"), 1002),
        (
            frame(TEXT, b"start", fin=False) + frame(TEXT, b"restart"),
            1002,
        ),  # new message mid-message
        (frame(PING, b"fragmented ping", fin=False), 1002),
        (frame(TEXT, b"rsv bits", rsv=4), 1002),
        (frame(TEXT, b"\xed\xa0\x80"), 1007),  # a UTF-16 surrogate encoded in UTF-8
        (frame(0x8, b"\x03"), 1002),  # a close frame with a one-byte body
        (frame(0x8, b"\x03\xe8\xff"), 1007),  # a close reason that is not UTF-8
    ],
    ids=[
        "fragment-flood",
        "orphan-continuation",
        "interleaved-data",
        "fragmented-control",
        "rsv-bits",
        "surrogate",
        "short-close",
        "bad-close-reason",
    ],
)
async def test_framing_violations_close_with_the_rfc_code(
    ws_server: Running, hostile: bytes, code: int, request: pytest.FixtureRequest
) -> None:
    if code != 1009:  # Hypercorn does close oversized messages properly
        expect_hypercorn_drop(ws_server, request)
    with trio.fail_after(10):
        stream, rest = await ws_handshake(ws_server.ports.http)
        async with stream:
            try:
                await stream.send_all(hostile)
            except trio.BrokenResourceError:
                pass  # the server may close before reading all of a flood
            assert await read_close_code(stream, rest) == code
        await assert_still_serving(ws_server)
