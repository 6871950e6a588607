"""The info routes and the HTTPS/WSS listener (issue 11), over real sockets.

``/info``, ``/echo`` and ``/ws/info`` on the plain web port and over TLS
(HTTP/1.1 and HTTP/2 by ALPN); WSS from the websockets library's client; the
web listener's handshake bound.  Loopback, port 0, ``fail_after`` everywhere.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import pytest
import trio
from websockets.trio.client import connect as ws_connect

from app.feed.events import ConnOpen
from app.web.info import MAX_ECHO_BODY

from conftest import Running, wait_until
from netclient import http_over
from tlshelp import PROXY_BEFORE_TLS, CertFiles, start_tls_server


@pytest.fixture
async def tls(nursery: trio.Nursery, tmp_path: Path) -> tuple[Running, CertFiles]:
    return await start_tls_server(nursery, tmp_path)


async def open_https(
    port: int, files: CertFiles, alpn: list[str], server_name: str = "localhost"
) -> trio.SSLStream[trio.SocketStream]:
    ctx = files.client_context()
    ctx.set_alpn_protocols(alpn)
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, ctx, server_hostname=server_name, https_compatible=True)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def http1(
    stream: trio.abc.Stream,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    declare_only: bool = False,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on *stream* (closed after): ``(status, body)``."""
    status, _, received = await http_over(
        stream, target, method=method, headers=headers, body=body, declare_only=declare_only
    )
    return status, received


