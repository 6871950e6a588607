"""Side-by-side comparisons for ``nox -s bench``: websocket echo, start-to-ready, workers.

A developer tool, not part of the server: it starts servers and load
generators as processes, one cell at a time, and prints Markdown tables.
The TCP comparison is ``../shared/tools/bench/run_peers.sh`` itself; this
module does what that script does not:

* ``ws``: ``trio-echo serve`` against the websockets library's asyncio echo
  server (``../shared/tools/ws/websockets_asyncio.py``), server pinned to
  core 0, the Node client ``wsload.js`` pinned to core 1, rounds interleaved
  (even rounds in reverse order), medians and ratios;
* ``startup``: seconds from spawning ``trio-echo serve`` to its two
  listening lines;
* ``workers``: ``serve --workers 1`` against ``--workers 2`` under the C
  ``echoload`` client (pinned to core 1; the servers are not pinned).

Ratios from one run are the figures to quote: the machine is shared, and
absolute numbers move 10-30% from run to run.  Each cell records the load
average before it, so a noisy cell can be told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from app.child import self_command
from app.ready import parse_ready

# A server must listen within this long after it was spawned.
LISTEN_TIMEOUT: Final = 20.0
# Pause between cells, so that sockets in TIME_WAIT and CPU caches settle.
SETTLE: Final = 1.0
WS_CASES: Final = ((100, 64), (100, 16384), (1000, 64), (1000, 16384))
WORKER_CASES: Final = ((100, 64), (1000, 1024))
BASE_PORT: Final = 18400


def _free_port(start: int) -> int:
    port = start
    while True:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                port += 1


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.args!r}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {proc.args!r}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _cell(server: list[str], port: int, client: list[str]) -> dict[str, Any]:
    """Start *server*, run *client* once it listens on *port*, stop the server; the JSON line."""
    load = _loadavg()
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        time.sleep(0.5)
        done = subprocess.run(client, capture_output=True, text=True, timeout=600)
    finally:
        _stop(proc)
    time.sleep(SETTLE)
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"error": done.stderr.strip()[-300:]}
    result["loadavg_before"] = load
    return result


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _rate(x: float) -> str:
    return f"{x / 1000:.1f}k"


def run_ws(args: argparse.Namespace) -> list[str]:
    """The websocket echo comparison; returns the report's lines."""
    trio_echo = self_command("serve", "--tcp-port", "0", "--log-level", "warning")
    servers: dict[str, Callable[[int], list[str]]] = {
        "websockets_asyncio": lambda port: [args.peer_python, args.peer, str(port)],
        "trio-echo": lambda port: [*trio_echo, "--http-port", str(port)],
    }
    paths = {"websockets_asyncio": "/", "trio-echo": "/ws/echo"}
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    port = BASE_PORT
    for r in range(args.rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for conns, size in WS_CASES:
            for name in order:
                port = _free_port(port + 1)
                client = ["taskset", "-c", "1", "node", str(Path(args.wsload) / "wsload.js")]
                client += [f"ws://127.0.0.1:{port}{paths[name]}", str(conns), str(size)]
                client += [str(args.duration), "pingpong"]
                server = ["taskset", "-c", "0", *servers[name](port)]
                result = _cell(server, port, client)
                cells.setdefault((name, conns, size), []).append(result)
                errors = result.get("errors", {}).get("total", "?")
                print(
                    f"round {r + 1} {name:20} {conns:5} x {size:5} B: "
                    f"{result.get('msgs_per_s', 0):8} msgs/s errors {errors} "
                    f"load {result['loadavg_before']}",
                    file=sys.stderr,
                    flush=True,
                )
    lines = [
        f"## Websocket echo, ping-pong, {args.rounds} rounds of {args.duration:g} s, medians",
        "",
        "| conns x size | websockets asyncio | trio-echo /ws/echo | ratio | p99 (peer / ours) "
        "| errors | msgs/s each round (peer; ours) |",
        "|---|---|---|---|---|---|---|",
    ]
    for conns, size in WS_CASES:
        peer = cells[("websockets_asyncio", conns, size)]
        ours = cells[("trio-echo", conns, size)]
        a = _median([c.get("msgs_per_s", 0) for c in peer])
        b = _median([c.get("msgs_per_s", 0) for c in ours])
        p99a = _median([c.get("lat_us", {}).get("p99") or 0 for c in peer])
        p99b = _median([c.get("lat_us", {}).get("p99") or 0 for c in ours])
        errors = sum(c.get("errors", {}).get("total", 1) for c in peer + ours)
        each = ", ".join(_rate(c.get("msgs_per_s", 0)) for c in peer)
        each += "; " + ", ".join(_rate(c.get("msgs_per_s", 0)) for c in ours)
        lines.append(
            f"| {conns} x {size} B | {_rate(a)} | {_rate(b)} | {b / a if a else 0:.2f}x | "
            f"{p99a / 1000:.1f} / {p99b / 1000:.1f} ms | {errors} | {each} |"
        )
    return lines


def run_startup(args: argparse.Namespace) -> list[str]:
    """Start-to-ready of ``trio-echo serve``; returns the report's lines."""
    times = []
    for _ in range(args.runs):
        start = time.monotonic()
        proc = subprocess.Popen(
            self_command("serve", "--tcp-port", "0", "--http-port", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        out = b""
        while parse_ready(out) is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("trio-echo serve exited before it was ready")
            out += line
        times.append(time.monotonic() - start)
        _stop(proc)
        proc.stdout.close()
    return [
        f"## Start to ready (spawn to both listening lines), {args.runs} runs",
        "",
        f"median {_median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s",
    ]


def run_workers(args: argparse.Namespace) -> list[str]:
    """``--workers 1`` against ``--workers 2``; returns the report's lines."""
    cells: dict[tuple[int, int, int], list[float]] = {}
    port = BASE_PORT + 300
    for r in range(args.rounds):
        for workers in (1, 2) if r % 2 == 0 else (2, 1):
            for conns, size in WORKER_CASES:
                port = _free_port(port + 1)
                server = self_command("serve", "--workers", str(workers))
                server += ["--tcp-port", str(port), "--http-port", "0", "--log-level", "warning"]
                client = ["taskset", "-c", "1", args.echoload, "-p", str(port), "-c", str(conns)]
                client += ["-s", str(size), "-d", str(args.duration)]
                result = _cell(server, port, client)
                rate = float(result.get("msgs_per_s", 0))
                cells.setdefault((workers, conns, size), []).append(rate)
                print(
                    f"round {r + 1} workers={workers} {conns} x {size} B: {rate:.0f} msgs/s "
                    f"load {result['loadavg_before']}",
                    file=sys.stderr,
                    flush=True,
                )
    lines = [
        f"## serve --workers 1 vs 2 (client on core 1, servers unpinned), {args.rounds} rounds",
        "",
        "| conns x size | 1 worker | 2 workers | ratio |",
        "|---|---|---|---|",
    ]
    for conns, size in WORKER_CASES:
        one = _median(cells[(1, conns, size)])
        two = _median(cells[(2, conns, size)])
        lines.append(
            f"| {conns} x {size} B | {_rate(one)} | {_rate(two)} | {two / one if one else 0:.2f}x |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run one part of the side-by-side benchmark and print its Markdown table."""
    parser = argparse.ArgumentParser(prog="python -P tools/sidebyside.py", description=__doc__)
    parts = parser.add_subparsers(dest="part", required=True)
    ws = parts.add_parser("ws", help="websocket echo against websockets' asyncio server")
    ws.add_argument("--wsload", required=True, help="folder with wsload.js and its node_modules")
    ws.add_argument("--peer", required=True, help="path of websockets_asyncio.py")
    ws.add_argument("--peer-python", default=sys.executable, help="Python that has websockets")
    ws.add_argument("--rounds", type=int, default=2)
    ws.add_argument("--duration", type=float, default=5.0)
    ws.set_defaults(run=run_ws)
    startup = parts.add_parser("startup", help="start to ready")
    startup.add_argument("--runs", type=int, default=5)
    startup.set_defaults(run=run_startup)
    workers = parts.add_parser("workers", help="--workers 1 against --workers 2")
    workers.add_argument("--echoload", required=True, help="the built echoload binary")
    workers.add_argument("--rounds", type=int, default=2)
    workers.add_argument("--duration", type=float, default=5.0)
    workers.set_defaults(run=run_workers)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print("\n".join(args.run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
