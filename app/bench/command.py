"""``trio-echo bench``: its flags, and the shell that runs a plan and prints the result.

Exit codes: 0 when the run measured something without errors, 1 when it saw
errors (mismatches, resets, failed connects) or could not start (nothing
listens, a failed handshake: ``trio-echo bench: error: ...``), 2 for a usage
error (a bad flag, with the usage line, as argparse reports it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Final, Literal

import trio

from app.bounds import number_type
from app.config import ConfigError
from app.units import MiB

# Bounds of the flags, with the reason.
MAX_CONNECTIONS: Final = 20_000  # the machine's hard open-file limit is 20,000
MAX_SIZE: Final = 16 * MiB  # past the server's default 1 MiB limit, for testing it
MAX_DURATION: Final = 3600.0  # one hour: a soak, not a benchmark
MAX_RATE: Final = 100_000  # feed events a second; faster only measures gaps
MAX_DATAGRAM: Final = 65_507  # the largest UDP payload over IPv4
# A UDP datagram unanswered this long is lost, as the Node client udpload.js counts it.
UDP_TIMEOUT: Final = 0.2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command to the CLI's sub-commands."""
    bench = commands.add_parser(
        "bench",
        help="measure an echo server: ping-pong over TCP or websocket, or the feed's fan-out",
        description="Ping-pong load on an echo server: every connection sends a message, waits "
        "for its echo, checks it byte for byte, and sends the next. Progress on stderr once a "
        "second, then a summary (msgs/s, latency percentiles) on stdout. With --feed, open "
        "subscribers to /ws/events, make the server publish (by opening and resetting TCP echo "
        "connections) and measure each subscriber's lag, then again with one subscriber that "
        "stops reading. Ctrl-C ends the window early and still prints the summary.",
        epilog="Environment: none; bench reads only its flags (not serve's TRIO_ECHO_*).",
    )
    target = bench.add_mutually_exclusive_group()
    target.add_argument(
        "--tcp", metavar="HOST:PORT", type=_host_port, help="TCP echo (default 127.0.0.1:8001)"
    )
    target.add_argument(
        "--ws",
        metavar="URL",
        type=_ws_url,
        help="websocket echo, e.g. ws://127.0.0.1:8000/ws/echo (wss://: over TLS, verified)",
    )
    target.add_argument(
        "--udp",
        metavar="HOST:PORT",
        type=_host_port,
        help="UDP echo (RFC 862): one datagram in flight per socket; --connections sockets; "
        f"unanswered after {UDP_TIMEOUT * 1000:g} ms counts as lost",
    )
    target.add_argument(
        "--feed",
        metavar="URL",
        type=_ws_url,
        help="feed fan-out, e.g. ws://127.0.0.1:8000/ws/events (wss://: over TLS, verified)",
    )
    # Issue 11: TCP echo over TLS, verified like `client --tls`.
    target.add_argument(
        "--tls", metavar="HOST:PORT", type=_host_port, help="TCP echo over TLS, e.g. 127.0.0.1:8002"
    )
    verify = bench.add_mutually_exclusive_group()
    verify.add_argument(
        "--insecure",
        action="store_true",
        help="--tls and wss:// URLs: accept any certificate (self-signed)",
    )
    verify.add_argument(
        "--cafile", default="", help="--tls and wss:// URLs: trust the CAs in this PEM file"
    )
    bench.add_argument(
        "--connections",
        type=number_type("int", 1, MAX_CONNECTIONS),
        default=100,
        help=f"connections (feed: subscribers) (default: 100; 1..{MAX_CONNECTIONS})",
    )
    bench.add_argument(
        "--size",
        type=number_type("int", 1, MAX_SIZE),
        default=64,
        help=f"message size in bytes (default: 64; 1..{MAX_SIZE})",
    )
    bench.add_argument(
        "--duration",
        type=number_type("float", 0.1, MAX_DURATION),
        default=5.0,
        help="seconds measured (feed: per phase) (default: 5)",
    )
    bench.add_argument(
        "--warmup",
        type=number_type("float", 0, 60),
        default=0.5,
        help="seconds of load before measuring (default: 0.5)",
    )
    bench.add_argument("--text", action="store_true", help="websocket: text messages, not binary")
    bench.add_argument(
        "--rate",
        type=number_type("int", 1, MAX_RATE),
        default=10_000,
        help=f"feed: events a second to make the server publish (default: 10000; 1..{MAX_RATE})",
    )
    bench.add_argument(
        "--deflate",
        action="store_true",
        help="websocket and feed: offer permessage-deflate as a browser does (RFC 7692)",
    )
    bench.add_argument(
        "--send-proxy",
        choices=("v1", "v2"),
        help="--tcp, --tls (before TLS) and --ws: send a PROXY protocol header first on every "
        "connection (as a balancer does)",
    )
    bench.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    bench.set_defaults(command=run, parser=bench)


