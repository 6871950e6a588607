"""``/info``, ``ANY /echo`` and ``/ws/info`` show the PROXY protocol header the connection carried.

A real server with ``--proxy-protocol any`` and TLS; the client sends a v1 or
v2 header (PROXY with IPv4 or IPv6 and TLVs, or LOCAL) before HTTP or TLS, as
HAProxy's ``send-proxy`` / ``send-proxy-v2`` do.  The expected JSON is written
out by hand from the header the test builds, not derived by the parser under
test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import wsproto
import wsproto.events

from app.echo.proxy import build_v1, build_v2

from conftest import Running, start_server
from netclient import http_over
from tlshelp import CertFiles, start_tls_server

#: (header, the ``proxy`` field /info must show for it)
HEADERS = [
    pytest.param(
        build_v1(("203.0.113.7", 40000), ("192.0.2.1", 8443)),
        {
            "version": 1,
            "command": "PROXY",
            "family": "TCP4",
            "source": {"host": "203.0.113.7", "port": 40000},
            "destination": {"host": "192.0.2.1", "port": 8443},
            "tlvs": None,
        },
        id="v1-tcp4",
    ),
    pytest.param(
        build_v1(("2001:db8::7", 42000), ("2001:db8::1", 443)),
        {
            "version": 1,
            "command": "PROXY",
            "family": "TCP6",
            "source": {"host": "2001:db8::7", "port": 42000},
            "destination": {"host": "2001:db8::1", "port": 443},
            "tlvs": None,
        },
        id="v1-tcp6",
    ),
    pytest.param(
        # An ALPN TLV (0x01), an authority (0x02), a NOOP (0x04) and an empty custom one.
        build_v2(
            ("198.51.100.9", 41000),
            ("192.0.2.1", 8443),
            b"\x01\x00\x02h2" + b"\x02\x00\x09localhost" + b"\x04\x00\x03abc" + b"\xee\x00\x00",
        ),
        {
            "version": 2,
            "command": "PROXY",
            "family": "TCP4",
            "source": {"host": "198.51.100.9", "port": 41000},
            "destination": {"host": "192.0.2.1", "port": 8443},
            "tlvs": [
                {"type": 1, "value": "6832"},
                {"type": 2, "value": "6c6f63616c686f7374"},
                {"type": 4, "value": "616263"},
                {"type": 238, "value": ""},
            ],
        },
        id="v2-tcp4-tlvs",
    ),
    pytest.param(
        build_v2(("2001:db8::7", 42000), ("::1", 8443)),
        {
            "version": 2,
            "command": "PROXY",
            "family": "TCP6",
            "source": {"host": "2001:db8::7", "port": 42000},
            "destination": {"host": "::1", "port": 8443},
            "tlvs": [],
        },
        id="v2-tcp6",
    ),
    pytest.param(
        build_v2(None, None),
        {
            "version": 2,
            "command": "LOCAL",
            "family": "UNKNOWN",
            "source": None,
            "destination": None,
            "tlvs": [],
        },
        id="v2-local",
    ),
]


async def open_with_header(
    running: Running, files: CertFiles, secure: bool, header: bytes
) -> trio.abc.Stream:
    """A connection to the web port (or HTTPS, *secure*) that starts with *header*."""
    port = running.ports.https if secure else running.ports.http
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    await tcp.send_all(header)
    if not secure:
        return tcp
    ctx = files.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return trio.SSLStream(tcp, ctx, server_hostname="localhost", https_compatible=True)


async def ws_info(stream: trio.abc.Stream) -> dict[str, Any]:
    """``/ws/info``'s first message, through wsproto; then one echo, then a clean close."""
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    async with stream:
        await stream.send_all(ws.send(wsproto.events.Request(host="localhost", target="/ws/info")))
        texts: list[str] = []
        while len(texts) < 2:
            data = await stream.receive_some(65536)
            assert data, "closed before /ws/info answered"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.AcceptConnection):
                    await stream.send_all(ws.send(wsproto.events.TextMessage("ping")))
                elif isinstance(event, wsproto.events.TextMessage):
                    assert event.message_finished
                    texts.append(str(event.data))
        assert texts[1] == "ping"
        await stream.send_all(ws.send(wsproto.events.CloseConnection(code=1000)))
    info = json.loads(texts[0])
    assert isinstance(info, dict)
    return info


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
@pytest.mark.parametrize(("header", "expected"), HEADERS)
async def test_info_echo_and_ws_info_show_the_proxy_header(
    nursery: trio.Nursery,
    tmp_path: Path,
    secure: bool,
    header: bytes,
    expected: dict[str, Any],
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="any")
    with trio.fail_after(20):
        stream = await open_with_header(running, files, secure, header)
        status, _, body = await http_over(stream, "/info")
        assert status == 200
        info = json.loads(body)
        stream = await open_with_header(running, files, secure, header)
        status, _, body = await http_over(stream, "/echo", method="PURGE", body=b"x")
        assert status == 200
        echoed = json.loads(body)
        on_ws = await ws_info(await open_with_header(running, files, secure, header))
    for reply in (info, echoed, on_ws):
        assert reply["proxy"] == expected
        assert reply["server"]["listener"] == ("https" if secure else "web")
        if expected["source"] is not None:
            assert reply["client"] == expected["source"]  # the client the header carries
    assert echoed["body"] == "x" and echoed["request"]["method"] == "PURGE"
    assert on_ws["request"]["path"] == "/ws/info"


async def test_without_proxy_protocol_proxy_is_null(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", running.ports.http)
        status, _, body = await http_over(stream, "/info")
        echo_status, _, echo_body = await http_over(
            await trio.open_tcp_stream("127.0.0.1", running.ports.http), "/echo", method="POST"
        )
        on_ws = await ws_info(await trio.open_tcp_stream("127.0.0.1", running.ports.http))
    assert status == echo_status == 200
    for reply in (json.loads(body), json.loads(echo_body), on_ws):
        assert "proxy" in reply and reply["proxy"] is None
