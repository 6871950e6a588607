"""Where the web front sends a connection, by its first bytes (pure, no sockets)."""

from __future__ import annotations

import pytest

from app.web.front import Route, route_of


@pytest.mark.parametrize(
    ("head", "route"),
    [
        (b"GET /ws/echo HTTP/1.1", Route.ECHO),
        (b"GET /ws/echo?x=1 HTT", Route.ECHO),
        (b"GET /ws/echoes HTTP", Route.WEBSOCKET),
        (b"GET /ws/events HTT", Route.WEBSOCKET),
        (b"GET / HTTP/1.1\r\n\r\n", Route.HTTP),
        (b"POST /ws/echo HTTP", Route.HTTP),
        (b"PRI * HTTP/2.0", Route.HTTP),
        (b"G", None),
        (b"GET /ws/", None),
        (b"GET /ws/echo", None),
    ],
)
def test_route_of(head: bytes, route: Route | None) -> None:
    assert route_of(head) is route
