"""What ``trio-echo watch`` costs the program it watches: echo throughput and a scheduler-bound
microbenchmark, plain, under ``watch`` with nobody on the page, and with the page open.

A benchmark, not a test: ``nox -s bench -- watch`` (or ``python -P tools/watch_overhead.py``).

* echo: the shared peer ``../shared/tools/bench/trio_naive.py`` (idiomatic ``serve_tcp``)
  pinned to core 0, loaded by ``echoload`` scenario s2 (100 connections, 64-byte ping-pong,
  every byte verified) pinned to core 1.  Target (issue 10): >= 0.95x plain with nobody on
  the page, >= 0.80x with the page open.
* relay: ``tools/watch_relay.py``, 1,000 tasks passing a token through memory channels; its
  own timing (hops per second), so start-up is not counted.

"page" reads ``/ws/events`` the whole time, as the browser's socket does.  Rounds are
interleaved; the table shows medians and the ratio to plain.  ``--seconds 1 --rounds 1`` is
a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from app.child import self_command

HERE = Path(__file__).resolve().parent
# The shared tools live beside the repository; TRIO_ECHO_TOOLS overrides (as in the noxfile).
TOOLS = Path(os.environ.get("TRIO_ECHO_TOOLS", HERE.parents[2] / "shared" / "tools"))
MODES = ("plain", "watch", "watch+page")
WEB = re.compile(rb"web listening on (http://127\.0\.0\.1:\d+)\n")
# Largest feed message the page reader accepts (a batch of 1,000 events is well under).
FEED_MESSAGE = 1 << 24
RELAY = (str(HERE / "watch_relay.py"), "1000", "200000")


def wrap(mode: str, argv: list[str]) -> list[str]:
    """*argv* as run in *mode*: as is, or as ``trio-echo watch`` 's child."""
    if mode == "plain":
        return argv
    web = ["--no-web"] if mode == "watch" else ["--http-port", "0"]
    return [*self_command("watch", "--exit", "--log-level", "warning", *web, "--"), *argv]


async def read_page(url: str, done: trio.Event) -> None:
    """Read the feed like the page does, until *done*."""
    ws_url = url.replace("http://", "ws://") + "/ws/events"
    try:
        async with open_websocket_url(ws_url, max_message_size=FEED_MESSAGE) as ws:
            while not done.is_set():
                with trio.move_on_after(0.5):
                    await ws.get_message()
    except (ConnectionClosed, HandshakeError, OSError):
        return  # watch exited with its child (--exit): the page goes with it


async def start(
    mode: str, argv: list[str], nursery: trio.Nursery, done: trio.Event
) -> trio.Process:
    """Start *argv* in *mode*; with the page, once ``watch`` printed its URL, open the page."""
    proc = await trio.lowlevel.open_process(
        wrap(mode, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    if mode == "watch+page":
        assert proc.stdout is not None
        out = b""
        while not (match := WEB.search(out)):
            chunk = await proc.stdout.receive_some(1000)
            if not chunk:
                raise RuntimeError("watch did not start")
            out += chunk
        nursery.start_soon(read_page, match.group(1).decode(), done)
    return proc


async def echo(echoload: Path, mode: str, seconds: float) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ["taskset", "-c", "0", sys.executable, str(TOOLS / "bench/trio_naive.py"), str(port)]
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        proc = await start(mode, server, nursery, done)
        try:
            with trio.fail_after(20):
                while True:
                    try:
                        await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                        break
                    except OSError:
                        await trio.sleep(0.05)  # the server is still starting
            load = ["taskset", "-c", "1", str(echoload), "-p", str(port)]
            load += ["-c", "100", "-s", "64", "-d", str(seconds)]
            result = await trio.run_process(load, capture_stdout=True, capture_stderr=True)
            return float(json.loads(result.stdout.decode().strip().splitlines()[-1])["msgs_per_s"])
        finally:
            done.set()
            proc.send_signal(signal.SIGTERM)  # watch passes it on; SIGINT may not be (a tty)
            with trio.move_on_after(5) as scope:
                await proc.wait()
            if scope.cancelled_caught:
                proc.kill()


async def relay(mode: str) -> float:
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        proc = await start(mode, [sys.executable, *RELAY], nursery, done)
        assert proc.stdout is not None
        out = b""
        while chunk := await proc.stdout.receive_some(65536):
            out += chunk
        await proc.wait()
        done.set()
    line = next(x for x in out.decode().splitlines() if x.startswith("{"))
    return float(json.loads(line)["hops_per_s"])


async def bench(rounds: int, seconds: float) -> None:
    if not shutil.which("taskset") or not shutil.which("gcc"):
        raise SystemExit("needs taskset and gcc")
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        echoload = Path(work) / "echoload"
        source = TOOLS / "bench/echoload.c"
        await trio.run_process(["gcc", "-O2", "-o", str(echoload), str(source), "-lpthread"])
        for r in range(rounds):
            order = list(MODES) if r % 2 == 0 else list(reversed(MODES))  # interleave: drift
            for mode in order:
                rate = await echo(echoload, mode, seconds)
                hops = await relay(mode)
                results.setdefault(("echo s2 msgs/s", mode), []).append(rate)
                results.setdefault(("relay 1,000 tasks hops/s", mode), []).append(hops)
                print(f"round {r + 1} {mode:10} echo {rate:9.0f} msgs/s  relay {hops:9.0f} hops/s")
    python = sys.version.split()[0]
    cores = os.cpu_count()
    print(f"\nmedians of {rounds} rounds, {seconds:g} s of load each; {cores} cores; {python}")
    print("| benchmark | plain | watch | vs plain | watch + page | vs plain |")
    print("|---|---|---|---|---|---|")
    for name in ("echo s2 msgs/s", "relay 1,000 tasks hops/s"):
        plain, watched, paged = (statistics.median(results[(name, m)]) for m in MODES)
        print(
            f"| {name} | {plain:,.0f} | {watched:,.0f} | {watched / plain:.2f}x "
            f"| {paged:,.0f} | {paged / plain:.2f}x |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="echo load per cell (default 5)")
    args = parser.parse_args()
    trio.run(bench, args.rounds, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
