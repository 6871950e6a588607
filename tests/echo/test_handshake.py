"""The handshake rules every websocket path shares (pure, no sockets)."""

from __future__ import annotations

import pytest

from app.echo.handshake import RequestHead, plain_request_refusal, upgrade_refusal

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
