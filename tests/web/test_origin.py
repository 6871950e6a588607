"""The Origin rule, as a pure function."""

from __future__ import annotations

import pytest

from app.web.origin import origin_allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "127.0.0.1:8000", frozenset(), True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", frozenset(), True),
        ("http://127.0.0.1:8000/", "127.0.0.1:8000", frozenset(), True),
        ("http://LOCALHOST:8000", "localhost:8000", frozenset(), True),
        ("http://localhost", "localhost:80", frozenset(), True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", frozenset(), False),
        ("http://localhost:8000", "127.0.0.1:8000", frozenset(), False),
        ("https://evil.example", "127.0.0.1:8000", frozenset(), False),
        ("null", "127.0.0.1:8000", frozenset(), False),
        ("http://[::1]:8000", "[::1]:8000", frozenset(), True),
        ("http://tools.example", "127.0.0.1:8000", frozenset({"http://tools.example"}), True),
        ("http://127.0.0.1:8000", None, frozenset(), False),
        ("http://127.0.0.1:99999", "127.0.0.1:99999", frozenset(), False),
    ],
)
def test_origin_allowed(
    origin: str | None, host: str | None, allowed: frozenset[str], ok: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is ok
