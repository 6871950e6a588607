"""Settings: every knob of trio-echo, resolved once, flags > ``TRIO_ECHO_*`` > defaults.

Rules of this module:

* It is the only place that reads the environment, and it only reads the
  mapping it is handed (``os.environ`` in production, a dict in tests).
* Every numeric setting has a bound.  A value outside it is refused with a
  message that names the flag, the environment variable and the range; it is
  never clamped silently.
* Defaults live on the dataclasses, help texts and bounds in the option
  tables; ``--help`` is built from both, so it cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, get_args

from app.bounds import NumberKind, check_number, parse_number, show
from app.feed.ring import DEFAULT_CAPACITY
from app.units import MiB

ENV_PREFIX: Final = "TRIO_ECHO_"
LogLevel = Literal["debug", "info", "warning", "error"]
#: TCP echo engines: epoll, one task for all (Linux); tasks, a Trio task each over a private
#: epoll (Linux); trio, a Trio task each over Trio's own I/O (anywhere Trio runs).
EchoEngine = Literal["epoll", "tasks", "trio"]
#: Where ``/ws/echo`` runs: multiplexed in one task, websockets' Trio connection, Hypercorn.
WsEngine = Literal["epoll", "fast", "asgi"]
LOG_LEVELS: Final[tuple[str, ...]] = get_args(LogLevel)
ECHO_ENGINES: Final[tuple[str, ...]] = get_args(EchoEngine)
WS_ENGINES: Final[tuple[str, ...]] = get_args(WsEngine)
# issue 12: permessage-deflate (RFC 7692) on every websocket path, or never.
WsCompression = Literal["deflate", "off"]
WS_COMPRESSIONS: Final[tuple[str, ...]] = get_args(WsCompression)
#: ``--log-format`` (issue 13): human lines, or one JSON object per line.
LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)

# A step that holds the loop longer than this is a block: ~3 frames of a 60 Hz page, far
# above scheduling noise (a millisecond or two), well below a time.sleep(0.2) lesson.
# The one default; the page draws its red line from hello.limits.
BLOCK_THRESHOLD: Final = 0.05
#: ``--proxy-protocol`` (issue 11): which PROXY protocol versions a connection must start with.
ProxyMode = Literal["off", "v1", "v2", "any"]
PROXY_MODES: Final[tuple[str, ...]] = get_args(ProxyMode)

# Issue 11 (TLS): `--tls self-signed` makes a certificate at start; `off` uses --tls-cert/--tls-key.
TlsMode = Literal["off", "self-signed"]
TLS_MODES: Final[tuple[str, ...]] = get_args(TlsMode)
#: The client's --tls port when none is given (the server's --tls-port default).
DEFAULT_TLS_PORT: Final = 8002


class ConfigError(ValueError):
    """A setting was given a value it cannot take; the message says which and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What ``trio-echo serve`` runs with.  Times are seconds, sizes bytes."""

    host: str = "127.0.0.1"
    tcp_port: int = 8001
    http_port: int = 8000
    # Linux's default somaxconn, which caps it.  The tutorial's gevent server
    # called listen(500); a storm of 10,000 connects at once overflows that
    # even with greedy accepting (measured: docs/performance.md).
    backlog: int = 4096
    max_connections: int = 10_000
    max_web_connections: int = 1_000
    idle_timeout: float = 300.0
    max_message_size: int = 1 * MiB
    graceful_timeout: float = 0.5
    write_timeout: float = 10.0
    ws_ping_interval: float = 20.0
    engine: EchoEngine = "epoll"
    ws_engine: WsEngine = "epoll"
    allowed_origins: str = ""
    max_runs: int = 4
    run_timeout: float = 60.0
    block_threshold: float = BLOCK_THRESHOLD
    feed_capacity: int = DEFAULT_CAPACITY
    trace: bool = True
    workers: int = 1
    log_level: LogLevel = "info"
    # Issue 11 (TLS): TLS echo and HTTPS/WSS listeners, on when a certificate is given or made.
    tls: TlsMode = "off"
    tls_cert: str = ""
    tls_key: str = ""
    tls_port: int = DEFAULT_TLS_PORT
    https_port: int = 8443
    tls_handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        # Issue 11 (TLS): a half-given certificate is a mistake to refuse, not to ignore.
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key: give both, or neither")
        if self.tls_cert and self.tls != "off":
            raise ConfigError("--tls self-signed and --tls-cert: give one of them")

    @property
    def tls_enabled(self) -> bool:
        """Whether the TLS echo and HTTPS listeners run (issue 11)."""
        return bool(self.tls_cert) or self.tls != "off"

    # -- issue 14 (the web front against odd HTTP) --
    # Hypercorn's default: an idle HTTP keep-alive connection is closed after this.
    keep_alive_timeout: float = 5.0
    # issue 12: permessage-deflate.  12 / 12 / memLevel 5 is the websockets author's
    # advice: ~50 KiB of zlib state per compressed connection (docs/limits.md).
    ws_compression: WsCompression = "deflate"
    ws_deflate_window_bits: int = 12
    ws_deflate_mem_level: int = 5
    # -- issue 13: one feed on Redis Streams, metrics and logs ------------------------------
    feed: str = "memory"
    feed_outbox: int = 10_000
    log_format: LogFormat = "text"
    # -- issue 11 (part 2): UDP echo and the PROXY protocol ------------------------------------
    #: -1: the TCP echo port's number as bound (RFC 862 serves both on one number).
    udp_port: int = -1
    udp: bool = True
    #: The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes).
    udp_max_datagram: int = 65_507
    udp_source_rate: int = 1_000
    udp_source_bytes: int = 1 * MiB
    udp_global_rate: int = 20_000
    udp_global_bytes: int = 32 * MiB
    #: Loopback cannot be spoofed from the network, and reflecting to it reaches only this host.
    udp_rate_exempt: str = "127.0.0.0/8,::1"
    proxy_protocol: ProxyMode = "off"
    proxy_trusted: str = "127.0.0.0/8,::1"
    # -- issue 10 (watch): the stall watchdog of serve's own loop --
    stall_threshold: float = 1.0

    @property
    def origins(self) -> frozenset[str]:
        """Extra origins allowed to control the server, besides the page's own."""
        return frozenset(
            o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """What ``trio-echo client`` connects to."""

    host: str = "127.0.0.1"
    tcp_port: int = 8001
    ws: str = ""
    connect_timeout: float = 5.0
    # Issue 11 (TLS): `client --tls [--insecure | --cafile F]`.
    tls: bool = False
    insecure: bool = False
    cafile: str = ""
    # -- issue 11 (part 2): UDP echo and the PROXY protocol ------------------------------------
    udp: bool = False
    #: ``v1`` or ``v2``; None sends no PROXY header.
    send_proxy: str | None = None
    udp_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class Option:
    """One setting as it appears on the command line and in the environment."""

    name: str
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    #: Other spellings of the flag, e.g. the client's ``--port``.
    aliases: tuple[str, ...] = ()
    #: A bare switch (``--udp``, ``--tls``) that sets the option on, not a flag taking a value.
    switch: bool = False
    #: The environment variable's prefix: the client's own (``TRIO_ECHO_CLIENT_``), or serve's.
    env_prefix: str = ENV_PREFIX

    @property
    def flag(self) -> str:
        """The command-line flag, ``--tcp-port`` for ``tcp_port``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, ``TRIO_ECHO_TCP_PORT`` for ``tcp_port``."""
        return self.env_prefix + self.name.upper()


SERVE_OPTIONS: Final = (
    Option(
        "host", "address both listeners bind; anything but loopback is reachable from the network"
    ),
    Option("tcp_port", "TCP echo port (RFC 862); 0 picks a free port", 0, 65535),
    Option(
        "http_port",
        "web port (page, /ws/events, /ws/echo, /healthz); 0 picks a free port",
        0,
        65535,
    ),
    Option("backlog", "listen() backlog of both listeners", 1, 65535),
    Option(
        "max_connections", "TCP echo connections at once; more are closed at accept", 1, 1_000_000
    ),
    Option("max_web_connections", "HTTP and websocket connections at once", 1, 100_000),
    Option(
        "idle_timeout",
        "seconds without a byte in either direction before a connection is closed",
        0.1,
        86_400,
    ),
    Option(
        "max_message_size",
        "largest websocket message in bytes; larger ones close with 1009",
        125,
        64 * MiB,
    ),
    Option("graceful_timeout", "seconds that shutdown waits for connections to say goodbye", 0, 10),
    Option(
        "write_timeout",
        "seconds a web client may take none of our bytes before it is cut off",
        0.1,
        600,
    ),
    Option(
        "ws_ping_interval",
        "seconds between websocket keepalive pings; no pong within as long again closes 1011",
        0.1,
        3600,
    ),
    Option(
        "engine",
        "TCP echo engine: epoll, one task for all (Linux); tasks, a Trio task each over a "
        "private epoll (Linux); trio, a Trio task each over Trio's own I/O (any platform; "
        "chosen where epoll is missing)",
        choices=ECHO_ENGINES,
    ),
    Option(
        "ws_engine",
        "websocket path: epoll multiplexes /ws/echo in one task (other /ws/ routes as fast); "
        "fast runs every /ws/ route on websockets' Trio connection; asgi on Hypercorn",
        choices=WS_ENGINES,
    ),
    Option(
        "allowed_origins", "comma-separated extra websocket Origins that may start or cancel work"
    ),
    Option("max_runs", "scenario runs at once", 1, 64),
    Option("run_timeout", "seconds a scenario run may last before it is cancelled", 1, 3600),
    Option(
        "block_threshold",
        "seconds a single task step may hold the loop before it is reported as a block",
        0.001,
        10,
    ),
    Option(
        "feed_capacity",
        "events the feed keeps for replay and slow subscribers; older ones are a gap",
        1024,
        1_048_576,
    ),
    Option("trace", "follow scenario and echo tasks with the scheduler tracer (on/off)"),
    Option("workers", "server processes sharing the ports with SO_REUSEPORT", 1, 64),
    Option("log_level", "logging threshold", choices=LOG_LEVELS),
    # Issue 11 (TLS).
    Option(
        "tls",
        "self-signed: make a certificate for --host at start (its SHA-256 fingerprint is "
        "printed) and turn on the TLS echo and HTTPS listeners",
        choices=TLS_MODES,
    ),
    Option("tls_cert", "PEM certificate (chain) file; turns on TLS echo and HTTPS with --tls-key"),
    Option("tls_key", "PEM private key file for --tls-cert (never logged)"),
    Option("tls_port", "TCP echo over TLS port; 0 picks a free port", 0, 65535),
    Option(
        "https_port",
        "HTTPS and WSS port (page, /ws/events, /ws/echo, /info); 0 picks a free port",
        0,
        65535,
    ),
    Option(
        "tls_handshake_timeout",
        "seconds a TLS handshake may take; slower ones are closed and counted",
        0.1,
        600,
    ),
    # -- issue 14 (the web front against odd HTTP) --
    Option(
        "keep_alive_timeout",
        "seconds an idle HTTP keep-alive connection (or an unfinished request) is kept",
        0.1,
        3600,
    ),
    # issue 12: permessage-deflate (RFC 7692) on /ws/echo and /ws/events, every --ws-engine.
    Option(
        "ws_compression",
        "permessage-deflate on websockets when the client offers it (deflate), or never (off)",
        choices=WS_COMPRESSIONS,
    ),
    Option(
        "ws_deflate_window_bits",
        "largest LZ77 window (2**bits bytes) either side may use; bounds memory per connection",
        9,
        15,
    ),
    Option(
        "ws_deflate_mem_level",
        "zlib memLevel of our compressor: 2**(level+9) bytes of hash state per connection",
        1,
        9,
    ),
    # -- issue 13: one feed on Redis Streams, metrics and logs ----------------------------------
    Option(
        "feed",
        "where the feed lives: memory (this process), or redis://HOST[:PORT][/DB][?stream=NAME], "
        "one Redis Stream shared by every instance and worker that names it",
    ),
    Option(
        "feed_outbox",
        "events an instance queues for Redis while it is slow or away; older ones are dropped "
        "and readers see the gap",
        100,
        1_000_000,
    ),
    Option("log_format", "log lines as text, or one JSON object per line", choices=LOG_FORMATS),
    # -- issue 11 (part 2): UDP echo and the PROXY protocol ------------------------------------
    Option(
        "udp_port",
        "UDP echo port (RFC 862); -1: the TCP echo port's number as bound; 0 picks a free port",
        -1,
        65535,
    ),
    Option("udp", "UDP echo on/off (--no-udp turns it off)"),
    Option(
        "udp_max_datagram",
        "largest datagram echoed, bytes; larger ones are dropped and counted",
        1,
        65_507,
    ),
    Option(
        "udp_source_rate",
        "datagrams a second echoed to one source address; more are dropped (anti-reflection)",
        1,
        1_000_000,
    ),
    Option("udp_source_bytes", "bytes a second echoed to one source address", 65_507, 1024 * MiB),
    Option(
        "udp_global_rate",
        "datagrams a second echoed to all rate-bound sources together (spoofed-source floods)",
        1,
        10_000_000,
    ),
    Option(
        "udp_global_bytes", "bytes a second echoed to all rate-bound sources", 65_507, 4096 * MiB
    ),
    Option(
        "udp_rate_exempt",
        "comma-separated networks (CIDR) whose datagrams no rate bound applies to; '' for none",
    ),
    Option(
        "proxy_protocol",
        "require a PROXY protocol header (HAProxy spec) first on TCP echo and web connections",
        choices=PROXY_MODES,
    ),
    Option(
        "proxy_trusted",
        "comma-separated networks (CIDR) allowed to send PROXY headers; others are closed",
    ),
    # -- issue 10 (watch) --
    Option(
        "stall_threshold",
        "seconds one step may hold the loop before the watchdog names the task and its stack",
        0.05,
        3600,
    ),
)

# The client reads only TRIO_ECHO_CLIENT_* (issue 11 follow-up).  A client is run in the shell
# where a server's TRIO_ECHO_* are set, and every name they share means something else there:
# HOST is where serve binds (0.0.0.0 is no address to connect to), TCP_PORT=0 picks a free
# port, TLS is off/self-signed (not on/off), UDP turns serve's UDP listener on, not the
# client's UDP mode.  So no client setting borrows a serve variable, not even the one
# (the port) whose meaning is nearly the same: one rule is easier to know than a list.
CLIENT_ENV_PREFIX: Final = ENV_PREFIX + "CLIENT_"

CLIENT_OPTIONS: Final = tuple(
    dataclasses.replace(opt, env_prefix=CLIENT_ENV_PREFIX)
    for opt in (
        Option("host", "echo server address"),
        Option("tcp_port", "echo server TCP port", 1, 65535, aliases=("--port",)),
        Option(
            "ws", "echo over this websocket URL instead of TCP, e.g. ws://127.0.0.1:8000/ws/echo"
        ),
        Option("connect_timeout", "seconds to wait for the connection", 0.1, 600),
        # Issue 11 (TLS).
        Option(
            "tls",
            f"echo over TLS (the port defaults to {DEFAULT_TLS_PORT}); the certificate is verified "
            "against the system's CAs unless --insecure or --cafile",
            switch=True,
        ),
        Option("insecure", "with --tls: accept any certificate (self-signed servers)", switch=True),
        Option("cafile", "with --tls or a wss:// URL: trust the CA certificates in this PEM file"),
        # -- issue 11 (part 2): UDP echo and the PROXY protocol ------------------------------------
        Option("udp", "echo each line as one UDP datagram to --port", switch=True),
        Option(
            "send_proxy",
            "TCP, TLS and --ws: send a PROXY protocol header first, before TLS and the upgrade "
            "(from this socket's addresses)",
            choices=("v1", "v2"),
        ),
        Option(
            "udp_timeout", "UDP: seconds to wait for each echo before it counts as lost", 0.1, 60
        ),
    )
)

# -- issue 10 (watch): `trio-echo watch -- COMMAND` --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    """What ``trio-echo watch`` runs with.  Times are seconds."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    stall_threshold: float = 1.0
    block_threshold: float = 0.05
    trace_file: str = ""
    no_web: bool = False
    exit: bool = False
    feed_capacity: int = DEFAULT_CAPACITY
    log_level: str = "warning"


WATCH_OPTIONS: Final = (
    Option("host", "address the page binds; anything but loopback is reachable from the network"),
    Option("http_port", "web port of the page; 0 picks a free port", 0, 65535),
    Option(
        "stall_threshold",
        "seconds one step may hold the child's loop before the watchdog names the task",
        0.05,
        3600,
    ),
    Option(
        "block_threshold",
        "seconds a single step may hold the child's loop before it is reported as a block",
        0.001,
        10,
    ),
    Option(
        "trace_file",
        "write the whole session as a Chrome trace (Perfetto) to this file when the child exits",
        aliases=("--trace",),
    ),
    Option("no_web", "no web server (with --trace: exit with the child)", switch=True),
    Option("exit", "quit when the child exits instead of keeping the page up", switch=True),
    Option(
        "feed_capacity",
        "events the feed keeps for replay and slow subscribers; older ones are a gap",
        1024,
        1_048_576,
    ),
    Option("log_level", "logging threshold", choices=LOG_LEVELS),
)

# -- end of issue 10 (watch) -------------------------------------------------------------------

_S = TypeVar("_S", Settings, ClientSettings, WatchSettings)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option], cls: type[Any]) -> None:
    """Add one flag per option, with its default and environment variable in the help."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for opt in options:
        default = defaults[opt.name]
        extra = f"default: {_show(default)}; env {opt.env}"
        if opt.lo is not None:
            extra += f"; {_show(opt.lo)}..{_show(opt.hi)}"
        # SUPPRESS keeps unset flags out of the namespace, so the environment can fill them.
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": f"{opt.help} ({extra})"}
        if opt.choices:
            kwargs["choices"] = opt.choices
        if opt.switch:
            kwargs.update(action="store_const", const="on")
        parser.add_argument(*opt.aliases, opt.flag, dest=opt.name, **kwargs)


def resolve(
    cls: type[_S], options: Sequence[Option], given: Mapping[str, Any], env: Mapping[str, str]
) -> _S:
    """Build *cls* from flags (*given*), then the environment, then defaults.

    Raises:
        ConfigError: a value does not parse or is outside its bound.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for opt in options:
        if opt.name in given:
            # The alias is the spelling users are shown (the client's --port), so errors use it.
            raw, source = given[opt.name], (opt.aliases or (opt.flag,))[0]
        elif opt.env in env:
            raw, source = env[opt.env], opt.env
        else:
            continue
        values[opt.name] = _parse(opt, raw, defaults[opt.name], source)
    if cls is ClientSettings and values.get("tls") and "tcp_port" not in values:
        # Issue 11: `client --tls` talks to the server's TLS echo port unless told otherwise.
        values["tcp_port"] = DEFAULT_TLS_PORT
    return cls(**values)


def _parse(opt: Option, raw: Any, default: Any, source: str) -> Any:
    kind = type(default)
    text = str(raw).strip()
    value: Any = text
    try:
        if kind is bool:
            value = _parse_bool(text)
        elif kind is int or kind is float:
            number_kind: NumberKind = "int" if kind is int else "float"
            value = parse_number(text, number_kind)
            if opt.lo is not None and opt.hi is not None:
                value = check_number(value, number_kind, opt.lo, opt.hi)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{source}: expected one of {', '.join(opt.choices)}, got {text!r}")
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected on or off, got {text!r}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return show(value) if isinstance(value, int | float) else str(value)


# -- issue 11 (part 2): networks for --proxy-trusted and --udp-rate-exempt ---------------------
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, flag: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8,::1"`` as networks (an address alone is a network of one).

    Raises:
        ConfigError: an item is neither an address nor a network; names *flag*.
    """
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{flag}: {item!r} is not an address or network (CIDR)") from None
    return tuple(networks)


def address_in(host: str, networks: tuple[Network, ...]) -> bool:
    """Whether *host* (an address as text, IPv4-mapped IPv6 included) is in one of *networks*."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def is_loopback(host: str) -> bool:
    """True when *host* only accepts connections from this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")
