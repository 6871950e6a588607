"""The PROXY protocol header (HAProxy's spec, versions 1 and 2), parsed without I/O.

A load balancer in front of a server loses the client's address: the server
sees the balancer's.  The PROXY protocol puts it back: the balancer sends one
header before the first byte of the client's stream, the text form (v1,
``PROXY TCP4 203.0.113.7 192.0.2.1 56324 8001\\r\\n``) or the binary one (v2, a
12-byte signature, then version/command, family/transport, a length, the
addresses and optional TLVs).  Source: https://www.haproxy.org/download/2.9/doc/
proxy-protocol.txt, sections 2.1 (v1) and 2.2 (v2).

Rules of this module (after h11):

* No sockets and no trio.  :func:`parse` takes the bytes received so far and
  returns a :class:`ProxyHeader`, or :data:`NEED_DATA` while the header is
  not whole, or raises :class:`ProxyProtocolError` as soon as the bytes
  cannot become a valid header (no waiting for bytes that would change
  nothing).  A shell feeds it what it reads and closes the connection on an
  error, with one log line.
* Every length is bounded: a v1 line by the spec's 107 bytes, a v2 header by
  :data:`MAX_V2_PAYLOAD`.  TLVs are walked (each must fit) and skipped.
* Who may send a header is policy, not parsing: :class:`ProxyPolicy` says
  which versions are accepted and from which networks (``--proxy-protocol``,
  ``--proxy-trusted``).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import struct
from dataclasses import dataclass
from typing import Final, Literal

from app.config import PROXY_MODES, ConfigError, Network, address_in, parse_networks

log = logging.getLogger(__name__)

# v1 (section 2.1): "PROXY " then the rest of the line; the longest valid line,
# "PROXY UNKNOWN" with two IPv6 addresses and ports, is 107 bytes with its CRLF.
V1_PREFIX: Final = b"PROXY "
V1_MAX_LENGTH: Final = 107
# v2 (section 2.2): the 12-byte signature, then 4 bytes: version/command,
# family/transport, and the length (big-endian) of what follows.
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16
# The spec allows 65,535 bytes after the fixed part; real senders need the
# addresses (at most 216 bytes, AF_UNIX) plus a few TLVs (SSL details, a
# unique id, cloud endpoint ids: a few hundred bytes).  4 KiB holds every
# real header; a longer one is refused, so a connection holds at most this much.
MAX_V2_PAYLOAD: Final = 4096
#: The longest header accepted, in bytes: what a reader may have to buffer.
MAX_HEADER: Final = V2_FIXED + MAX_V2_PAYLOAD

_V2_INET: Final = struct.Struct("!4s4sHH")  # 12 bytes
_V2_INET6: Final = struct.Struct("!16s16sHH")  # 36 bytes
_TLV_HEAD: Final = 3  # type (1 byte) and length (2 bytes)
# Family/transport byte of v2: the high nibble is the family, the low one the transport.
_FAMILY_UNSPEC, _FAMILY_INET, _FAMILY_INET6, _FAMILY_UNIX = 0x0, 0x1, 0x2, 0x3
_TRANSPORTS: Final = frozenset({0x0, 0x1, 0x2})  # UNSPEC, STREAM, DGRAM


class ProxyProtocolError(ValueError):
    """The first bytes are not a valid PROXY header (of an accepted version).

    The message says what was expected and what came, for the one log line;
    the shell closes the connection.
    """


class NeedData(enum.Enum):
    """The sentinel type of :data:`NEED_DATA` (h11's spelling)."""

    #: The bytes so far are a valid beginning: read more and parse again.
    NEED_DATA = "need data"


NEED_DATA: Final = NeedData.NEED_DATA


class Command(enum.Enum):
    """What the sender says about the connection (v2 byte 13's low nibble; v1 is always PROXY)."""

    #: Relayed for a client: the addresses are the client's and the balancer's.
    PROXY = "proxy"
    #: The balancer's own connection (a health check): use the socket's addresses.
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A whole, valid header.

    *family* uses v1's names for both versions: ``TCP4``, ``TCP6``, or
    ``UNKNOWN`` (v1 UNKNOWN, v2 UNSPEC or AF_UNIX: no IP address carried, the
    socket's address stands).  *source*/*destination* are ``(host, port)``
    or None when not carried.  *length* is the header's size in bytes: what
    the stream must skip before its payload.  *tlvs* are a v2 PROXY header's
    type-length-value fields as ``(type, value)``, in the order sent (v1 has
    none; a LOCAL header's are discarded with its addresses, section 2.2);
    bounded with the header by :data:`MAX_V2_PAYLOAD`.
    """

    version: int
    command: Command
    family: str
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse(data: bytes | bytearray | memoryview, versions: frozenset[int]) -> ProxyHeader | NeedData:
    """Parse the header at the start of *data* (the connection's first bytes).

    Args:
        data: everything received so far; bytes after the header are ignored.
        versions: the versions accepted, a subset of ``{1, 2}``.

    Returns:
        The header (its :attr:`~ProxyHeader.length` says where the payload
        starts), or :data:`NEED_DATA` when *data* is a valid beginning.

    Raises:
        ProxyProtocolError: *data* cannot start a valid header of an accepted
            version (also: v1 line over 107 bytes, v2 longer than
            :data:`MAX_V2_PAYLOAD`, a bad address, a TLV that overruns).
    """
    head = bytes(data[:MAX_HEADER])
    if 2 in versions and _may_start(head, V2_SIGNATURE):
        return _parse_v2(head) if len(head) >= len(V2_SIGNATURE) else NEED_DATA
    if 1 in versions and _may_start(head, V1_PREFIX):
        return _parse_v1(head) if len(head) >= len(V1_PREFIX) else NEED_DATA
    wanted = " or ".join(f"v{v}" for v in sorted(versions))
    raise ProxyProtocolError(f"expected a PROXY protocol {wanted} header, got {head[:16]!r}")


def _may_start(head: bytes, prefix: bytes) -> bool:
    """*head* is *prefix*, a beginning of it, or starts with it."""
    n = min(len(head), len(prefix))
    return head[:n] == prefix[:n]


def _parse_v1(head: bytes) -> ProxyHeader | NeedData:
    end = head.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(head) >= V1_MAX_LENGTH or b"\n" in head[:V1_MAX_LENGTH]:
            raise ProxyProtocolError(
                f"v1 header has no CRLF within {V1_MAX_LENGTH} bytes: {head[:V1_MAX_LENGTH]!r}"
            )
        return NEED_DATA
    line = head[len(V1_PREFIX) : end]
    length = end + 2
    parts = line.split(b" ")
    family = parts[0]
    if family == b"UNKNOWN":
        # Section 2.1: the receiver ignores the rest of the line and uses the socket's addresses.
        return ProxyHeader(1, Command.PROXY, "UNKNOWN", None, None, length)
    if family not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"v1 header: expected TCP4, TCP6 or UNKNOWN, got {family!r}")
    if len(parts) != 5:
        raise ProxyProtocolError(f"v1 header: expected 5 fields separated by one space: {line!r}")
    kind = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    source = (_v1_address(parts[1], kind), _v1_port(parts[3]))
    destination = (_v1_address(parts[2], kind), _v1_port(parts[4]))
    return ProxyHeader(1, Command.PROXY, family.decode(), source, destination, length)


def _v1_address(text: bytes, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    try:
        return str(kind(text.decode("ascii")))
    except ValueError:  # UnicodeDecodeError is one
        raise ProxyProtocolError(f"v1 header: {text!r} is not an {kind.__name__}") from None


def _v1_port(text: bytes) -> int:
    # Section 2.1: a decimal number 0..65535, no sign, no leading zero.
    if not text.isdigit() or (len(text) > 1 and text[0:1] == b"0") or int(text) > 65535:
        raise ProxyProtocolError(f"v1 header: {text!r} is not a port")
    return int(text)


def _parse_v2(head: bytes) -> ProxyHeader | NeedData:
    if head[: len(V2_SIGNATURE)] != V2_SIGNATURE:
        raise ProxyProtocolError("v2 header: bad signature")
    if len(head) < V2_FIXED:
        return NEED_DATA
    version, command_bits = head[12] >> 4, head[12] & 0x0F
    if version != 2:
        raise ProxyProtocolError(f"v2 header: version {version}, expected 2")
    if command_bits == 0x0:
        command = Command.LOCAL
    elif command_bits == 0x1:
        command = Command.PROXY
    else:
        raise ProxyProtocolError(f"v2 header: unknown command {command_bits:#x}")
    family_bits, transport = head[13] >> 4, head[13] & 0x0F
    if family_bits > _FAMILY_UNIX or transport not in _TRANSPORTS:
        raise ProxyProtocolError(f"v2 header: unknown family/transport {head[13]:#04x}")
    payload = int.from_bytes(head[14:16], "big")
    if payload > MAX_V2_PAYLOAD:
        raise ProxyProtocolError(
            f"v2 header: {payload} bytes of addresses and TLVs, over the {MAX_V2_PAYLOAD} accepted"
        )
    length = V2_FIXED + payload
    if len(head) < length:
        return NEED_DATA
    body = head[V2_FIXED:length]
    if command is Command.LOCAL:
        # Section 2.2: a LOCAL connection's addresses (if any) are ignored.
        return ProxyHeader(2, Command.LOCAL, "UNKNOWN", None, None, length)
    if family_bits == _FAMILY_INET:
        layout, family, kind = _V2_INET, "TCP4", ipaddress.IPv4Address
    elif family_bits == _FAMILY_INET6:
        layout, family, kind = _V2_INET6, "TCP6", ipaddress.IPv6Address  # type: ignore[assignment]
    else:
        # UNSPEC or AF_UNIX: nothing an IP server can show; the socket's addresses stand.
        tlvs = _tlvs(body, _unix_size(family_bits))
        return ProxyHeader(2, Command.PROXY, "UNKNOWN", None, None, length, tlvs)
    if payload < layout.size:
        raise ProxyProtocolError(
            f"v2 header: {payload} bytes cannot hold {family} addresses ({layout.size})"
        )
    src, dst, sport, dport = layout.unpack_from(body)
    source, destination = (str(kind(src)), sport), (str(kind(dst)), dport)
    return ProxyHeader(
        2, Command.PROXY, family, source, destination, length, _tlvs(body, layout.size)
    )


def _unix_size(family_bits: int) -> int:
    return 216 if family_bits == _FAMILY_UNIX else 0


def _tlvs(body: bytes, start: int) -> tuple[tuple[int, bytes], ...]:
    """The TLVs after the addresses (section 2.2.7), each ``(type, value)``; each must fit."""
    found = []
    at = min(start, len(body))
    while at < len(body):
        if len(body) - at < _TLV_HEAD:
            raise ProxyProtocolError("v2 header: a TLV is cut off")
        end = at + _TLV_HEAD + int.from_bytes(body[at + 1 : at + 3], "big")
        if end > len(body):
            raise ProxyProtocolError("v2 header: a TLV runs past the header's length")
        found.append((body[at], body[at + _TLV_HEAD : end]))
        at = end
    return tuple(found)


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """Which headers a listener requires, and from whom (``--proxy-protocol``, ``--proxy-trusted``).

    With a policy, every connection must start with a valid header of an
    accepted version and come from a trusted network; anything else is
    closed.  (A header from an untrusted peer would let anyone pick the
    address the server logs.)
    """

    versions: frozenset[int]
    trusted: tuple[Network, ...]

    def trusts(self, host: str) -> bool:
        """Whether *host* (the socket's peer address, text) may send a header."""
        return address_in(host, self.trusted)

    def parse(self, data: bytes | bytearray | memoryview) -> ProxyHeader | NeedData:
        """:func:`parse` with this policy's versions."""
        return parse(data, self.versions)


def proxy_policy(mode: str, trusted: str) -> ProxyPolicy | None:
    """The policy for ``--proxy-protocol MODE`` and ``--proxy-trusted CIDRS``; None when off.

    Raises:
        ConfigError: an unknown mode or a malformed network.
    """
    trusted_networks = parse_networks(trusted, "--proxy-trusted")  # checked even when off
    if mode == "off":
        return None
    versions = {"v1": frozenset({1}), "v2": frozenset({2}), "any": frozenset({1, 2})}.get(mode)
    if versions is None:
        raise ConfigError(
            f"--proxy-protocol: expected one of {', '.join(PROXY_MODES)}, got {mode!r}"
        )
    return ProxyPolicy(versions, trusted_networks)


def build_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header for a TCP connection from *source* to *destination* (client side)."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def build_v2(
    source: tuple[str, int] | None, destination: tuple[str, int] | None, tlvs: bytes = b""
) -> bytes:
    """A v2 header: PROXY over TCP from *source* to *destination*, or LOCAL when both are None."""
    if source is None or destination is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + len(tlvs).to_bytes(2, "big") + tlvs
    ip = ipaddress.ip_address(source[0])
    six = isinstance(ip, ipaddress.IPv6Address)
    layout = _V2_INET6 if six else _V2_INET
    body = layout.pack(
        ip.packed, ipaddress.ip_address(destination[0]).packed, source[1], destination[1]
    )
    body += tlvs
    family: Literal[0x11, 0x21] = 0x21 if six else 0x11
    return V2_SIGNATURE + bytes([0x21, family]) + len(body).to_bytes(2, "big") + body


class HeaderReader:
    """The first bytes of one connection, gathered until its header is whole (sans-IO).

    Feed it each read with :meth:`receive_data`; once it returns the header,
    :attr:`leftover` holds the payload bytes that came in the same reads,
    which the shell must echo (or hand on) before reading again.  It holds at
    most :data:`MAX_HEADER` bytes plus one read.
    """

    __slots__ = ("_buf", "_policy", "leftover")

    def __init__(self, policy: ProxyPolicy) -> None:
        self._policy = policy
        self._buf = bytearray()
        #: Bytes after the header, once it is whole.
        self.leftover = b""

    def receive_data(self, data: bytes | bytearray | memoryview) -> ProxyHeader | NeedData:
        """Add *data* (b"" means the peer closed: an error if the header is not whole).

        Raises:
            ProxyProtocolError: not a valid header, or the peer closed before it was whole.
        """
        if not data:
            raise ProxyProtocolError(
                f"connection closed after {len(self._buf)} bytes of an unfinished PROXY header"
            )
        self._buf += data
        result = self._policy.parse(self._buf)
        if isinstance(result, ProxyHeader):
            self.leftover = bytes(self._buf[result.length :])
            self._buf = bytearray()
        return result


def carried_peer(header: ProxyHeader, socket_peer: str) -> str:
    """``host:port`` the header carries for the client, or *socket_peer* (LOCAL, UNKNOWN)."""
    if header.command is Command.LOCAL or header.source is None:
        return socket_peer
    host, port = header.source
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# A trusted peer must finish its header within this long after connecting (HAProxy
# sends it with the connect; a peer this slow is not a balancer).
HEADER_TIMEOUT: Final = 5.0


# Refusals told one line each per second; past that they are summed up once a second, so a
# flood of bad connects does not become a flood of log lines.
LOG_BURST: Final = 10


class ProxyRefusals:
    """Connections closed for their PROXY header: counted, each told in one log line.

    At most :data:`LOG_BURST` lines a second; the rest are counted and told in one
    line by :meth:`flush`, which the ticker calls once a second.  Listeners refuse
    through their :class:`ProxyCounts` (:meth:`listener`), which count by reason
    and call :meth:`log_refusal`.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._logged = 0
        self._unlogged = 0
        #: Each listener's own counts (``/metrics``), by listener name; see :meth:`listener`.
        self.listeners: dict[str, ProxyCounts] = {}

    @property
    def total(self) -> int:
        """Connections closed so far, every listener and reason (``/healthz``)."""
        return sum(c.invalid + c.untrusted for c in self.listeners.values())

    def listener(self, name: str) -> ProxyCounts:
        """The counts of listener *name* (made on first use), which refuse through this object."""
        counts = self.listeners.get(name)
        if counts is None:
            counts = self.listeners[name] = ProxyCounts(self)
        return counts

    def log_refusal(self, peer: str, reason: str) -> None:
        """Tell why *peer* (the socket's address) was closed, within the log budget."""
        if self._logged < LOG_BURST:
            self._logged += 1
            log.warning("%s: closing %s: %s", self._what, peer, reason)
        else:
            self._unlogged += 1

    def flush(self) -> int:
        """Tell the refusals not logged since the last call in one line; return how many."""
        count = self._unlogged
        if count:
            log.warning(
                "%s: closed %d more connections for their PROXY header (not logged one by one)",
                self._what,
                count,
            )
        self._logged = 0
        self._unlogged = 0
        return count


def peer_host(peer: str) -> str:
    """The host of a ``host:port`` / ``[host]:port`` text."""
    return peer.rsplit(":", 1)[0].strip("[]")


class ProxyCounts:
    """One listener's PROXY headers: accepted, and connections refused by reason.

    What the listener calls; a refusal is also logged through the server's
    :class:`ProxyRefusals` (one log budget), whose total for ``/healthz`` is
    the sum of these per-listener numbers that ``/metrics`` reads.
    """

    __slots__ = ("_refusals", "accepted", "invalid", "untrusted")

    def __init__(self, refusals: ProxyRefusals) -> None:
        self._refusals = refusals
        #: Headers accepted (the connection went on as the client it carries, or LOCAL).
        self.accepted = 0
        #: Connections closed for a missing, malformed, truncated or slow header.
        self.invalid = 0
        #: Connections closed at accept: the peer is not in ``--proxy-trusted``.
        self.untrusted = 0

    def accept(self) -> None:
        """Count one whole, valid header."""
        self.accepted += 1

    def refuse(self, peer: str, reason: str) -> None:
        """Count one connection from *peer* closed for its header, and log *reason*."""
        self.invalid += 1
        self._refusals.log_refusal(peer, reason)

    def refuse_untrusted(self, peer: str) -> None:
        """Count one connection from *peer* closed at accept: not in ``--proxy-trusted``."""
        self.untrusted += 1
        self._refusals.log_refusal(
            peer, "PROXY protocol required, and this address is not in --proxy-trusted"
        )
