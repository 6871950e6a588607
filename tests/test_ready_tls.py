"""Issue 11's readiness lines: the TLS ones after the web line, parsed by the one parser."""

from __future__ import annotations

from app.ready import parse_ready, ready_lines

FINGERPRINT = ":".join(["AB"] * 32)


def test_tls_lines_round_trip() -> None:
    text = ready_lines(
        "127.0.0.1:8001",
        "http://127.0.0.1:8000",
        tls_address="127.0.0.1:8002",
        https_url="https://127.0.0.1:8443",
        fingerprint=FINGERPRINT,
        self_signed=True,
    )
    assert text.splitlines() == [
        "tcp echo listening on 127.0.0.1:8001",
        "web listening on http://127.0.0.1:8000",
        "tls echo listening on 127.0.0.1:8002",
        "web listening on https://127.0.0.1:8443",
        f"tls certificate SHA-256 {FINGERPRINT} (self-signed, made at start)",
    ]
    ready = parse_ready(text, tls=True)
    assert ready is not None
    assert (ready.tcp_port, ready.web_port, ready.tls_port, ready.https_port) == (
        8001,
        8000,
        8002,
        8443,
    )
    assert ready.fingerprint == FINGERPRINT


def test_waiting_for_tls_lines_returns_none_until_they_are_whole() -> None:
    text = ready_lines(
        "[::1]:1",
        "http://[::1]:2",
        tls_address="[::1]:3",
        https_url="https://[::1]:4",
        fingerprint=FINGERPRINT,
    )
    cut = text[: text.rindex("tls certificate") + 10]
    assert parse_ready(cut, tls=True) is None
    plain = parse_ready(cut)  # the first two lines are enough for callers that want only them
    assert plain is not None and plain.tcp == "[::1]:1" and plain.tls == ""
    whole = parse_ready(text, tls=True)
    assert whole is not None and whole.https == "https://[::1]:4"


def test_without_tls_nothing_changes() -> None:
    text = ready_lines("127.0.0.1:8001", "http://127.0.0.1:8000")
    assert text.count("\n") == 2
    assert parse_ready(text, tls=True) is None
