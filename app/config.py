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

# A step that holds the loop longer than this is a block: ~3 frames of a 60 Hz page, far
# above scheduling noise (a millisecond or two), well below a time.sleep(0.2) lesson.
# The one default; the page draws its red line from hello.limits.
BLOCK_THRESHOLD: Final = 0.05


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

    @property
    def flag(self) -> str:
        """The command-line flag, ``--tcp-port`` for ``tcp_port``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, ``TRIO_ECHO_TCP_PORT`` for ``tcp_port``."""
        return ENV_PREFIX + self.name.upper()


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
)

CLIENT_OPTIONS: Final = (
    Option("host", "echo server address"),
    Option("tcp_port", "echo server TCP port", 1, 65535, aliases=("--port",)),
    Option("ws", "echo over this websocket URL instead of TCP, e.g. ws://127.0.0.1:8000/ws/echo"),
    Option("connect_timeout", "seconds to wait for the connection", 0.1, 600),
)

_S = TypeVar("_S", Settings, ClientSettings)


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
            raw, source = given[opt.name], opt.flag
        elif opt.env in env:
            raw, source = env[opt.env], opt.env
        else:
            continue
        values[opt.name] = _parse(opt, raw, defaults[opt.name], source)
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


def is_loopback(host: str) -> bool:
    """True when *host* only accepts connections from this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")
