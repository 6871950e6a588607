"""TLS for our clients (``client --tls``, ``bench --tls``, ``wss://``): contexts, failures in
words, and a stream that half-closes.

Why not only ``trio.SSLStream``: it cannot half-close (no ``send_eof``), and
the piped client's contract is "send everything, say so, then read every
echoed byte".  TLS says "I am done sending" with ``close_notify`` (RFC 8446
section 6.1), after which the peer may still send; :class:`TlsClientStream`
drives an ``ssl.SSLObject`` over two ``MemoryBIO`` buffers to do exactly
that.  The bench, which never half-closes, uses ``trio.SSLStream``.
"""

from __future__ import annotations

import ssl
from typing import Final

import trio

# Largest single read from the socket.
RECV_SIZE = 64 * 1024
# OpenSSL's reasons when the other side does not speak TLS at all (a plain echo, an HTTP port).
NOT_TLS: Final = frozenset({"WRONG_VERSION_NUMBER", "UNEXPECTED_MESSAGE", "RECORD_LAYER_FAILURE"})


def client_context(*, insecure: bool = False, cafile: str = "") -> ssl.SSLContext:
    """A client context: the system's CAs, or *cafile*'s; *insecure* verifies nothing.

    Raises:
        OSError: *cafile* cannot be read or holds no certificate (``ssl.SSLError``).
    """
    ctx = ssl.create_default_context(cafile=cafile or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def handshake_failure(exc: trio.BrokenResourceError) -> str:
    """Why a handshake failed, in words: ``certificate verify failed: self-signed certificate``.

    *exc* is what :meth:`TlsClientStream.do_handshake` or ``trio.SSLStream``
    raised; the ``ssl.SSLError`` behind it (its ``__cause__``) says why.
    """
    cause = exc.__cause__
    verify = getattr(cause, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify} (--cafile FILE trusts it, --insecure skips)"
    reason = getattr(cause, "reason", None)
    if reason is None:
        return str(exc)
    hint = " (is it a TLS port?)" if reason in NOT_TLS else ""
    return str(reason).replace("_", " ").lower() + hint


class TlsClientStream(trio.abc.HalfCloseableStream):
    """A TLS client over *transport*, which can send ``close_notify`` and keep reading.

    One task may send while another receives: only the sending side
    (:meth:`send_all`, :meth:`send_eof`, the handshake) writes to the socket.

    :meth:`receive_some` returns ``b""`` once the server's ``close_notify``
    came, and raises :class:`trio.BrokenResourceError` on a TCP close without
    one (a truncation) or a TLS error.
    """

    def __init__(self, transport: trio.SocketStream, ctx: ssl.SSLContext, server_name: str) -> None:
        self.transport = transport
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)

    async def do_handshake(self) -> None:
        """Do the handshake (verifying the server as the context says).

        Raises:
            trio.BrokenResourceError: it failed (the cause says why: a
                certificate that does not verify, an alert, a closed socket).
        """
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
            else:
                await self._flush()
                return

    @property
    def certificate(self) -> bytes | None:
        """The server's certificate (DER) once handshaken, verified or not."""
        return self._tls.getpeercert(binary_form=True)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Send ``close_notify``; reading goes on until the server's."""
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # the server's close_notify has not come yet: that is the half-close
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            try:
                return self._tls.read(max_bytes or RECV_SIZE)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLWantReadError:
                await self._fill()
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self.transport.send_all(data)

    async def _fill(self) -> None:
        data = await self.transport.receive_some(RECV_SIZE)
        if not data:
            raise trio.BrokenResourceError("the server closed the connection without close_notify")
        self._in.write(data)
