"""The echo panel's TLS and UDP counters in Chromium, against a real ``serve --tls self-signed``.

This module's server (not the package's shared one) has TLS echo, HTTPS and UDP echo on, and
``--udp-max-datagram 100`` so that one datagram can be dropped on purpose. Traffic is driven
with the standard library's sockets (TLS echo with ``ssl``, no verification: the certificate is
self-signed), and every number asserted is computed from what was sent.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from app.ready import Ready, parse_ready

from .harness import STARTUP_POLL, STARTUP_TIMEOUT, running_server

pytestmark = pytest.mark.browser

# The server's UDP echo drops datagrams larger than this (bytes).
UDP_MAX = 100


@pytest.fixture(scope="module")
def tls_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ready]:
    """``serve --tls self-signed`` with UDP on; its readiness lines (TLS and UDP included)."""
    workdir = tmp_path_factory.mktemp("serve-tls")
    tls = ("--tls", "self-signed", "--tls-port", "0", "--https-port", "0")
    with running_server(workdir, *tls, "--udp-max-datagram", str(UDP_MAX)):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (ready := parse_ready((workdir / "serve.stdout").read_text(), tls=True)) is None:
            assert time.monotonic() < deadline, "serve printed no TLS lines"
            time.sleep(STARTUP_POLL)
        assert ready.tls and ready.udp
        yield ready


@pytest.fixture(scope="module")
def server_url(tls_serve: Ready) -> str:
    """The page fixture (conftest.py) loads this module's server instead of the shared one."""
    return tls_serve.web


def address(host_port: str) -> tuple[str, int]:
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


def tls_echo(host_port: str, payload: bytes) -> ssl.SSLSocket:
    """A TLS echo connection that sent *payload* and read all of it back; left open."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed, made at start
    conn = ctx.wrap_socket(socket.create_connection(address(host_port), timeout=10))
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = conn.recv(65536)
        assert chunk, "closed before the whole echo came back"
        got += chunk
    assert got == payload
    return conn


def test_tls_and_udp_counters_follow_the_traffic(page: Page, tls_serve: Ready) -> None:
    # Nothing echoed yet: the TLS and UDP counters are there (their listeners are on), at zero.
    for testid in ("echo-tls", "echo-tls-bytes", "echo-udp", "echo-udp-datagrams"):
        expect(page.get_by_test_id(testid)).to_have_attribute("data-value", "0")
    expect(page.get_by_test_id("echo-udp-dropped")).to_have_attribute("data-value", "0")

    # Two TLS echo connections: 1000 and 500 bytes echoed, so 3000 bytes moved (in and out).
    first = tls_echo(tls_serve.tls, b"a" * 1000)
    second = tls_echo(tls_serve.tls, b"b" * 500)
    try:
        expect(page.get_by_test_id("echo-tls")).to_have_text("2")
        expect(page.get_by_test_id("echo-tls-bytes")).to_have_attribute("data-value", "3000")
        expect(page.get_by_test_id("echo-tls-bytes")).to_have_text("2.9 KiB")
        rows = page.locator('[data-testid="echo-conn"][data-transport="tls"]')
        expect(rows).to_have_count(2)
    finally:
        first.close()
        second.close()
    # Closed: none open, the bytes they moved stay in the total.
    expect(page.get_by_test_id("echo-tls")).to_have_text("0")
    expect(page.get_by_test_id("echo-tls-bytes")).to_have_attribute("data-value", "3000")

    # UDP: three datagrams echoed from one source, one too large for the server (dropped).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for n in range(3):
            message = f"datagram {n}".encode()
            sock.sendto(message, address(tls_serve.udp))
            assert sock.recv(UDP_MAX) == message
        sock.sendto(b"x" * (UDP_MAX + 1), address(tls_serve.udp))
        expect(page.get_by_test_id("echo-udp")).to_have_text("1")
        expect(page.get_by_test_id("echo-udp-datagrams")).to_have_text("3")
        expect(page.get_by_test_id("echo-udp-dropped")).to_have_text("1")
    # TLS totals are untouched by UDP traffic.
    expect(page.get_by_test_id("echo-tls-bytes")).to_have_attribute("data-value", "3000")
