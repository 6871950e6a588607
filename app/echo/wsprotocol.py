"""The RFC 6455 / RFC 7692 rules that both websockets-library paths share (no I/O here).

The multiplexed ``/ws/echo`` engine (:mod:`app.echo.websocket`) and the
websockets Trio shell (:mod:`app.web.wstrio`) both run the websockets
library's sans-IO :class:`~websockets.server.ServerProtocol`.  This module
gives them :class:`StrictServerProtocol`, which fixes the two places where
that protocol object answers differently from the RFC; the
permessage-deflate offer they accept, bounded by :class:`DeflateSettings`;
and :func:`shared_text_frame`, one compression of a feed batch for every
subscriber.

What the subclass changes (issue 12), and nothing else:

* RFC 6455 section 5.4: "Control frames MAY be injected in the middle of a
  fragmented message."  websockets 17 fails a close frame that arrives
  between fragments with 1002 ("incomplete fragmented message").  A close
  there ends the connection the normal way: the close frame is echoed (the
  code the peer sent, or an empty frame for an empty one) and nothing more
  is sent; bytes after it are discarded (section 1.4).  Pings and pongs
  between fragments were already answered.
* RFC 6455 section 8.1: a text message that is not UTF-8 fails the
  connection with 1007.  websockets checks a fragmented message when it is
  whole (the assembler decodes it); here each fragment goes through an
  incremental decoder as it is parsed, so a bad byte in the first fragment
  of a 1 MiB message closes the connection at once, not a megabyte later.
  The granularity is the frame: the library parses a frame only when all of
  it has arrived (a frame is bounded by ``--max-message-size``).  A single
  unfragmented text frame is checked by the consumer, which decodes it
  anyway (the engine's echo, the Trio connection's ``recv``): checking it
  here too would decode every text message twice.

Compression bombs: the library's ``PerMessageDeflate.decode`` inflates a
frame with ``max_length`` set to what is left of ``max_size`` for the
message and raises ``PayloadTooBig`` (close 1009) if more would come out, so
a small frame that inflates past ``--max-message-size`` costs at most that
much memory.  ``tests/web/test_ws_rfc.py`` proves it on every engine.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from app.config import Settings
from app.echo.handshake import AnswerFirstProtocol
from app.feed.batches import SharedText

_UTF8Decoder: Final = codecs.getincrementaldecoder("utf-8")
# Messages shorter than this are compressed by each connection, with its window of earlier
# messages: a small feed batch compressed alone shrinks ~2x, with the window ~3.5x, and costs
# little either way.  Longer ones compress about as well alone (4.2x vs 4.4x at 100 events)
# and cost ~1 ms per 60 KiB: those are compressed once for every subscriber.
MIN_SHARED_SIZE: Final = 8 * 1024
_TEXT: Final = Opcode.TEXT
_CONT: Final = Opcode.CONT
_CLOSE: Final = Opcode.CLOSE


@dataclass(frozen=True, slots=True)
class DeflateSettings:
    """How permessage-deflate (RFC 7692) is offered back to a client, if at all.

    *window_bits* bounds both LZ77 windows: ours (``server_max_window_bits``,
    which the client must then use to inflate) and the client's
    (``client_max_window_bits``, when the client says it can honour it; one
    that does not may use 15 bits, and we inflate with a 32 KiB window).
    *mem_level* is our compressor's zlib memLevel.  zlib's own formula for
    the cost: deflate ``2**(bits+2) + 2**(level+9)`` bytes, inflate
    ``2**bits`` plus ~7 KiB: 12 / 5 is ~50 KiB per connection (docs/limits.md).
    """

    enabled: bool = True
    window_bits: int = 12
    mem_level: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> DeflateSettings:
        """The ``--ws-compression`` / ``--ws-deflate-*`` settings."""
        return cls(
            enabled=settings.ws_compression == "deflate",
            window_bits=settings.ws_deflate_window_bits,
            mem_level=settings.ws_deflate_mem_level,
        )

    def factories(self) -> list[ServerExtensionFactory]:
        """The extensions a websockets ``ServerProtocol`` may accept; none when disabled."""
        if not self.enabled:
            return []
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=self.window_bits,
                client_max_window_bits=self.window_bits,
                compress_settings={"memLevel": self.mem_level},
            )
        ]


def can_share(protocol: ServerProtocol) -> bool:
    """Whether :func:`shared_text_frame` can serve this connection: deflate and nothing else."""
    extensions = protocol.extensions
    return len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate)


def shared_text_frame(protocol: ServerProtocol, message: SharedText) -> bytes | None:
    """*message* as one compressed text frame for this connection, or None to send it normally.

    A message compressed alone (a fresh compressor, no reference to earlier
    messages) is valid permessage-deflate whether or not context takeover was
    negotiated: RFC 7692 7.2.3 lets a sender use the previous window, it does
    not make it.  So one compression, with the negotiated window bits, serves
    every connection that negotiated deflate and nothing else.  The
    connection's own compressor must then forget its window, because the
    peer's now holds the shared message after it: it is replaced by a fresh
    one here, so the caller must send the frame returned.

    None (send it the usual way, compressed by the connection if at all): no
    deflate, another extension too, or a message under :data:`MIN_SHARED_SIZE`.
    """
    if len(message.data) < MIN_SHARED_SIZE or not can_share(protocol):
        return None
    ext = protocol.extensions[0]
    assert isinstance(ext, PerMessageDeflate)
    settings = ext.compress_settings
    payload = message.deflated(ext.local_max_window_bits, settings.get("memLevel", 8))
    if not ext.local_no_context_takeover:
        ext.encoder = zlib.compressobj(wbits=-ext.local_max_window_bits, **settings)
    n = len(payload)
    # FIN, RSV1 (compressed, RFC 7692 6), opcode text; a server never masks (RFC 6455 5.1).
    first = 0x80 | 0x40 | int(Opcode.TEXT)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


class StrictServerProtocol(AnswerFirstProtocol):
    """websockets' ``ServerProtocol`` with RFC 6455 sections 5.4 and 8.1 to the letter.

    Built on :class:`~app.echo.handshake.AnswerFirstProtocol` (the handshake is
    answered before any frame that came with it is parsed, and a wrong version
    gets 426), which changes only the opening handshake; this class changes only
    frame handling.  Same constructor; see the module docstring for what differs.  Errors are
    raised from :meth:`recv_frame` inside the library's parser, which turns
    them into the close codes (``UnicodeDecodeError`` -> 1007), exactly as
    for its own checks.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The decoder of the fragmented text message being received, if any.
        self._utf8: codecs.IncrementalDecoder | None = None

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _CONT:
            decoder = self._utf8
            if decoder is not None:
                # Raises UnicodeDecodeError at the first bad byte: 1007.
                decoder.decode(frame.data, frame.fin)
                if frame.fin:
                    self._utf8 = None
        elif opcode is _TEXT:
            if not frame.fin and self.current_size is None:
                decoder = _UTF8Decoder()
                decoder.decode(frame.data, False)
                self._utf8 = decoder
        elif opcode is _CLOSE and self.current_size is not None:
            # A close between fragments abandons the message (RFC 6455 5.4,
            # 7.1.4): what follows is the normal closing handshake.
            self.current_size = None
            self._utf8 = None
        super().recv_frame(frame)
