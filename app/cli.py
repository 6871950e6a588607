"""The ``trio-echo`` command: ``serve``, ``client``, and friends.

This is the process's outer shell: parse flags, resolve settings, set up
logging and signals, run Trio, and turn every expected failure into one line
on stderr and an exit code.  Nothing here knows how a part works inside.

Every error has one form, argparse's, named after the command that failed
(``trio-echo serve: error: ...``):

* a usage error (a flag's syntax or value, found by argparse or later,
  :class:`~app.config.ConfigError`): the command's usage line, then the error;
  exit 2;
* a runtime error (a port in use, a file that cannot be read, a server that
  does not answer, :class:`CommandError`): the error line alone; exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import trio

from app import __version__, portability
from app.bench.command import add_parser as add_bench_parser
from app.bounds import number_type
from app.config import (
    BLOCK_THRESHOLD,
    CLIENT_ENV_PREFIX,
    CLIENT_OPTIONS,
    SERVE_OPTIONS,
    WATCH_OPTIONS,
    ClientSettings,
    ConfigError,
    Settings,
    WatchSettings,
    add_options,
    parse_networks,
    resolve,
)
from app.feed.redis_url import BadFeedURL, parse_feed
from app.ready import ready_lines
from app.scenarios import SCENARIOS
from app.scenarios.catalog import Param

log = logging.getLogger("app")


class CommandError(Exception):
    """A command failed while running, not in its flags: ``PROG: error: MESSAGE``, exit 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 runtime error, 2 usage error)."""
    # Until Trio's signal receiver is up, SIGTERM means "stop now, quietly".
    if portability.CURRENT.sigterm:
        signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # The parser of the command that runs (set_defaults below), so that its errors carry
    # its own name and usage: `trio-echo serve: error: ...`, not the top level's.
    command_parser: argparse.ArgumentParser = args.parser
    if unknown:
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except ConfigError as exc:
        command_parser.error(str(exc))
    except CommandError as exc:
        print(f"{command_parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``serve``, ``client``, ``demo NAME`` and ``bench``."""
    parser = argparse.ArgumentParser(
        prog="trio-echo",
        description="A structured-concurrency echo platform: TCP and websocket echo, "
        "and the coroutine tutorial live in the browser.",
        epilog="serve and watch read their flags from the environment as TRIO_ECHO_<NAME>, "
        "client from TRIO_ECHO_CLIENT_<NAME> (never serve's), bench and demo from none; "
        "flags win over the environment, which wins over defaults.",
    )
    parser.add_argument("--version", action="version", version=f"trio-echo {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        # Its flags fill forty lines: a usage error shows this line and its error, --help the rest.
        usage="trio-echo serve [OPTIONS] (all of them: trio-echo serve --help)",
        help="run the TCP echo server, the web page and the scenario runner in one process",
        description="Run the TCP echo server (RFC 862), the web server (page, /ws/events, "
        "/ws/echo, /healthz) and the scenario runner under one Trio nursery. "
        "Ctrl-C or SIGTERM stops it (exit 0).",
        epilog="Environment: TRIO_ECHO_<NAME> for each flag (named in its help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_options(serve, SERVE_OPTIONS, Settings)
    serve.add_argument(
        "--no-udp",
        dest="udp",
        action="store_const",
        const="off",
        default=argparse.SUPPRESS,
        help="no UDP echo (same as --udp off)",
    )
    # Set by the supervisor of --workers N for each worker it starts; not for people.
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.set_defaults(command=_serve, parser=serve)

    client = commands.add_parser(
        "client",
        help="the tutorial's >>: client (interactive, or piped stdin to stdout)",
        description="Send lines to the echo server and print what comes back. "
        "Interactive on a terminal (prompt >>:); piped, it sends stdin, half-closes, and "
        "exits 0 once every byte came back.",
        epilog=f"Environment: {CLIENT_ENV_PREFIX}<NAME> for each flag (named in its help), "
        "never serve's TRIO_ECHO_<NAME>, whose meanings differ (bind address, port 0, "
        "--tls self-signed, the UDP listener).",
    )
    add_options(client, CLIENT_OPTIONS, ClientSettings)
    client.set_defaults(command=_client, parser=client)

    add_bench_parser(commands)  # sets its own parser= default
    _add_watch_parsers(commands)

    demo = commands.add_parser(
        "demo",
        help="run one of the tutorial's examples in the terminal, no server",
        description="Run one scenario in the terminal and print it the way the tutorial did. "
        "Each scenario takes the same parameters as on the page.",
    )
    scenarios = demo.add_subparsers(title="scenarios", required=True, metavar="NAME")
    for scenario in SCENARIOS.values():
        info = scenario.info
        sub = scenarios.add_parser(
            info.name, help=info.title, description=f"{info.idea} {info.watch}"
        )
        for param in info.params:
            _add_param(sub, param)
        sub.add_argument(
            "--trace",
            metavar="FILE",
            type=Path,
            help="also write the run as a Chrome trace (Perfetto)",
        )
        sub.add_argument(
            "--block-threshold",
            type=float,
            default=BLOCK_THRESHOLD,
            help="seconds a step may hold the loop before it is a block "
            f"(default: {BLOCK_THRESHOLD})",
        )
        sub.set_defaults(command=_demo, scenario=info.name, parser=sub)
    return parser


# -- issue 10 (watch): watch, ps, pstree ------------------------------------------------------


def _add_watch_parsers(commands: Any) -> None:
    watch = commands.add_parser(
        "watch",
        help="run a Trio program and watch its tasks, steps, output and stalls on the page",
        description="Run COMMAND (any Python program that calls trio.run) as a child, unmodified, "
        "and show every trio.run in it on the page: the task tree, each task's steps and "
        "output, blocks, and stalls with the stuck line. Exits with the child's exit code.",
        usage="trio-echo watch [OPTIONS] -- COMMAND [ARGS...]",
    )
    add_options(watch, WATCH_OPTIONS, WatchSettings)
    watch.add_argument("child_argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="to run")
    watch.set_defaults(command=_watch, parser=watch)
    # Without a URL: the page of `watch` (and `serve`) where it is by default.
    watch_defaults = WatchSettings()
    default_url = f"http://{watch_defaults.host}:{watch_defaults.http_port}"
    for name, what in (("ps", "a table"), ("pstree", "a tree")):
        sub = commands.add_parser(
            name,
            help=f"print the tasks of a watched program or a running serve as {what}",
            description=f"Print every task (id, name, parent, state, where it waits) as {what}, "
            "from the web URL that `watch` or `serve` printed.",
        )
        sub.add_argument(
            "url",
            nargs="?",
            default=default_url,
            help=f"the page's URL or HOST:PORT (default {default_url})",
        )
        sub.set_defaults(command=_ps, tree=name == "pstree", parser=sub)


def _watch(args: argparse.Namespace) -> int:
    from app.watch.command import watch

    argv = list(args.child_argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise ConfigError("expected -- COMMAND [ARGS...], got no command")
    settings = resolve(WatchSettings, WATCH_OPTIONS, vars(args), os.environ)
    _setup_logging(settings.log_level)
    try:
        return trio.run(watch, settings, argv)
    except OSError as exc:
        _die(str(exc))


def _ps(args: argparse.Namespace) -> int:
    from app.watch.pstext import FetchError, fetch, ps, pstree

    try:
        runs = fetch(args.url)
    except FetchError as exc:
        _die(str(exc))
    sys.stdout.write(pstree(runs) if args.tree else ps(runs))
    if not runs:
        # Not an error (a program between runs, or done): said on stderr, the table stays.
        print(f"no trio.run is running at {args.url}", file=sys.stderr)
    return 0


# -- end of issue 10 (watch) -------------------------------------------------------------------


def _add_param(parser: argparse.ArgumentParser, param: Param) -> None:
    bound = f"; {param.lo:g}..{param.hi:g}" if param.lo is not None and param.hi is not None else ""
    kwargs: dict[str, Any] = {
        "dest": f"param_{param.name}",
        "default": argparse.SUPPRESS,
        "help": f"{param.help} (default: {param.default}{bound})",
    }
    if param.kind == "choice":
        kwargs["choices"] = param.choices
    else:
        # Parsed here, bounds checked by the runner (the same refusal as from the page).
        kwargs["type"] = number_type(param.kind)
    parser.add_argument(f"--{param.name}", **kwargs)


def _demo(args: argparse.Namespace) -> int:
    from app.scenarios.demo import run_demo
    from app.scenarios.runner import RunRefused

    params = {k.removeprefix("param_"): v for k, v in vars(args).items() if k.startswith("param_")}
    try:
        record = trio.run(
            partial(
                run_demo,
                args.scenario,
                params,
                out=sys.stdout,
                err=sys.stderr,
                trace_path=args.trace,
                block_threshold=args.block_threshold,
            )
        )
    except RunRefused as exc:
        raise ConfigError(str(exc)) from None  # a parameter out of bounds: a usage error
    return 0 if record.state == "done" else 1


def _serve(args: argparse.Namespace) -> int:
    settings = resolve(Settings, SERVE_OPTIONS, vars(args), os.environ)
    _check_issue11(settings)
    _setup_logging(settings.log_level, settings.log_format)
    try:
        parse_feed(settings.feed)
    except BadFeedURL as exc:
        raise ConfigError(str(exc)) from None
    _raise_fd_limit(settings.max_connections + settings.max_web_connections)
    if settings.workers > 1 and not portability.CURRENT.reuse_port:
        _die(
            f"--workers {settings.workers}: this system has no SO_REUSEPORT ({sys.platform}), "
            "so processes cannot share a port; run one server per port, or --workers 1"
        )
    if settings.workers > 1 and not args.worker_index:
        from app.workers import supervise

        try:
            return trio.run(supervise, settings)
        except OSError as exc:
            _die(str(exc))
    try:
        trio.run(serve_until_signal, settings, args.worker_index)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        _fail_on_oserror(group)
    except OSError as exc:
        _die(str(exc))
    return 0


def _check_issue11(settings: Settings) -> None:
    """Refuse malformed network lists and an unsharable UDP port before anything starts.

    Raises:
        ConfigError: names the flag and the item.
    """
    from app.echo.proxy import proxy_policy

    proxy_policy(settings.proxy_protocol, settings.proxy_trusted)
    parse_networks(settings.udp_rate_exempt, "--udp-rate-exempt")
    if settings.workers > 1 and settings.udp and settings.udp_port == 0:
        # Each worker would pick a different free port; the supervisor reserves only TCP ones.
        raise ConfigError("--udp-port 0 cannot be shared by --workers: give a number, or -1")


async def serve_until_signal(settings: Settings, worker: int = 0) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; a second signal stops at once.

    Prints one parseable line per listener once both are bound.  As worker
    *worker* of ``--workers N`` it also prints its private web port, takes
    the list of its peers from stdin, and stops when stdin ends (the
    supervisor is gone).
    """
    # Imported here so that `trio-echo client` does not pay for Hypercorn and Starlette.
    from app.gcpolicy import tune_for_serving
    from app.server import Server

    server = Server(settings, worker=worker)
    with trio.open_signal_receiver(*portability.stop_signals()) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[Any]) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            async def watch_signals() -> None:
                async for signum in signals:
                    if server.hub.draining.is_set():
                        nursery.cancel_scope.cancel()
                        return
                    log.info("%s received", signal.Signals(signum).name)
                    server.stop()

            nursery.start_soon(watch_signals)
            ports = await nursery.start(run_server)
            private = ports.private_url if worker else ""
            udp = ports.udp_address if ports.udp else ""
            tls = server.tls
            print(
                ready_lines(
                    ports.tcp_address,
                    ports.web_url,
                    private,
                    udp,
                    # Issue 11: the TLS lines, with TLS on.
                    tls_address=ports.tls_address if tls else "",
                    https_url=ports.https_url if tls else "",
                    fingerprint=tls.fingerprint if tls else "",
                    self_signed=bool(tls and tls.self_signed),
                ),
                end="",
                flush=True,
            )
            if worker:
                from app.workers import read_peers

                nursery.start_soon(read_peers, server.set_peers, server.stop)
            tune_for_serving()


def _client(args: argparse.Namespace) -> int:
    from app.client import main as client_main

    settings = resolve(ClientSettings, CLIENT_OPTIONS, vars(args), os.environ)
    return client_main(settings, sys.stdin, sys.stdout, sys.stderr)


def _setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from app.logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _raise_fd_limit(wanted: int) -> None:
    """Lift the soft file-descriptor limit to the hard one; warn if the limits cannot fit."""
    if not portability.CURRENT.rlimit:
        log.info("no resource module here (%s): the open-file limit stays as it is", sys.platform)
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A few dozen descriptors for listeners, epoll and the interpreter itself.
    if hard < wanted + 64:
        log.warning(
            "the open-file limit is %d, below the %d connections the limits allow; "
            "accepts will pause when it is reached",
            hard,
            wanted,
        )


def _fail_on_oserror(group: BaseExceptionGroup[BaseException]) -> None:
    """Turn an expected startup failure inside Trio's exception group into one line."""
    leaves = _leaves(group)
    errors = [exc for exc in leaves if isinstance(exc, OSError)]
    if not errors or not all(isinstance(exc, OSError | KeyboardInterrupt) for exc in leaves):
        raise group
    _die(str(errors[0]))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _die(message: str) -> NoReturn:
    """Fail at run time: ``main`` prints ``trio-echo COMMAND: error: MESSAGE``, exit 1."""
    raise CommandError(message)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
