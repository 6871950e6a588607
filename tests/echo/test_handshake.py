"""The handshake rules every websocket path shares (pure, no sockets)."""

from __future__ import annotations

import pytest
from websockets.http11 import Request

from app.echo.handshake import (
    MAX_HELD,
    AnswerFirstProtocol,
    RequestHead,
    plain_request_refusal,
    upgrade_refusal,
)

REQUEST = b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n"
FRAME = b"\x89\x80abcd"
PATHS = frozenset({"/ws/echo"})
GOOD = [(b"Sec-WebSocket-Version", b"13"), (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")]


@pytest.mark.parametrize("cut", range(1, len(REQUEST + FRAME)))
def test_the_head_ends_at_its_empty_line_however_the_bytes_are_split(cut: int) -> None:
    data = REQUEST + FRAME
    head = RequestHead()
    parts = [head.split(data[:cut]), head.split(data[cut:])]
    assert b"".join(p[0] for p in parts) == REQUEST
    assert b"".join(p[1] for p in parts) == FRAME
    assert head.complete


def test_bytes_after_the_head_are_all_after() -> None:
    head = RequestHead()
    assert head.split(REQUEST) == (REQUEST, b"")
    assert head.split(FRAME) == (b"", FRAME)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/ws/echo", GOOD, None),
        ("/", GOOD, 404),
        ("/ws/echo", [(b"sec-websocket-version", b"8"), GOOD[1]], 426),
        ("/ws/echo", [GOOD[1]], 426),
        ("/ws/echo", [*GOOD, (b"Sec-WebSocket-Version", b"13")], 426),
        ("/ws/echo", [GOOD[0], (b"Sec-WebSocket-Key", b"!!!!!!!!!!!!!!!!!!!!!!==")], 400),
        ("/ws/echo", [GOOD[0], (b"Sec-WebSocket-Key", b"aGVsbG8=")], 400),
        ("/ws/echo", [GOOD[0]], 400),
    ],
)
def test_upgrade_refusal(path: str, headers: list[tuple[bytes, bytes]], status: int | None) -> None:
    refusal = upgrade_refusal(path, headers, PATHS)
    assert (refusal.status if refusal else None) == status
    if status == 426:
        assert refusal is not None
        assert (b"sec-websocket-version", b"13") in refusal.headers


def test_a_plain_request_for_a_websocket_path_is_426_with_upgrade() -> None:
    refusal = plain_request_refusal("/ws/echo", PATHS)
    assert refusal is not None
    assert refusal.status == 426
    assert (b"upgrade", b"websocket") in refusal.headers
    assert plain_request_refusal("/healthz", PATHS) is None


UPGRADE = (
    b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PING = b"\x89\x82abcd" + bytes(b ^ m for b, m in zip(b"pp", b"ab", strict=True))


def answer(protocol: AnswerFirstProtocol, data: bytes) -> bytes:
    protocol.receive_data(data)
    request = protocol.events_received()[0]
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    return b"".join(protocol.data_to_send())


def test_a_ping_with_the_request_is_answered_after_the_101() -> None:
    protocol = AnswerFirstProtocol()
    out = answer(protocol, UPGRADE + PING)
    assert out.startswith(b"HTTP/1.1 101")
    assert out.endswith(b"\x8a\x02pp")


def test_a_close_with_the_request_is_answered_after_the_101() -> None:
    protocol = AnswerFirstProtocol()
    close = b"\x88\x82\0\0\0\0\x03\xe8"
    out = answer(protocol, UPGRADE + close)
    assert out.startswith(b"HTTP/1.1 101")
    assert out.endswith(b"\x88\x02\x03\xe8")
    assert protocol.close_rcvd is not None


def test_more_than_max_held_before_the_answer_closes_1009() -> None:
    protocol = AnswerFirstProtocol()
    out = answer(protocol, UPGRADE + PING * (MAX_HELD // len(PING) + 1))
    assert out.startswith(b"HTTP/1.1 101")
    assert b"\x8a\x02pp" not in out  # nothing held was parsed
    assert out.endswith(b"\x03\xf1too much sent before the handshake was answered")  # 1009


def test_a_wrong_version_is_426_naming_13() -> None:
    protocol = AnswerFirstProtocol()
    protocol.receive_data(UPGRADE.replace(b"Version: 13", b"Version: 8"))
    request = protocol.events_received()[0]
    assert isinstance(request, Request)
    response = protocol.accept(request)
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"
