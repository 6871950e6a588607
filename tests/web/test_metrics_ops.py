"""``GET /metrics`` for TLS echo, UDP echo and the PROXY protocol, scraped from a real serve.

One ``trio-echo serve --tls self-signed --proxy-protocol any`` (a child process,
ephemeral ports, UDP on the TCP echo's port) per TCP engine; real clients drive
each counter a known number of times, then the text is read back with
``prometheus_client``'s own parser and every value is checked exactly.  Each
client waits for the server's answer (an echo, or the close) before the next
step, so the count has been made when the scrape is served.  Only 127.0.0.1 is
trusted to send a PROXY header; connections from 127.0.0.2 are the untrusted
ones (the whole 127/8 is loopback on Linux).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from app.echo.proxy import build_v1, build_v2
from app.ready import Ready
from app.tlsclient import client_context

from conftest import ENGINES
from netclient import http_over
from tlshelp import start_tls_serve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

MAX_DATAGRAM = 1000  # --udp-max-datagram: a 1001-byte datagram is dropped as oversize
HANDSHAKE_TIMEOUT = 2.0  # --tls-handshake-timeout: short, yet far above a loaded handshake
UNTRUSTED = "127.0.0.2"
CLIENT = ("203.0.113.7", 40000)  # the client a header carries
INSECURE: ssl.SSLContext = client_context(insecure=True)


async def connect(port: int, header: bytes = b"", source: str = "127.0.0.1") -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    if header:
        await stream.send_all(header)
    return stream


async def until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    """What the server sends until it closes (or resets) the connection."""
    got = b""
    try:
        while data := await stream.receive_some(65536):
            got += data
    except trio.BrokenResourceError:
        pass  # reset: closed all the same
    return got


async def tls_echo(port: int, payload: bytes) -> None:
    stream = trio.SSLStream(
        await connect(port, build_v2(CLIENT, ("127.0.0.1", port))), INSECURE, server_hostname="x"
    )
    async with stream:
        await stream.send_all(payload)
        got = b""
        while len(got) < len(payload):
            got += await stream.receive_some(65536)
        assert got == payload


async def scrape(ready: Ready) -> Samples:
    """``/metrics`` over HTTPS, after a PROXY v1 header (the web port wants one too)."""
    port = ready.https_port
    tcp = await connect(port, build_v1(CLIENT, ("127.0.0.1", port)))
    stream = trio.SSLStream(tcp, INSECURE, server_hostname="x", https_compatible=True)
    status, headers, body = await http_over(stream, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.mark.parametrize("engine", ENGINES)
async def test_tls_udp_and_proxy_series_count_exactly(tmp_path: Path, engine: str) -> None:
    proc, ready, _ = await start_tls_serve(
        tmp_path,
        "--engine",
        engine,
        "--proxy-protocol",
        "any",
        "--proxy-trusted",
        "127.0.0.1/32",
        "--udp-max-datagram",
        str(MAX_DATAGRAM),
        "--tls-handshake-timeout",
        str(HANDSHAKE_TIMEOUT),
    )
    try:
        with trio.fail_after(60):
            m = await drive(ready)
    finally:
        proc.kill()
        await proc.wait()

    def value(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    # TLS echo: two echoes of 9 bytes on two connections, both closed by now.
    assert value("trio_echo_connections_accepted_total", transport="tls") == 2
    assert value("trio_echo_connections_refused_total", transport="tls") == 0
    assert value("trio_echo_echo_bytes_total", transport="tls") == 2 * 9 * 2
    assert value("trio_echo_echo_messages_total", transport="tls") == 2
    # Handshakes: echo 2 done, 1 failed (plain text), 1 timed out; https 1 done (this scrape).
    for listener, result, count in [
        ("echo", "done", 2),
        ("echo", "failed", 1),
        ("echo", "timed_out", 1),
        ("https", "done", 1),
        ("https", "failed", 0),
        ("https", "timed_out", 0),
    ]:
        assert value("trio_echo_tls_handshakes_total", listener=listener, result=result) == count
    # UDP: 3 datagrams echoed (4 + 4 + 4 bytes each way), 1 oversize dropped; one source.
    assert value("trio_echo_echo_bytes_total", transport="udp") == 3 * 4 * 2
    assert value("trio_echo_echo_messages_total", transport="udp") == 3
    assert value("trio_echo_udp_sources") == 1
    for reason, count in [
        ("oversize", 1),
        ("source_bound", 0),  # loopback is exempt from the rate bounds (--udp-rate-exempt)
        ("global_bound", 0),
        ("send_failed", 0),
    ]:
        assert value("trio_echo_udp_dropped_datagrams_total", reason=reason) == count
    assert ("trio_echo_connections_open", (("transport", "udp"),)) not in m  # no connections
    # PROXY: headers accepted on tcp (1 echo), tls (2 echoes, the failed and the timed-out
    # handshake), web (this scrape); refusals by listener and reason.
    for listener, accepted, untrusted, invalid in [
        ("tcp", 1, 1, 2),
        ("tls", 4, 1, 1),
        ("web", 1, 1, 0),
    ]:
        assert value("trio_echo_proxy_headers_accepted_total", listener=listener) == accepted
        refused = "trio_echo_proxy_refused_connections_total"
        assert value(refused, listener=listener, reason="untrusted") == untrusted
        assert value(refused, listener=listener, reason="invalid") == invalid
    assert value("trio_echo_echo_bytes_total", transport="tcp") == 3 * 2


async def drive(ready: Ready) -> Samples:
    """Drive every counter the test checks, then scrape."""
    tls, tcp, web = ready.tls_port, ready.tcp_port, ready.web_port
    # TLS echo, twice.
    await tls_echo(tls, b"hello tls")
    await tls_echo(tls, b"again tls")
    # A handshake that fails: plain HTTP after a good PROXY header.
    async with await connect(tls, build_v1(CLIENT, ("127.0.0.1", tls))) as plain:
        await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await until_closed(plain)
    # One that times out: a header, then silence until the server gives up.
    async with await connect(tls, build_v1(CLIENT, ("127.0.0.1", tls))) as silent:
        await until_closed(silent)
    # TCP echo behind a header; a garbled header; a header cut short by FIN.
    async with await connect(tcp, build_v1(CLIENT, ("127.0.0.1", tcp)) + b"abc") as ok:
        assert await ok.receive_some(10) == b"abc"
    async with await connect(tcp, b"HELLO there\r\n") as bad:
        assert await until_closed(bad) == b""
    async with await connect(tcp, b"PROXY TCP4 203.0") as cut:
        await cut.send_eof()
        assert await until_closed(cut) == b""
    # A garbled header before TLS.
    async with await connect(tls, b"\x16\x03\x01 not a header\r\n") as bad_tls:
        assert await until_closed(bad_tls) == b""
    # Untrusted: closed at accept on each listener.
    for port in (tcp, tls, web):
        async with await connect(port, build_v1(CLIENT, ("127.0.0.1", port)), UNTRUSTED) as s:
            assert await until_closed(s) == b""
    await udp_echo(ready)
    return await scrape(ready)


async def udp_echo(ready: Ready) -> None:
    """Three datagrams echoed and one oversize dropped; the last echo proves it was seen."""
    host, port = ready.udp.rsplit(":", 1)
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect((host.strip("[]"), int(port)))
        for payload in (b"one!", b"two!", b"x" * (MAX_DATAGRAM + 1), b"end!"):
            await sock.send(payload)
            if len(payload) <= MAX_DATAGRAM:
                assert await sock.recv(65536) == payload
