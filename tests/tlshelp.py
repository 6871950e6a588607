"""TLS for the tests: a certificate made per test, client contexts, and a client with half-close.

``trio.SSLStream`` cannot half-close (it has no ``send_eof``), so :class:`TlsPipe`
drives an ``ssl.SSLObject`` by hand: it can send ``close_notify`` and keep
reading, which is how TLS says "I am done sending" (RFC 8446 section 6.1).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from app.certs import make_self_signed

from conftest import Running, start_server


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


class TlsPipe:
    """A TLS client over a Trio socket stream, with half-close.

    One task may send while another receives: only :meth:`send` and
    :meth:`close_notify` write to the socket.
    """

    def __init__(self, stream: trio.SocketStream, ctx: ssl.SSLContext, server_name: str) -> None:
        self.stream = stream
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)

    @classmethod
    async def connect(
        cls, port: int, ctx: ssl.SSLContext, server_name: str = "localhost"
    ) -> TlsPipe:
        pipe = cls(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_name)
        try:
            await pipe.handshake()
        except BaseException:
            await pipe.aclose()
            raise
        return pipe

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> TlsPipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self.stream.send_all(data)

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("TCP EOF")
        self._in.write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            else:
                await self._flush()
                return

    async def send(self, data: bytes | memoryview) -> None:
        self.obj.write(data)
        await self._flush()

    async def close_notify(self) -> None:
        """Send close_notify; reading goes on."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify has not come yet: that is the half-close
        await self._flush()

    async def receive(self) -> bytes:
        """Decrypted bytes; b"" once the peer's close_notify came.

        Raises:
            EOFError: the TCP connection ended without close_notify.
        """
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLWantReadError:
                await self._fill()

    async def read_all(self) -> bytes:
        chunks = []
        while data := await self.receive():
            chunks.append(data)
        return b"".join(chunks)


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
