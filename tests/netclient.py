"""Small real clients for tests: HTTP/1.1 over h11, and raw websocket frames for hostile input."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from trio_websocket import WebSocketConnection, open_websocket_url


async def http_request(
    port: int, path: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: ``(status, headers, body)``."""
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        hdrs = [("Host", f"127.0.0.1:{port}"), ("Connection", "close"), *(headers or [])]
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        status = 0
        response_headers: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, response_headers, body


async def ws_handshake(port: int, path: str = "/ws/echo") -> tuple[trio.SocketStream, bytes]:
    """Open a websocket by hand; returns the stream and any bytes read past the handshake."""
    stream, _, rest = await ws_open(port, path)
    return stream, rest


async def ws_open(
    port: int, path: str = "/ws/echo", headers: list[tuple[str, str]] | None = None
) -> tuple[trio.SocketStream, dict[str, str], bytes]:
    """:func:`ws_handshake` sending extra request *headers* (``Sec-WebSocket-Extensions``...);
    also returns the 101's headers (names lower case)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers or []),
    ]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed during handshake: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    response: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        response[name.strip().lower()] = value.strip()
    return stream, response, rest


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One websocket frame, as a client would send it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_close_code(stream: trio.SocketStream, already: bytes = b"") -> int | None:
    """Read server frames until a close frame; its status code (None if the stream just ended)."""
    data = already
    while True:
        while len(data) >= 2:
            opcode = data[0] & 0x0F
            n = data[1] & 0x7F
            offset = 2
            if n == 126:
                if len(data) < 4:
                    break
                n = struct.unpack("!H", data[2:4])[0]
                offset = 4
            elif n == 127:
                if len(data) < 10:
                    break
                n = struct.unpack("!Q", data[2:10])[0]
                offset = 10
            if len(data) < offset + n:
                break
            payload = data[offset : offset + n]
            data = data[offset + n :]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return None
        if not chunk:
            return None
        data += chunk


@asynccontextmanager
async def ws_connect(url: str, **kwargs: Any) -> AsyncIterator[WebSocketConnection]:
    """``open_websocket_url`` that never leaks its socket.

    trio-websocket 0.12's client does not close its TCP stream when the server
    ends the connection first (it waits for the server's TCP close, then its
    ``aclose()`` finds the websocket closed and returns early); the socket is
    then only closed by the garbage collector, which our ``filterwarnings =
    error`` turns into a failure.  Close it ourselves.
    """
    async with open_websocket_url(url, **kwargs) as ws:
        try:
            yield ws
        finally:
            await trio.aclose_forcefully(ws._stream)


async def upgrade_status(port: int, path: str, headers: list[tuple[str, str]] | None = None) -> int:
    """The HTTP status a websocket upgrade request gets (101 when accepted)."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
        *(headers or []),
    ]
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"] + [
            f"{k}: {v}" for k, v in upgrade
        ]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            assert chunk, "closed before answering the upgrade"
            data += chunk
        return int(data.split(b" ", 2)[1])


def rst_close(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0, so the kernel sends RST instead of FIN: a client that vanishes."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()
