"""The websocket opening handshake's rules that every path shares (pure: no trio, no sockets).

Rules of this module:

* A client may send frames in the same write as its upgrade request.  They
  belong after the handshake (RFC 6455 section 4.1: data frames follow a
  successful handshake), so no path parses them, or answers them, before its
  ``101`` is out: :class:`RequestHead` tells where the request head ends in a
  stream of chunks, so that the bytes after it can be held back.
* An upgrade request with a version other than 13 is refused with ``426`` and
  ``Sec-WebSocket-Version: 13`` (RFC 6455 sections 4.2.2 and 4.4); one whose
  ``Sec-WebSocket-Key`` is not the base64 of 16 bytes is refused with ``400``
  (section 4.2.1).  :class:`AnswerFirstProtocol` applies them on the paths
  served by websockets (whose own server answers a bad version with a bare
  400); :func:`upgrade_refusal` applies them in front of Hypercorn, which
  accepted any key.
"""

from __future__ import annotations

import binascii
import http
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from websockets.exceptions import InvalidHeader
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING, OPEN
from websockets.server import ServerProtocol

#: The only websocket version there is (RFC 6455 section 4.1).
WEBSOCKET_VERSION: Final = b"13"
#: Bytes held after an upgrade request until its answer is out (a few eager frames fit).
MAX_HELD: Final = 64 * 1024
# The empty line that ends a request head (RFC 9112 section 2.1).
_HEAD_END: Final = b"\r\n\r\n"


class RequestHead:
    """Finds the end of one HTTP request head in the chunks of a byte stream.

    Each chunk goes through :meth:`split`, which says which of its bytes are
    head and which come after; the split remembers the last three bytes, so an
    end that straddles two chunks is found too.
    """

    __slots__ = ("_tail", "complete")

    def __init__(self) -> None:
        self._tail = b""
        #: True once the head's end has been seen; every later byte is "after".
        self.complete = False

    def split(self, data: bytes) -> tuple[bytes, bytes]:
        """``(head part, after part)`` of *data*; the after part is empty until the end is seen."""
        if self.complete:
            return b"", data
        window = self._tail + data
        end = window.find(_HEAD_END)
        if end < 0:
            self._tail = window[-(len(_HEAD_END) - 1) :]
            return data, b""
        self.complete = True
        cut = end + len(_HEAD_END) - len(self._tail)
        return data[:cut], data[cut:]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to an upgrade request that cannot become a websocket."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def body(self) -> bytes:
        return f"{self.status} {self.reason}\n".encode()


#: A websocket's path asked for in HTTP/1.0 (RFC 6455 section 4.1 needs HTTP/1.1).
NEEDS_HTTP11: Final = Refusal(505, "a websocket needs HTTP/1.1")


def upgrade_refusal(
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
    websocket_paths: Iterable[str],
    http_version: bytes = b"1.1",
) -> Refusal | None:
    """The refusal of a websocket upgrade request for *path*, or None if it may go on.

    *headers* are the request's (name, value) pairs, names in any case.  Checked
    in this order: a path with no websocket endpoint (404, before anything about
    the handshake, like websockets' servers), HTTP/1.1 (505, RFC 6455 4.1),
    the version (426, RFC 6455 4.2.2), the key (400, RFC 6455 4.2.1).
    """
    if path not in websocket_paths:
        return Refusal(404, "no websocket endpoint here")
    if http_version != b"1.1":
        return NEEDS_HTTP11
    by_name = [(name.lower(), value.strip()) for name, value in headers]
    versions = [value for name, value in by_name if name == b"sec-websocket-version"]
    if versions != [WEBSOCKET_VERSION]:
        return Refusal(
            426,
            "only websocket version 13 is spoken here",
            ((b"sec-websocket-version", WEBSOCKET_VERSION),),
        )
    keys = [value for name, value in by_name if name == b"sec-websocket-key"]
    if len(keys) != 1 or not _is_key(keys[0]):
        return Refusal(400, "Sec-WebSocket-Key must be the base64 of 16 bytes")
    return None


def plain_request_refusal(
    path: str, websocket_paths: Iterable[str], http_version: bytes = b"1.1"
) -> Refusal | None:
    """The answer to a request without an upgrade for *path*, if *path* is a websocket's.

    ``426`` with ``Upgrade: websocket`` (RFC 9110 section 15.5.22), or ``505``
    to HTTP/1.0, as websockets' own server answers them.
    """
    if path not in websocket_paths:
        return None
    if http_version != b"1.1":
        return NEEDS_HTTP11
    return Refusal(426, "this is a websocket endpoint", ((b"upgrade", b"websocket"),))


def _is_key(key: bytes) -> bool:
    try:
        return len(b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


class AnswerFirstProtocol(ServerProtocol):
    """websockets' sans-IO server protocol, which parses no frame before its answer is queued.

    websockets parses the bytes after the request head at once: a ping that
    came with the request had its pong queued before the ``101``, and a close
    frame was ignored (the connection was still CONNECTING).  Here those
    bytes are held until :meth:`send_response`; after a ``101`` they are fed
    in, so their answers (pong, close) follow it and their events are in
    :meth:`events_received`, which the caller must read after sending the
    response; after a refusal they are dropped.

    Also answers a missing or wrong ``Sec-WebSocket-Version`` with ``426`` and
    ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.2.2), not websockets' 400.

    Bound: at most :data:`MAX_HELD` bytes are held; a client that sends more
    before its handshake is answered is closed with 1009 right after the ``101``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head = RequestHead()
        self._held = b""
        self._overflow = False

    def receive_data(self, data: bytes | bytearray) -> None:
        if self.state is CONNECTING:
            head, after = self._head.split(bytes(data))
            if len(self._held) + len(after) > MAX_HELD:
                self._overflow = True
            else:
                self._held += after
            if head:
                super().receive_data(head)
            return
        super().receive_data(data)

    def accept(self, request: Request) -> Response:
        response = super().accept(request)
        exc = self.handshake_exc
        if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version":
            response = self.reject(
                http.HTTPStatus.UPGRADE_REQUIRED,
                "Failed to open a WebSocket connection: only version 13 is spoken here.\n",
            )
            response.headers["Sec-WebSocket-Version"] = WEBSOCKET_VERSION.decode()
        return response

    def send_response(self, response: Response) -> None:
        super().send_response(response)
        held, self._held = self._held, b""
        if self.state is not OPEN:
            return
        if self._overflow:
            self.fail(CloseCode.MESSAGE_TOO_BIG, "too much sent before the handshake was answered")
        elif held:
            super().receive_data(held)
