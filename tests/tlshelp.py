"""TLS for the tests: a certificate made per test, client contexts, a half-closing client."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from app.bench.load import Plan, run_bench
from app.bench.stats import Summary
from app.certs import make_self_signed
from app.child import self_command
from app.echo.proxy import build_v1, build_v2
from app.ready import Ready, parse_ready
from app.tlsclient import TlsClientStream

from conftest import Running, start_server

#: The PROXY headers a balancer may send before TLS (HAProxy's ``send-proxy`` and
#: ``send-proxy-v2``, whose health checks are LOCAL), each with the client it carries
#: as ``(host, port)`` and as the feed's ``peer``; None: LOCAL keeps the socket's address.
PROXY_BEFORE_TLS = [
    pytest.param(
        build_v1(("203.0.113.7", 40000), ("127.0.0.1", 8443)),
        ("203.0.113.7", 40000),
        "203.0.113.7:40000",
        id="v1-tcp4",
    ),
    pytest.param(
        build_v2(("198.51.100.9", 41000), ("127.0.0.1", 8443)),
        ("198.51.100.9", 41000),
        "198.51.100.9:41000",
        id="v2-tcp4",
    ),
    pytest.param(
        build_v2(("2001:db8::7", 42000), ("::1", 8443), b"\x04\x00\x03abc"),  # and a TLV
        ("2001:db8::7", 42000),
        "[2001:db8::7]:42000",
        id="v2-tcp6",
    ),
    pytest.param(build_v2(None, None), None, None, id="v2-local"),
]


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path

    def client_context(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        """A client context that trusts this certificate (and only it)."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        for name, value in versions.items():
            setattr(ctx, name, value)
        return ctx


def write_cert(folder: Path, host: str = "127.0.0.1") -> CertFiles:
    cert_pem, key_pem = make_self_signed(host)
    files = CertFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.key.chmod(0o600)
    return files


class TlsPipe(TlsClientStream):
    """The client's half-closing TLS stream, with test conveniences."""

    @classmethod
    async def connect(
        cls, port: int, ctx: ssl.SSLContext, server_name: str = "localhost"
    ) -> TlsPipe:
        pipe = cls(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_name)
        try:
            await pipe.do_handshake()
        except BaseException:
            await pipe.aclose()
            raise
        return pipe

    async def __aenter__(self) -> TlsPipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def read_all(self) -> bytes:
        chunks = []
        while data := await self.receive_some():
            chunks.append(data)
        return b"".join(chunks)


async def bench_exactly(plan: Plan) -> Summary:
    """Run *plan* (a TLS or wss:// ping-pong) and check what every ping-pong bench must show:
    every connection up, no error (one wrong byte is a ``mismatch``), and exactly ``size``
    bytes each way per message."""
    with trio.fail_after(30):
        summary = await run_bench(plan, lambda line: None)
    assert summary.established == plan.connections
    assert summary.errors == {}
    assert summary.messages > 0
    assert summary.bytes == summary.messages * plan.size * 2
    return summary


async def start_tls_server(
    nursery: trio.Nursery, folder: Path, **overrides: object
) -> tuple[Running, CertFiles]:
    """A test server with TLS on (ephemeral TLS and HTTPS ports), and its certificate."""
    files = write_cert(folder)
    running = await start_server(
        nursery,
        tls_cert=str(files.cert),
        tls_key=str(files.key),
        tls_port=0,
        https_port=0,
        **overrides,
    )
    return running, files


async def start_tls_serve(cwd: Path, *args: str) -> tuple[trio.Process, Ready, bytes]:
    """``trio-echo serve`` with ``--tls self-signed`` on ephemeral ports, as a process.

    Returns the process (stdout and stderr piped; the caller stops it), its
    readiness lines parsed, and everything it printed so far.
    """
    serve = ["serve", "--tcp-port", "0", "--http-port", "0", "--tls-port", "0"]
    serve += ["--https-port", "0", "--tls", "self-signed", *args]
    proc = await trio.lowlevel.open_process(
        self_command(*serve), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd
    )
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(30):
        while (ready := parse_ready(out, tls=True)) is None:
            chunk = await proc.stdout.receive_some(1000)
            assert chunk, f"serve exited early: {out!r}"
            out += chunk
    return proc, ready, out
