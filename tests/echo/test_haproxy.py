"""Real HAProxy in front of the server: ``send-proxy`` (v1) and ``send-proxy-v2``.

HAProxy (Debian's ``haproxy``) is started by the test with a generated
configuration on loopback ports, in front of the TCP echo port, the web
port, and (TLS passed through, the header before it) the TLS echo and HTTPS
ports.  The client connects from 127.0.0.2, HAProxy from 127.0.0.1: the
address the server reports (the feed's ``conn_open``) must be the client's.
Skipped when ``/usr/sbin/haproxy`` is absent, except under ``CI=true``, where
that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from app.feed.events import ConnOpen

from conftest import ENGINES, Running, read_all, wait_until
from netclient import http_over
from tlshelp import CertFiles, TlsPipe, start_tls_server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT_HOST = "127.0.0.2"


@pytest.fixture
def haproxy_binary() -> str:
    if not Path(HAPROXY).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{HAPROXY} is missing and CI is set: install Debian's haproxy")
        pytest.skip("haproxy is not installed")
    return HAPROXY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(targets: dict[str, int], fronts: dict[str, int]) -> str:
    """One frontend and backend per entry of *fronts*: ``echo_v1`` goes to ``targets["echo"]``
    with ``send-proxy``, ``https_v2`` to ``targets["https"]`` with ``send-proxy-v2``, and so on."""
    text = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""
    for name, port in fronts.items():
        target = targets[name.rsplit("_", 1)[0]]
        option = "send-proxy" if name.endswith("v1") else "send-proxy-v2"
        if name == "echo_v2":
            # Health checks with the header: v2 sends them as LOCAL, which must be accepted.
            option += " check check-send-proxy inter 200ms"
        text += f"""frontend {name}
    bind 127.0.0.1:{port}
    default_backend {name}
backend {name}
    server {name} 127.0.0.1:{target} {option}
"""
    return text


#: Each front, named for the port it goes to and the header HAProxy puts before the stream.
FRONTS = ("echo_v1", "echo_v2", "web_v1", "web_v2", "tls_v1", "tls_v2", "https_v1", "https_v2")


@pytest.fixture(params=ENGINES)
async def behind_haproxy(
    request: pytest.FixtureRequest, nursery: trio.Nursery, haproxy_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[Running, dict[str, int], CertFiles]]:
    """A server with TLS (its TLS echo engine follows the engine), behind HAProxy."""
    running, files = await start_tls_server(
        nursery, tmp_path, engine=request.param, proxy_protocol="any"
    )
    ports = running.ports
    targets = {"echo": ports.tcp, "web": ports.http, "tls": ports.tls, "https": ports.https}
    fronts = {name: free_port() for name in FRONTS}
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config(targets, fronts))
    proc = await trio.lowlevel.open_process(
        [haproxy_binary, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        with trio.fail_after(10):
            for port in fronts.values():
                while True:
                    assert proc.returncode is None, "haproxy exited at start"
                    try:
                        await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                        break
                    except OSError:
                        await trio.sleep(0.05)
        yield running, fronts, files
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def from_client_host(port: int) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((CLIENT_HOST, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


def opens(running: Running, cursor: int, transport: str) -> list[ConnOpen]:
    events = running.events[cursor:]
    assert isinstance(events, list)
    return [e for e in events if isinstance(e, ConnOpen) and e.transport == transport]


@pytest.mark.parametrize("front", ["echo_v1", "echo_v2", "tls_v1", "tls_v2"])
async def test_echo_behind_haproxy_sees_the_client(
    behind_haproxy: tuple[Running, dict[str, int], CertFiles], front: str
) -> None:
    """TCP echo, and TLS echo passed through (the handshake follows the header): exact,
    half-closed (FIN, or close_notify), and the connection is the client's."""
    running, fronts, files = behind_haproxy
    transport = "tls" if front.startswith("tls") else "tcp"
    cursor = len(running.events)
    payload = os.urandom(200_000)
    with trio.fail_after(15):
        tcp = await from_client_host(fronts[front])
        client_port = tcp.socket.getsockname()[1]
        stream: trio.abc.HalfCloseableStream = tcp
        if transport == "tls":
            pipe = TlsPipe(tcp, files.client_context(), "localhost")
            await pipe.do_handshake()
            stream = pipe
        async with stream, trio.open_nursery() as nursery:

            async def send() -> None:
                await stream.send_all(payload)
                await stream.send_eof()

            nursery.start_soon(send)
            assert await read_all(stream) == payload
        mine = f"{CLIENT_HOST}:{client_port}"
        await wait_until(lambda: any(e.peer == mine for e in opens(running, cursor, transport)))
    assert running.hub.proxy_refusals.total == 0


async def test_haproxy_v2_health_checks_are_accepted(
    behind_haproxy: tuple[Running, dict[str, int], CertFiles],
) -> None:
    running, _, _ = behind_haproxy
    cursor = len(running.events)
    with trio.fail_after(15):
        # Checks every 200 ms: a few come in, from HAProxy itself, none refused.
        await wait_until(lambda: len(opens(running, cursor, "tcp")) >= 3)
    assert all(e.peer.startswith("127.0.0.1:") for e in opens(running, cursor, "tcp"))
    assert running.hub.proxy_refusals.total == 0


@pytest.mark.parametrize("front", ["web_v1", "web_v2"])
async def test_web_behind_haproxy_sees_the_client(
    behind_haproxy: tuple[Running, dict[str, int], CertFiles], front: str
) -> None:
    running, fronts, _ = behind_haproxy
    cursor = len(running.events)
    with trio.fail_after(15):
        stream = await from_client_host(fronts[front])
        client_port = stream.socket.getsockname()[1]
        async with stream:
            # A plain HTTP request first: the header must not eat a byte of it.
            request = (
                "GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await stream.send_all(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
        mine = f"{CLIENT_HOST}:{client_port}"
        await wait_until(lambda: any(e.peer == mine for e in opens(running, cursor, "ws")))
    assert running.hub.proxy_refusals.total == 0


@pytest.mark.parametrize("front", ["https_v1", "https_v2"])
async def test_https_behind_haproxy_sees_the_client(
    behind_haproxy: tuple[Running, dict[str, int], CertFiles], front: str
) -> None:
    running, fronts, files = behind_haproxy
    ctx = files.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with trio.fail_after(15):
        tcp = await from_client_host(fronts[front])
        client_port = tcp.socket.getsockname()[1]
        stream = trio.SSLStream(tcp, ctx, server_hostname="localhost", https_compatible=True)
        status, _, body = await http_over(stream, "/info")
    assert status == 200, body
    info = json.loads(body)
    assert info["client"] == {"host": CLIENT_HOST, "port": client_port}
    assert info["server"]["listener"] == "https"
    assert running.hub.proxy_refusals.total == 0