async def h2_get(stream: trio.SSLStream[trio.SocketStream], path: str) -> tuple[int, bytes]:
    """One HTTP/2 GET on a stream whose ALPN chose h2: ``(status, body)``."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost")],
        end_stream=True,
    )
    await stream.send_all(conn.data_to_send())
    status = 0
    body = b""
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            assert data, "closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
            await stream.send_all(conn.data_to_send())


def local_port(stream: trio.abc.Stream) -> int:
    sock_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    assert isinstance(sock_stream, trio.SocketStream)
    return int(sock_stream.socket.getsockname()[1])


async def test_info_over_plain_http(running: Running) -> None:
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", running.ports.http)
        port = local_port(stream)
        status, body = await http1(stream, "/info?a=1&b=two", headers=[("X-Probe", "one")])
    assert status == 200
    info = json.loads(body)
    assert info["client"] == {"host": "127.0.0.1", "port": port}
    assert info["server"] == {
        "host": "127.0.0.1",
        "port": running.ports.http,
        "pid": os.getpid(),
        "worker": 0,
        "listener": "web",
    }
    assert info["tls"] is None
    assert info["request"]["method"] == "GET"
    assert info["request"]["path"] == "/info"
    assert info["request"]["query"] == "a=1&b=two"
    assert info["request"]["headers"]["x-probe"] == "one"
    assert info["request"]["headers"]["host"] == "localhost"


async def test_info_over_https_http1(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    with trio.fail_after(10):
        stream = await open_https(running.ports.https, files, ["http/1.1"])
        port = local_port(stream)
        status, body = await http1(stream, "/info")
    assert status == 200
    info = json.loads(body)
    assert info["client"] == {"host": "127.0.0.1", "port": port}
    assert info["server"]["listener"] == "https"
    assert info["server"]["port"] == running.ports.https
    tls_info = info["tls"]
    assert tls_info["version"] == "TLSv1.3"
    assert tls_info["cipher"].startswith("TLS_")
    assert tls_info["sni"] == "localhost"
    assert tls_info["alpn"] == "http/1.1"
    assert running.hub.handshakes["web"].done == 1


async def test_info_over_https_h2_by_alpn(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    with trio.fail_after(10):
        stream = await open_https(running.ports.https, files, ["h2", "http/1.1"])
        assert stream.selected_alpn_protocol() == "h2"
        status, body = await h2_get(stream, "/info?via=h2")
    assert status == 200
    info = json.loads(body)
    assert info["tls"]["alpn"] == "h2"
    assert info["request"]["path"] == "/info"
    assert info["request"]["query"] == "via=h2"


async def test_info_without_alpn_or_sni(tls: tuple[Running, CertFiles]) -> None:
    """A client that offers no ALPN speaks HTTP/1.1; one that sends no SNI gets null."""
    running, files = tls
    ctx = files.client_context()
    ctx.check_hostname = False  # no server_hostname: no SNI
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream("127.0.0.1", running.ports.https)
        stream = trio.SSLStream(tcp, ctx, https_compatible=True)
        status, body = await http1(stream, "/info")
    assert status == 200
    info = json.loads(body)
    assert info["tls"]["sni"] is None
    assert info["tls"]["alpn"] is None


@pytest.mark.parametrize("over", ["http", "https"])
async def test_echo_returns_the_body_with_the_info(
    over: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path)

    async def open_stream() -> trio.abc.Stream:
        if over == "http":
            return await trio.open_tcp_stream("127.0.0.1", running.ports.http)
        return await open_https(running.ports.https, files, ["http/1.1"])

    with trio.fail_after(10):
        status, body = await http1(
            await open_stream(), "/echo?x=1", method="POST", body=b"hi \xe2\x9c\x93"
        )
        assert status == 200
        info = json.loads(body)
        assert info["body"] == "hi ✓" and info["body_encoding"] == "utf-8"
        assert info["request"]["method"] == "POST"
        assert info["request"]["query"] == "x=1"
        assert (info["tls"] is None) == (over == "http")

        binary = bytes(range(256))
        status, body = await http1(await open_stream(), "/echo", method="PUT", body=binary)
        info = json.loads(body)
        assert info["body_encoding"] == "base64"
        assert base64.b64decode(info["body"]) == binary

        # Any method, also ones no standard defines: proxies forward them.
        status, body = await http1(await open_stream(), "/echo", method="PURGE")
        assert status == 200
        assert json.loads(body)["request"]["method"] == "PURGE"


async def test_echo_body_at_the_bound_is_echoed_and_over_it_is_413(running: Running) -> None:
    port = running.ports.http
    with trio.fail_after(30):
        exact = b"a" * MAX_ECHO_BODY
        status, body = await http1(
            await trio.open_tcp_stream("127.0.0.1", port), "/echo", method="POST", body=exact
        )
        assert status == 200
        assert len(json.loads(body)["body"]) == MAX_ECHO_BODY
        # Declared too large: refused before reading it.
        status, _ = await http1(
            await trio.open_tcp_stream("127.0.0.1", port),
            "/echo",
            method="POST",
            body=exact + b"a",
            declare_only=True,
        )
        assert status == 413
        # Chunked, so the size shows only while reading: refused once it passes the bound.
        status, _ = await http1(
            await trio.open_tcp_stream("127.0.0.1", port),
            "/echo",
            method="POST",
            headers=[("Transfer-Encoding", "chunked")],
            body=exact + b"a",
        )
        assert status == 413


async def ws_info_round(url: str, ctx: ssl.SSLContext | None) -> dict[str, Any]:
    async with ws_connect(url, ssl=ctx, open_timeout=10) as ws:
        info = json.loads(await ws.recv())
        await ws.send("text ✓")
        assert await ws.recv() == "text ✓"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
    assert isinstance(info, dict)
    return info


async def test_ws_info_plain_and_wss(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    with trio.fail_after(20):
        plain = await ws_info_round(f"ws://127.0.0.1:{running.ports.http}/ws/info?p=1", None)
        secure = await ws_info_round(
            f"wss://localhost:{running.ports.https}/ws/info", files.client_context()
        )
    assert plain["tls"] is None
    assert plain["request"]["path"] == "/ws/info"
    assert plain["request"]["query"] == "p=1"
    assert plain["request"]["headers"]["upgrade"] == "websocket"
    assert plain["server"]["listener"] == "web"
    assert secure["tls"]["sni"] == "localhost"
    assert secure["tls"]["version"] == "TLSv1.3"
    assert secure["server"]["listener"] == "https"
    assert secure["client"]["host"] == "127.0.0.1"


@pytest.mark.parametrize("ws_engine", ["epoll", "fast", "asgi"])
async def test_wss_echo_and_events_from_a_real_client(
    ws_engine: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, ws_engine=ws_engine)
    cursor = running.hub.feed.last_seq
    base = f"wss://localhost:{running.ports.https}"
    ctx = files.client_context()
    big = os.urandom(512 * 1024)
    with trio.fail_after(20):
        async with ws_connect(f"{base}/ws/echo", ssl=ctx, open_timeout=10) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(big)
            assert await ws.recv() == big
        async with ws_connect(f"{base}/ws/events", ssl=ctx, open_timeout=10) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello"
    # The feed's conn_open for the wss:// echo carries what the handshake agreed on.
    opens = [e for e in running.events if e.seq > cursor and isinstance(e, ConnOpen)]
    assert [(o.transport, o.tls and o.tls.sni, o.tls and o.tls.version) for o in opens] == [
        ("ws", "localhost", "TLSv1.3")
    ]


async def test_https_page_and_healthz(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    with trio.fail_after(10):
        status, body = await http1(await open_https(running.ports.https, files, ["http/1.1"]), "/")
        assert status == 200 and b"<html" in body.lower()
        status, body = await http1(
            await open_https(running.ports.https, files, ["http/1.1"]), "/healthz"
        )
    health = json.loads(body)
    assert health["tls"]["handshakes"]["web"]["done"] == 2


async def test_https_failed_and_slow_handshakes_are_counted_and_others_go_on(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="app.web.front")
    running, files = await start_tls_server(nursery, tmp_path, tls_handshake_timeout=0.3)
    port = running.ports.https
    counts = running.hub.handshakes["web"]
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as garbage:
            await garbage.send_all(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
            try:
                while await garbage.receive_some(1000):
                    pass  # an alert, perhaps
            except trio.BrokenResourceError:
                pass  # reset: it had bytes we never read
        await wait_until(lambda: counts.failed == 1)
        async with await trio.open_tcp_stream("127.0.0.1", port) as silent:
            assert await silent.receive_some(1000) == b""
        assert counts.timed_out == 1
        status, _ = await http1(await open_https(port, files, ["http/1.1"]), "/info")
        assert status == 200
    messages = [r for r in caplog.records if r.name == "app.web.front" and "handshake" in r.msg]
    assert len(messages) == 2 and all(r.levelname == "DEBUG" for r in messages)


async def test_plain_http_on_the_https_port_is_told_to_use_https(
    tls: tuple[Running, CertFiles],
) -> None:
    running, _ = tls
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.https) as plain:
            await plain.send_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while data := await plain.receive_some(1000):
                answer += data
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"this is an HTTPS port: use https:// or wss://\n"
    assert f"Content-Length: {len(body)}".encode() in head
    assert running.hub.handshakes["web"].failed == 1


async def test_https_keep_alive_serves_several_requests_on_one_connection(
    tls: tuple[Running, CertFiles],
) -> None:
    """The first request's bytes, read to route the connection, are replayed to Hypercorn;
    the following requests on the same connection are read as usual."""
    running, files = tls
    with trio.fail_after(10):
        stream = await open_https(running.ports.https, files, ["http/1.1"])
        conn = h11.Connection(h11.CLIENT)
        async with stream:
            for i in range(3):
                request = h11.Request(
                    method="GET", target=f"/info?n={i}", headers=[("Host", "localhost")]
                )
                await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                assert json.loads(body)["request"]["query"] == f"n={i}"
                conn.start_next_cycle()
    assert running.hub.handshakes["web"].done == 1


async def test_https_over_the_web_limit_is_closed_at_accept(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, max_web_connections=1)
    with trio.fail_after(10):
        holder = await open_https(running.ports.https, files, ["http/1.1"])
        async with holder:
            with pytest.raises(trio.BrokenResourceError):
                await open_https(running.ports.https, files, ["http/1.1"])
        assert running.hub.handshakes["web"].done == 1


@pytest.mark.parametrize(("header", "client", "peer"), PROXY_BEFORE_TLS)
async def test_info_over_https_behind_a_proxy_header_shows_the_carried_client(
    nursery: trio.Nursery,
    tmp_path: Path,
    header: bytes,
    client: tuple[str, int] | None,
    peer: str | None,
) -> None:
    """The front reads the PROXY header before the TLS handshake; /info's client is the one
    the header carries (the ASGI scope's client, set by the front), a LOCAL header's the
    socket's own."""
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="any")
    ctx = files.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream("127.0.0.1", running.ports.https)
        host, port = tcp.socket.getsockname()[:2] if client is None else client
        await tcp.send_all(header)
        stream = trio.SSLStream(tcp, ctx, server_hostname="localhost", https_compatible=True)
        status, body = await http1(stream, "/info")
    assert status == 200
    info = json.loads(body)
    assert info["client"] == {"host": host, "port": port}
    assert info["tls"]["sni"] == "localhost"
    assert info["server"]["listener"] == "https"
