"""The info routes (issue 11): what a tester of a proxy or load balancer asks an echo server.

* ``GET /info``: JSON describing the request as this server saw it::

      {"client":  {"host": "127.0.0.1", "port": 51234},
       "server":  {"host": "127.0.0.1", "port": 8443, "pid": 4242, "worker": 0,
                   "listener": "https"},
       "tls":     {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                   "sni": "localhost", "alpn": "h2"}  or null,
       "request": {"method": "GET", "path": "/info", "query": "a=1",
                   "headers": {"host": "localhost:8443", ...}},
       "proxy":   {"version": 2, "command": "PROXY", "family": "TCP4",
                   "source": {"host": "203.0.113.7", "port": 40000},
                   "destination": {"host": "192.0.2.1", "port": 443},
                   "tlvs": [{"type": 4, "value": "616263"}]}  or null}

  ``proxy`` is the PROXY protocol header this connection started with (null
  without one: ``--proxy-protocol off``).  ``source``/``destination`` are
  null when it carries no IP address (LOCAL, v1 UNKNOWN, v2 UNSPEC or UNIX);
  ``tlvs`` (type, value in hex, in the order sent) is null for v1, which has
  none, and bounded with the header (4,096 bytes of addresses and TLVs).

* ``ANY /echo`` (any method, also ones this server has never heard of): the
  same, plus ``body`` (the request body, UTF-8 text, or base64 when it is not
  UTF-8, saying which in ``body_encoding``).  The body is bounded by
  :data:`MAX_ECHO_BODY`; over it the answer is ``413`` and nothing is echoed.
* ``/ws/info`` (websocket): the same JSON (without a body) as the first
  message, then every message is echoed back as it came, text as text.

Where the fields come from: ``client`` is the ASGI scope's ``client``, which
the web front sets for each connection (the address a PROXY protocol header
carries, when one is in use, so it is this one place that knows the client);
``listener``, ``tls`` and ``proxy`` come from the scope's ``state``, which the
front fills per connection (:data:`STATE_LISTENER`, :data:`STATE_TLS`,
:data:`STATE_PROXY`).

Header values are decoded as Latin-1 (RFC 9110 section 5.5: field values are
octets; Latin-1 keeps each one).  Names are lower-case (as HTTP/2 sends them);
a header sent more than once is one entry, its values joined by ``", "`` in
the order received (RFC 9110 section 5.3).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.echo.proxy import ProxyHeader
from app.feed.events import TlsInfo
from app.units import MiB

#: Key of the per-connection state (ASGI scope ``state``) naming the listener: ``web``,
#: ``worker web`` or ``https``.
STATE_LISTENER: Final = "trio_echo.listener"
#: Key of the per-connection state holding the connection's :class:`TlsInfo`, or None.
STATE_TLS: Final = "trio_echo.tls"
#: Key of the per-connection state holding its :class:`~app.echo.proxy.ProxyHeader`, or None.
STATE_PROXY: Final = "trio_echo.proxy"

# Largest request body /echo sends back.  1 MiB, like the websocket message
# bound: enough for any test payload, small enough that a hundred at once fit.
MAX_ECHO_BODY: Final = 1 * MiB


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """Who answers: this process's ``pid`` and its ``worker`` number (0 unless ``--workers``)."""

    pid: int
    worker: int


def describe_request(scope: Scope, identity: ServerIdentity) -> dict[str, Any]:
    """The info reply for one HTTP or websocket request (the shape is in the module docstring)."""
    state = scope.get("state") or {}
    tls = state.get(STATE_TLS)
    client = scope.get("client")
    server = scope.get("server")
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {
        "client": {"host": client[0], "port": client[1]} if client else None,
        "server": {
            "host": server[0] if server else None,
            "port": server[1] if server else None,
            "pid": identity.pid,
            "worker": identity.worker,
            "listener": state.get(STATE_LISTENER, "web"),
        },
        "tls": msgspec.structs.asdict(tls) if isinstance(tls, TlsInfo) else None,
        "request": {
            "method": scope.get("method", "GET"),
            "path": scope.get("path", ""),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
        },
        "proxy": describe_proxy(state.get(STATE_PROXY)),
    }


def describe_proxy(header: object) -> dict[str, Any] | None:
    """The ``proxy`` field: the PROXY header *header* as JSON, or None when it is not one."""
    if not isinstance(header, ProxyHeader):
        return None

    def address(pair: tuple[str, int] | None) -> dict[str, Any] | None:
        return {"host": pair[0], "port": pair[1]} if pair else None

    return {
        "version": header.version,
        "command": header.command.name,
        "family": header.family,
        "source": address(header.source),
        "destination": address(header.destination),
        "tlvs": [{"type": t, "value": v.hex()} for t, v in header.tlvs]
        if header.version == 2
        else None,
    }


def info_endpoint(identity: ServerIdentity) -> Callable[[Request], Any]:
    """``GET /info``."""

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(describe_request(request.scope, identity))

    return info


class EchoApp:
    """``ANY /echo``: an ASGI app, not a Starlette function endpoint, so that every method is
    answered (a tester's proxy may send ``PURGE`` or ``PROPFIND``)."""

    def __init__(self, identity: ServerIdentity) -> None:
        self._identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ECHO_BODY:
            await _too_large(scope, receive, send)
            return
        body = bytearray()
        async with contextlib.aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_ECHO_BODY:
                    break
        if len(body) > MAX_ECHO_BODY:
            await _too_large(scope, receive, send)
            return
        reply = describe_request(scope, self._identity)
        try:
            reply["body"] = body.decode("utf-8")
            reply["body_encoding"] = "utf-8"
        except UnicodeDecodeError:
            reply["body"] = base64.b64encode(body).decode("ascii")
            reply["body_encoding"] = "base64"
        await JSONResponse(reply)(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(
        f"request body over {MAX_ECHO_BODY} bytes\n",
        status_code=413,
        media_type="text/plain",
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


def ws_info_endpoint(identity: ServerIdentity) -> Callable[[WebSocket], Any]:
    """``/ws/info``: the info JSON first, then an echo of every message."""

    async def ws_info(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(describe_request(ws.scope, identity))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await ws.send_text(message["text"])
                elif message.get("bytes") is not None:
                    await ws.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return

    return ws_info
