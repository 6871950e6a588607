"""What both multiplexed engines share: non-blocking sockets on one private epoll, each a Conn.

:class:`~app.echo.epoll.EpollEngine` (TCP) and
:class:`~app.echo.websocket.WsEchoEngine` (websocket) each serve every
connection from one Trio task that waits for a private epoll object to become
readable.  Their hot loops differ (raw bytes against websocket frames); the
life of a connection around the loop does not, and lives here: registering a
socket, switching it between reading and draining a pending write, and
dropping it (unregister, close, tell the table) exactly once, however it
ends.

Rules: no awaiting here.  Every method is a plain call made from the
engine's task, between two of its checkpoints.
"""

from __future__ import annotations

import select
import socket
from typing import Final, Generic, TypeVar

from app.echo.conns import Conn, ConnTable
from app.errors import PEER_GONE

#: Poll a socket for reading (nothing pending) or for writing (a write is pending).
POLL_IN: Final = select.EPOLLIN
POLL_OUT: Final = select.EPOLLOUT

# Ready sockets served per wake-up before yielding to the other Trio tasks.
# At ~5 us per echo that is ~2.5 ms of loop time at most.
MAX_EVENTS: Final = 512


class Link:
    """A connection as a multiplexed engine sees it: a socket, its Conn, a pending write."""

    __slots__ = ("conn", "pending", "sock", "unlinked")

    def __init__(self, sock: socket.socket, conn: Conn) -> None:
        self.sock = sock
        self.conn = conn
        #: Bytes to send that the socket did not take yet; while set, the socket is not read.
        self.pending: memoryview | None = None
        #: Set once dropped, so that a second drop (a timeout after a reset) does nothing.
        self.unlinked = False


L = TypeVar("L", bound=Link)


class Multiplexed(Generic[L]):
    """The connections of one engine, by file descriptor, on the engine's epoll object.

    The engine sets :attr:`_epoll` for as long as its task runs and calls
    :meth:`drop_all` on the way out.
    """

    def __init__(self, table: ConnTable) -> None:
        self._table = table
        self._links: dict[int, L] = {}
        self._epoll: select.epoll | None = None

    def _register(self, link: L) -> None:
        """Start reading *link*."""
        fd = link.sock.fileno()
        self._links[fd] = link
        assert self._epoll is not None, "the engine must run before connections are added"
        self._epoll.register(fd, POLL_IN)

    def _poll_for(self, link: L, events: int) -> None:
        """Switch *link* between reading (``POLL_IN``) and draining its write (``POLL_OUT``)."""
        assert self._epoll is not None
        self._epoll.modify(link.sock.fileno(), events)

    def _park(self, link: L, rest: memoryview) -> None:
        """The socket took only part of a write: keep *rest* and wait for room, not for reads."""
        link.pending = rest
        self._poll_for(link, POLL_OUT)

    def _flush(self, link: L) -> int | None:
        """The socket became writable: send what is pending; return how much it took.

        Once all of it is out the socket is read again.  ``None`` means the
        connection was lost (and dropped).
        """
        pending = link.pending
        assert pending is not None
        sent = self._send(link, pending)
        if not sent:
            return sent
        if sent < len(pending):
            link.pending = pending[sent:]
        else:
            link.pending = None
            self._poll_for(link, POLL_IN)
        return sent

    def _recv(self, link: L, buf: bytearray) -> int | None:
        """Read what *link*'s socket has into *buf*: the byte count, 0 at EOF.

        ``None``: nothing to read after all (would block), or the connection
        was lost, and is dropped.
        """
        try:
            return link.sock.recv_into(buf)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._lost(link, exc)
            return None

    def _send(self, link: L, data: bytes | memoryview) -> int | None:
        """Send what *link*'s socket takes of *data* now: the byte count, 0 if it is full.

        ``None``: the connection was lost, and is dropped.
        """
        try:
            return link.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._lost(link, exc)
            return None

    def _lost(self, link: L, exc: OSError) -> None:
        """A socket call failed: that connection alone ends, with one log line (the table's)."""
        self._drop(link, self._table.socket_failed(link.conn, exc, gone=isinstance(exc, PEER_GONE)))

    def _drop(self, link: L, reason: str) -> None:
        """Close the socket now and forget the connection.  Idempotent."""
        if link.unlinked:
            return
        link.unlinked = True
        fd = link.sock.fileno()
        del self._links[fd]
        if self._epoll is not None:
            self._epoll.unregister(fd)
        link.sock.close()
        self._table.close(link.conn, reason)
        self._dropped(link)

    def _dropped(self, link: L) -> None:
        """Called once per connection after it is closed; engines add their own goodbyes."""

    def drop_all(self, reason: str = "shutdown") -> None:
        """Close every connection now, without a goodbye."""
        for link in list(self._links.values()):
            self._drop(link, reason)