def _checked_by(check: Literal["tcp_address", "check_url"]) -> Callable[[str], str]:
    """An argparse type: the text if ``app.bench.load.<check>`` accepts it, else a usage error.

    Checked at parse time, so a bad target is exit 2 with the usage line.  ``load``
    is imported when a value is checked, not when the CLI builds its parser (it pulls
    in every client).
    """

    def checked(text: str) -> str:
        from app.bench import load

        try:
            getattr(load, check)(text)
        except load.BenchError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return checked


#: ``HOST:PORT``, with a port in 1..65535.
_host_port = _checked_by("tcp_address")
#: A ``ws://`` or ``wss://`` URL with a host and a valid port.
_ws_url = _checked_by("check_url")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the flags describe; print progress, then the summary."""
    from app.bench.load import BenchError, Plan, run_bench
    from app.bench.stats import table

    check_flags(args)
    if args.feed:
        mode, target = "feed", args.feed
    elif args.tls:
        mode, target = "tls", args.tls
    elif args.udp:
        mode, target = "udp", args.udp
        if args.size > MAX_DATAGRAM:
            raise ConfigError(f"--udp: --size is at most {MAX_DATAGRAM}")
    elif args.ws:
        mode, target = "ws", args.ws
    else:
        mode, target = "tcp", args.tcp or "127.0.0.1:8001"
    plan = Plan(
        mode=mode,
        target=target,
        connections=args.connections,
        size=args.size,
        duration=args.duration,
        warmup=args.warmup,
        text=args.text,
        rate=args.rate,
        insecure=args.insecure,
        cafile=args.cafile,
        deflate=args.deflate,
        send_proxy=args.send_proxy or "",
    )

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    try:
        summary = trio.run(partial(run_bench, plan, progress))
    except (BenchError, OSError, trio.TooSlowError) as exc:
        print(f"trio-echo bench: error: {exc or 'no answer in time'}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        # Client tasks fail together (say, every subscriber refused): one line for all.
        cannot_start, other = group.split((BenchError, OSError, trio.TooSlowError))
        if cannot_start is None or other is not None:
            raise
        first = _first_leaf(cannot_start)
        print(f"trio-echo bench: error: {first or type(first).__name__}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.as_json()), flush=True)
    else:
        print(table(summary), flush=True)
    return 1 if summary.errors else 0


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flags that do nothing for the chosen target, instead of ignoring them.

    Raises:
        ConfigError: the flag and why (the CLI's usage error, exit 2).
    """
    secure = bool(args.tls) or any(url.startswith("wss://") for url in (args.ws, args.feed) if url)
    if (args.insecure or args.cafile) and not secure:
        flag = "--insecure" if args.insecure else "--cafile"
        raise ConfigError(f"{flag} needs --tls HOST:PORT or a wss:// URL")
    if args.send_proxy and args.udp:
        raise ConfigError("--send-proxy: a PROXY header is for TCP, not --udp")
    if args.send_proxy and args.feed:
        # The feed run also churns TCP echo connections, which would need headers too.
        raise ConfigError("--send-proxy works with --tcp, --tls and --ws, not --feed")


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
