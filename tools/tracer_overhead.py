"""What the scheduler tracer costs: echo throughput and many-tasks, with it off, on, and watched.

A benchmark, not a test: ``nox -s bench -- tracer`` (or ``python -P tools/tracer_overhead.py``).

* TCP echo: 100 connections, 64-byte ping-pong, for ``--seconds``, measured by the shared C load
  generator (``../shared/tools/bench/echoload.c``, every byte verified) pinned to core 1, the
  server pinned to core 0; once per echo engine (``tasks``: every connection is a traced task;
  ``epoll``: one task serves them all).
* many-tasks: the scenario with 10,000 tasks, started over the control channel; its own
  summary gives the spawn and join times.

Three ways each: ``--trace off`` (only the light task watcher), ``--trace on`` with nobody
watching, and ``--trace on`` with a subscriber reading ``/ws/events`` the whole time (it does
what a browser's socket does; the server's work is the same).  Rounds are interleaved and the
table shows medians and the loss against ``off``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from app.child import self_command
from app.ready import parse_ready

HERE = Path(__file__).resolve().parent
# The shared tools live beside the repository; TRIO_ECHO_TOOLS overrides (as in the noxfile).
TOOLS = Path(os.environ.get("TRIO_ECHO_TOOLS", HERE.parents[2] / "shared" / "tools"))
ECHOLOAD_SOURCE = TOOLS / "bench" / "echoload.c"
MODES = ("off", "on", "on+watched")
# Largest feed message the watchers accept (a batch of 1,000 events is well under).
FEED_MESSAGE = 1 << 24


def build_echoload(work: Path) -> Path:
    binary = work / "echoload"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(ECHOLOAD_SOURCE), "-lpthread"], check=True)
    return binary


async def start_server(engine: str, trace: str) -> tuple[trio.Process, int, int]:
    cmd = ["taskset", "-c", "0", *self_command("serve")]
    cmd += ["--tcp-port", "0", "--http-port", "0", "--engine", engine, "--trace", trace]
    cmd += ["--log-level", "warning"]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = b""
    while (ready := parse_ready(out)) is None:
        chunk = await proc.stdout.receive_some(1000)
        if not chunk:
            raise RuntimeError("the server did not start")
        out += chunk
    return proc, ready.tcp_port, ready.web_port


def feed_url(http: int) -> str:
    return f"ws://127.0.0.1:{http}/ws/events"


async def watch(http: int, done: trio.Event) -> None:
    """Read the feed like the page does, until *done*."""
    async with open_websocket_url(feed_url(http), max_message_size=FEED_MESSAGE) as ws:
        while not done.is_set():
            with trio.move_on_after(0.5):
                await ws.get_message()


async def echo_rate(echoload: Path, tcp: int, seconds: float) -> float:
    load = ["taskset", "-c", "1", str(echoload), "-p", str(tcp)]
    load += ["-c", "100", "-s", "64", "-d", str(seconds)]
    done = await trio.run_process(load, capture_stdout=True, capture_stderr=True)
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return float(result["msgs_per_s"])


async def many_tasks(http: int) -> dict[str, Any]:
    start = {"type": "start", "scenario": "many-tasks", "params": {"tasks": 10000}}
    async with open_websocket_url(feed_url(http), max_message_size=FEED_MESSAGE) as ws:
        await ws.send_message(json.dumps(start))
        run = None
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] == "reply":
                run = message["run"]
            if message["type"] == "events":
                for event in message["events"]:
                    if event["kind"] == "run_end" and event.get("run") == run:
                        return dict(event["summary"])


async def one(echoload: Path, engine: str, mode: str, seconds: float) -> tuple[float, float, float]:
    proc, tcp, http = await start_server(engine, "off" if mode == "off" else "on")
    done = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            if mode == "on+watched":
                nursery.start_soon(watch, http, done)
                await trio.sleep(0.5)
            rate = await echo_rate(echoload, tcp, seconds)
            summary = await many_tasks(http)
            done.set()
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    return rate, float(summary["spawn_ms"]), float(summary["join_ms"])


async def bench(rounds: int, seconds: float) -> None:
    if not shutil.which("taskset") or not shutil.which("gcc"):
        raise SystemExit("needs taskset and gcc")
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        echoload = build_echoload(Path(work))
        for r in range(rounds):
            order = [(e, m) for e in ("tasks", "epoll") for m in MODES]
            if r % 2:
                order.reverse()  # interleave, so drift hits every cell alike
            for engine, mode in order:
                rate, spawn, join = await one(echoload, engine, mode, seconds)
                results.setdefault((engine, mode), []).append((rate, spawn, join))
                line = f"round {r + 1} {engine:5} {mode:10} {rate:9.0f} msgs/s"
                print(f"{line}  many-tasks spawn {spawn:6.1f} ms join {join:6.1f} ms", flush=True)
    python = sys.version.split()[0]
    print(f"\nmedians of {rounds} rounds, {seconds:g} s each; {os.cpu_count()} cores; {python}")
    print("| engine | tracer | echo msgs/s | vs off | many-tasks spawn ms | join ms |")
    print("|---|---|---|---|---|---|")
    for engine in ("tasks", "epoll"):
        base = statistics.median(x[0] for x in results[(engine, "off")])
        for mode in MODES:
            cell = results[(engine, mode)]
            rate = statistics.median(x[0] for x in cell)
            spawn = statistics.median(x[1] for x in cell)
            join = statistics.median(x[2] for x in cell)
            loss = rate / base - 1
            print(f"| {engine} | {mode} | {rate:,.0f} | {loss:+.1%} | {spawn:.1f} | {join:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell (default 5)")
    args = parser.parse_args()
    trio.run(bench, args.rounds, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
