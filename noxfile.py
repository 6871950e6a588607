"""Every job of the project, one nox session each.

Extra arguments go to the tool: ``nox -s tests -- -k tcp``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

LINT_TOOLS = ["ruff>=0.17.6,<0.18"]
TYPE_TOOLS = ["mypy>=2.4,<3"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, browser tests included, against the installed package."""
    session.install(".[test]")
    # pytest as a script, not `python -m pytest`: the checkout must not shadow
    # the installed package (the page is served from the package).
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the watch agent."""
    session.install(".", *TYPE_TOOLS)
    session.run("mypy", "--strict", "app", "trio_echo_agent", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Minutes of well-behaved and hostile clients against one server; not in the default run.

    ``nox -s soak -- --seconds 300``.  Prints RSS and fd samples, well-behaved errors (must be
    0) and their p99 latency under attack; fails if any of them saw an error or memory grew.
    """
    session.install(".[test]")
    session.run("python", "-P", "tools/soak.py", *session.posargs)


@nox.session
def fmt(session: nox.Session) -> None:
    """Rewrite the code in the house format (ruff format, import order)."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", "--select", "I", "--fix", ".")
    session.run("ruff", "format", ".")


# The benchmark's tools live beside the repository (read-only); TRIO_ECHO_TOOLS overrides.
BENCH_TOOLS = Path(os.environ.get("TRIO_ECHO_TOOLS", Path(__file__).parent / "../shared/tools"))
BENCH_PEERS = ["gevent", "uvloop", "websockets"]
BENCH_PARTS = (
    "tcp",
    "ws",
    "startup",
    "workers",
    "tracer",
    "wsdeflate",
    "feed-redis",
    "udp",
    "page",
    "watch",
    "tls",
)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks, not in the default sessions: ``nox -s bench [-- PART ...]``.

    Parts (all by default): ``tcp`` (run_peers.sh: the default serve against
    asyncio+uvloop, gevent and idiomatic Trio, then ``--engine tasks`` against
    gevent, then ``--engine trio`` against idiomatic Trio and gevent), ``ws``
    (/ws/echo against websockets' asyncio server, Node client),
    ``startup`` (start to ready), ``workers`` (``--workers 1`` against 2) and
    ``tracer`` (echo and many-tasks with the scheduler tracer off, on, watched),
    ``wsdeflate`` (/ws/echo with permessage-deflate, compressible JSON, against
    websockets' asyncio server with and without its default deflate:
    run_ws_deflate.sh; then the feed's fan-out with and without deflate:
    sidebyside.py feed; ``ROUNDS``, ``SCENARIOS`` and ``DURATION`` pass through,
    ``DURATION=1 ROUNDS=1`` is a smoke run), ``feed-redis`` (two instances on
    one Redis Stream: fan-out lag, an outage, echo ratio), ``udp`` (run_udp.sh:
    UDP echo against asyncio+uvloop's datagram peer, naive Trio and C; issue 11),
    ``page`` (the page's frame times in Chromium with 10,000 stepping tasks),
    ``watch`` (trio_naive.py under echoload s2 and a 1,000-task relay: plain, under
    ``trio-echo watch``, and with its page open; then 20 stalls in a row; docs/watch.md)
    and ``tls`` (tls/run_tls.sh: TLS echo against asyncio+uvloop, gevent and
    idiomatic Trio, t1 64 B, t2 16 KiB, t3 idle memory; ``TLS_SCENARIOS``,
    ``TLS_DURATION`` and ``TLS_ROUNDS`` override, e.g. ``TLS_DURATION=1
    TLS_ROUNDS=1`` for a smoke run).
    ``tcp`` also runs s2 without and s2p with ``--proxy-protocol v2``, alternating, for the
    PROXY header's cost (issue 11's target: s2p >= 0.97x s2).
    Needs gcc, taskset and node/npm; prints Markdown tables (docs/performance.md).
    """
    parts = session.posargs or list(BENCH_PARTS)
    unknown = set(parts) - set(BENCH_PARTS)
    if unknown:
        session.error(f"unknown parts {sorted(unknown)}; expected some of {BENCH_PARTS}")
    session.install(".", *BENCH_PEERS)
    tools = BENCH_TOOLS.resolve()
    work = Path(session.create_tmp()).resolve() / "bench"
    python = str(Path(session.bin) / "python")
    serve = f"{Path(session.bin) / 'trio-echo'} serve --tcp-port {{port}} --http-port 0"
    env = {"PY": python, "SCENARIOS": "s2 s4 s5", "ROUNDS": "2"}
    if "tcp" in parts:
        # Two runs of the unmodified script: each ratio comes from one run.
        runs = [
            ("default", serve, ["asyncio_uvloop_proto", "gevent_seed", "trio_naive"]),
            ("tasks", f"{serve} --engine tasks", ["gevent_seed"]),
            # The portable engine (issue 15's target: at or above idiomatic Trio).
            ("trio", f"{serve} --engine trio", ["trio_naive", "gevent_seed"]),
        ]
        for name, command, peers in runs:
            out = work / f"tcp-{name}"
            session.run(
                "bash",
                str(tools / "bench/run_peers.sh"),
                "project",
                *peers,
                env={**env, "WORK": str(out), "PROJECT_CMD": f"{command} --log-level warning"},
                external=True,
            )
            session.log((out / "results/peers.md").read_text())
        # Issue 11: the PROXY header's cost. The runner has one PROJECT_CMD per run, so the
        # plain server (s2) and the one requiring a v2 header (s2p) alternate, one round each.
        for rnd in (1, 2):
            for name, command, scenario in (
                ("plain", serve, "s2"),
                ("proxy-v2", f"{serve} --proxy-protocol v2", "s2p"),
            ):
                out = work / f"tcp-{name}-{rnd}"
                session.run(
                    "bash",
                    str(tools / "bench/run_peers.sh"),
                    "project",
                    env={
                        **env,
                        "SCENARIOS": scenario,
                        "ROUNDS": "1",
                        "WORK": str(out),
                        "PROJECT_CMD": f"{command} --log-level warning",
                    },
                    external=True,
                )
                session.log(f"{name} round {rnd}:\n" + (out / "results/peers.md").read_text())
    if "udp" in parts:
        out = work / "udp"
        udp_serve = (
            f"{Path(session.bin) / 'trio-echo'} serve --tcp-port 0 --http-port 0 "
            "--udp-port {port} --log-level warning"
        )
        session.run(
            "bash",
            str(tools / "udp/run_udp.sh"),
            "project",
            "asyncio_uvloop_udp",
            "trio_udp",
            "c_udp",
            env={"PY": python, "ROUNDS": "2", "WORK": str(out), "PROJECT_CMD": udp_serve},
            external=True,
        )
    if "ws" in parts:
        wsload = work / "wsload"
        wsload.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "wsload.js"):
            shutil.copy(tools / "ws" / name, wsload / name)
        with session.chdir(wsload):
            session.run("npm", "install", "--silent", external=True)
        session.run(
            "python",
            "-P",
            "tools/sidebyside.py",
            "ws",
            "--wsload",
            str(wsload),
            "--peer",
            str(tools / "ws/websockets_asyncio.py"),
        )
    if "startup" in parts:
        session.run("python", "-P", "tools/sidebyside.py", "startup")
    if "workers" in parts:
        echoload = _build_echoload(session, tools, work)
        session.run("python", "-P", "tools/sidebyside.py", "workers", "--echoload", str(echoload))
    if "tracer" in parts:
        session.run("python", "-P", "tools/tracer_overhead.py", env={"TRIO_ECHO_TOOLS": str(tools)})
    if "wsdeflate" in parts:
        # issue 12: the runner picks the ports; the project serves /ws/echo on {port}.
        web = f"{Path(session.bin) / 'trio-echo'} serve --tcp-port 0 --http-port {{port}}"
        session.run(
            "bash",
            str(tools / "ws/run_ws_deflate.sh"),
            "project",
            "websockets_deflate",
            "websockets_nodeflate",
            env={
                "PY": python,
                "ROUNDS": os.environ.get("ROUNDS", "2"),
                "WORK": str(work / "wsdeflate"),
                "PROJECT_CMD": f"{web} --log-level warning",
            },
            external=True,
        )
        # The feed's fan-out with and without deflate (100 subscribers, 10k events/s).
        rounds = ["--rounds", os.environ.get("ROUNDS", "2")]
        duration = ["--duration", os.environ["DURATION"]] if "DURATION" in os.environ else []
        session.run("python", "-P", "tools/sidebyside.py", "feed", *rounds, *duration)
    if "feed-redis" in parts:
        # Issue 13: the shared feed on a local redis-server (tools/feed_redis.py says what).
        echoload = _build_echoload(session, tools, work)
        # FEED_REDIS_ARGS picks cells and sizes, e.g. "fanout --duration 1" for a smoke run.
        extra = shlex.split(os.environ.get("FEED_REDIS_ARGS", ""))
        session.run("python", "-P", "tools/feed_redis.py", "--echoload", str(echoload), *extra)
    if "tls" in parts:
        # Issue 11.  The runner substitutes {port}, {cert} and {key} (its EC P-256 certificate,
        # the same one the peers use).
        tls_serve = (
            f"{Path(session.bin) / 'trio-echo'} serve --tcp-port 0 --http-port 0 "
            "--https-port 0 --tls-port {port} --tls-cert {cert} --tls-key {key} --log-level warning"
        )
        tls_env = {
            "PY": python,
            "WORK": str(work / "tls"),
            "PROJECT_CMD": tls_serve,
            "ROUNDS": os.environ.get("TLS_ROUNDS", "2"),
            "SCENARIOS": os.environ.get("TLS_SCENARIOS", "t1 t2 t3"),
        }
        if "TLS_DURATION" in os.environ:
            tls_env["DURATION"] = os.environ["TLS_DURATION"]
        session.run(
            "bash",
            str(tools / "tls/run_tls.sh"),
            "project",
            "asyncio_uvloop_tls",
            "gevent_tls",
            "trio_naive_tls",
            env=tls_env,
            external=True,
        )
    if "page" in parts:
        # Issue 10: frame time p95 with 10,000 stepping tasks (target < 50 ms). Debian's
        # Chromium, driven by the browser tests' harness (not -P: it is the tests' package).
        session.install("playwright")
        session.run("python", "-m", "tests.browser.frames", "--seconds", "10")
    if "watch" in parts:
        session.run("python", "-P", "tools/watch_overhead.py", env={"TRIO_ECHO_TOOLS": str(tools)})


def _build_echoload(session: nox.Session, tools: Path, work: Path) -> Path:
    """Compile the shared C load generator into *work* (the parts that drive echoload)."""
    echoload = work / "echoload"
    echoload.parent.mkdir(parents=True, exist_ok=True)
    session.run(
        "gcc",
        "-O2",
        "-o",
        str(echoload),
        str(tools / "bench/echoload.c"),
        "-lpthread",
        external=True,
    )
    return echoload
