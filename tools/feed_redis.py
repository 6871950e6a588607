"""``nox -s bench -- feed-redis``: the shared feed on one local ``redis-server``, measured.

A developer tool, not part of the server.  It starts a ``redis-server`` (no
persistence) and two ``trio-echo serve --feed redis://...`` instances, then:

* ``fanout``: one ``trio-echo bench --feed`` client per instance, each with
  half the subscribers and making its instance publish half the rate: every
  subscriber sees the whole stream (both instances).  Two phases, as the
  bench does them: all reading, then one stalled subscriber added.
  Target (issue 13): lag p99 under 150 ms and zero gaps while Redis is
  healthy; the stalled subscriber moves the others' p99 by under 10%.
* ``outage``: the same load, with Redis killed after ``--outage-at`` seconds
  and restarted ``--outage`` seconds later: bench errors (echo failures) must
  be zero; the gaps are what the outage cost.
* ``echo`` (with ``--echoload``): the C load generator against ``--feed
  memory`` and ``--feed redis://...``, rounds interleaved: the ratio
  redis/memory (target >= 0.95: echo never waits on Redis).

Prints Markdown tables.  Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

from app.child import self_command

LISTEN_TIMEOUT: Final = 20.0
LISTENING: Final = "web listening on http://127.0.0.1:"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}: {proc.args!r}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Redis:
    """A ``redis-server`` on a loopback port, killable and restartable on that port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?stream=bench"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@contextmanager
def _serve(feed: str, tcp_port: int = 0, *, core: int | None = None) -> Any:
    """A ``serve`` process, pinned to *core* if given; yields ``(tcp port, web port)``."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    argv = pin + self_command("serve", "--tcp-port", str(tcp_port), "--http-port", "0")
    argv += ["--feed", feed, "--log-level", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        tcp = int(proc.stdout.readline().rsplit(":", 1)[1])
        web = int(proc.stdout.readline().strip().removeprefix(LISTENING))
        yield tcp, web
    finally:
        _stop(proc)


def _bench(web: int, subscribers: int, rate: int, duration: float) -> subprocess.Popen[str]:
    argv = self_command("bench", "--feed", f"ws://127.0.0.1:{web}/ws/events", "--json")
    argv += ["--connections", str(subscribers), "--rate", str(rate)]
    argv += ["--duration", str(duration), "--warmup", "1"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    try:
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"error": f"bench exited with {proc.returncode}", "phases": []}
    return result


def run_fanout(args: argparse.Namespace, redis: Redis, outage: bool) -> list[str]:
    """Two instances, two bench clients; with *outage*, Redis dies and comes back mid-run."""
    with ExitStack() as stack:
        instances = [stack.enter_context(_serve(redis.url)) for _ in range(2)]
        half_subs = max(1, args.subscribers // 2)
        half_rate = max(1, args.rate // 2)
        benches = [_bench(web, half_subs, half_rate, args.duration) for _, web in instances]
        killer = None
        if outage:

            def outage_now() -> None:
                time.sleep(1 + args.outage_at)
                redis.kill()
                time.sleep(args.outage)
                redis.start()

            killer = threading.Thread(target=outage_now, daemon=True)
            killer.start()
        results = [_result(b) for b in benches]
        if killer is not None:
            killer.join()
    title = "Redis killed and restarted mid-run" if outage else "shared feed fan-out"
    lines = [
        f"## {title}: 2 instances, {args.rate} events/s in all, "
        f"{2 * half_subs} subscribers, {args.duration:g} s per phase",
        "",
        "| instance | phase | events/s seen | lag p50 ms | p99 median ms | p99 worst ms | gaps |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, result in enumerate(results):
        if "error" in result and not result.get("phases"):
            lines.append(f"| {i + 1} | error: {result['error']} | | | | | |")
        for phase in result.get("phases", []):
            lines.append(
                f"| {i + 1} | {phase['phase']} | {phase['events_per_s']:.0f} "
                f"| {phase['lag_p50_us'] / 1000:.1f} | {phase['lag_p99_median_us'] / 1000:.1f} "
                f"| {phase['lag_p99_worst_us'] / 1000:.1f} | {phase['gaps']} |"
            )
        errors = result.get("errors") or {}
        if errors:
            lines.append(f"| {i + 1} | bench errors | {errors} | | | | |")
    return lines


def run_echo(args: argparse.Namespace, redis: Redis) -> list[str]:
    """``--feed memory`` against ``--feed redis://``, interleaved rounds of the C echoload."""
    rates: dict[str, list[float]] = {"memory": [], "redis": []}
    for r in range(args.rounds):
        order = ("memory", "redis") if r % 2 == 0 else ("redis", "memory")
        for name in order:
            port = _free_port()
            # Pinned like every echo benchmark here (server core 0, client core 1): unpinned,
            # the server shared cores with redis-server and the client, and read 0.89x.
            with _serve("memory" if name == "memory" else redis.url, port, core=0):
                client = ["taskset", "-c", "1", args.echoload, "-p", str(port), "-c", "100"]
                client += ["-s", "64", "-d", str(args.duration)]
                done = subprocess.run(client, capture_output=True, text=True, timeout=600)
            try:
                rates[name].append(float(json.loads(done.stdout.splitlines()[-1])["msgs_per_s"]))
            except (IndexError, ValueError, KeyError):
                rates[name].append(0.0)
    memory, shared = statistics.median(rates["memory"]), statistics.median(rates["redis"])
    return [
        f"## echo with the feed in memory vs in Redis (100 x 64 B, {args.rounds} rounds)",
        "",
        "| feed | msgs/s (median) | ratio |",
        "|---|---|---|",
        f"| memory | {memory:.0f} | 1.00x |",
        f"| redis | {shared:.0f} | {shared / memory if memory else 0:.2f}x |",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P tools/feed_redis.py", description=__doc__)
    parser.add_argument("cells", nargs="*", default=["fanout", "outage", "echo"])
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--rate", type=int, default=10_000, help="events/s in all")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--outage-at", type=float, default=2.0)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--echoload", help="the built echoload binary (for the echo cell)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not Path(args.redis_server).exists() and not shutil.which(args.redis_server):
        print(f"feed_redis: {args.redis_server} not found", file=sys.stderr)
        return 2
    redis = Redis(args.redis_server)
    redis.start()
    lines: list[str] = []
    try:
        for cell in args.cells:
            if cell == "fanout":
                lines += [*run_fanout(args, redis, outage=False), ""]
            elif cell == "outage":
                lines += [*run_fanout(args, redis, outage=True), ""]
            elif cell == "echo" and args.echoload:
                lines += [*run_echo(args, redis), ""]
            elif cell != "echo":
                parser.error(f"unknown cell {cell!r}; expected fanout, outage, echo")
    finally:
        redis.kill()
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
