"""What ``trio-echo watch`` costs the program it watches: echo throughput and a scheduler-bound
microbenchmark, plain, under ``watch`` with nobody on the page, and with the page open.

A benchmark, not a test: ``nox -s bench -- watch`` (or ``python -P tools/watch_overhead.py``).

* echo: the shared peer ``../shared/tools/bench/trio_naive.py`` (idiomatic ``serve_tcp``)
  pinned to core 0, loaded by ``echoload`` scenario s2 (100 connections, 64-byte ping-pong,
  every byte verified) pinned to core 1.  Target (issue 10): >= 0.95x plain with nobody on
  the page, >= 0.80x with the page open.
* relay: ``tools/watch_relay.py``, 1,000 tasks passing a token through memory channels; its
  own timing (hops per second), so start-up is not counted.

* stalls: ``tools/watch_stalls.py``, 20 stalls of 2 s in a row under ``watch`` with
  ``--stall-threshold 1``; for each, how long after the step began the page (``/ws/events``)
  had its first ``stall`` event and ``ps`` (``/api/tasks``, polled) showed the task
  ``stalled`` at the right line.  Target: within threshold + 0.5 s, every time.

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
import time
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


STALLS = 20
STALL_SECONDS = 2.0
STALL_THRESHOLD = 1.0


async def stall_latencies(count: int) -> tuple[list[float], list[float]]:
    """Seconds from each stall's start to the page's first ``stall`` event, and to ``ps``."""
    argv = [sys.executable, str(HERE / "watch_stalls.py"), str(count), str(STALL_SECONDS)]
    cmd = self_command("watch", "--exit", "--http-port", "0", "--log-level", "warning")
    cmd += ["--stall-threshold", str(STALL_THRESHOLD), "--", *argv]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    starts: dict[int, float] = {}
    page: dict[int, float] = {}
    ps: dict[int, float] = {}
    head = b""
    while not (match := WEB.search(head)):
        chunk = await proc.stdout.receive_some(4096)
        if not chunk:
            raise RuntimeError("watch did not start")
        head += chunk
    url = match.group(1).decode()
    async with trio.open_nursery() as nursery:

        async def read_child() -> None:
            assert proc.stdout is not None
            out = head[match.end() :]
            while True:
                *lines, out = out.split(b"\n")
                for line in lines:
                    if line.startswith(b'{"stall"'):
                        record = json.loads(line)
                        starts[record["stall"]] = record["start"]
                chunk = await proc.stdout.receive_some(65536)
                if not chunk:
                    break
                out += chunk
            nursery.cancel_scope.cancel()

        nursery.start_soon(read_child)

        async def read_page() -> None:
            ws_url = url.replace("http://", "ws://") + "/ws/events"
            try:
                async with open_websocket_url(ws_url, max_message_size=FEED_MESSAGE) as ws:
                    while True:
                        message = json.loads(await ws.get_message())
                        for e in message.get("events", []):
                            i = len(starts) - 1
                            if e["kind"] == "stall" and i >= 0 and i not in page:
                                page[i] = time.perf_counter() - starts[i]
            except ConnectionClosed:
                return  # watch exited with its child

        async def poll_ps() -> None:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            while True:
                await trio.sleep(0.05)
                i = len(starts) - 1
                if i < 0 or i in ps:
                    continue
                body = b""
                try:
                    async with await trio.open_tcp_stream(host, int(port)) as stream:
                        await stream.send_all(b"GET /api/tasks HTTP/1.0\r\n\r\n")
                        while chunk := await stream.receive_some(65536):
                            body += chunk
                except (OSError, trio.BrokenResourceError):
                    return  # watch exited with its child
                if b'"stalled"' in body and b"watch_stalls.py" in body:
                    ps[i] = time.perf_counter() - starts[i]

        nursery.start_soon(read_page)
        nursery.start_soon(poll_ps)
    await proc.wait()
    return [page.get(i, float("inf")) for i in range(count)], [
        ps.get(i, float("inf")) for i in range(count)
    ]


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


async def stall_bench(count: int) -> None:
    page, ps = await stall_latencies(count)
    limit = STALL_THRESHOLD + 0.5
    print(f"\n{count} stalls of {STALL_SECONDS:g} s, --stall-threshold {STALL_THRESHOLD:g}")
    print("| seen by | within threshold + 0.5 s | median s | max s |")
    print("|---|---|---|---|")
    for name, values in (("page (stall event)", page), ("ps (/api/tasks)", ps)):
        within = sum(v <= limit for v in values)
        median, worst = statistics.median(values), max(values)
        print(f"| {name} | {within}/{count} | {median:.2f} | {worst:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="echo load per cell (default 5)")
    parser.add_argument("--stalls", type=int, default=STALLS, help="stalls in a row (default 20)")
    parser.add_argument(
        "--parts", default="overhead,stalls", help="overhead, stalls or both (the default)"
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "overhead" in parts:
        trio.run(bench, args.rounds, args.seconds)
    if "stalls" in parts:
        trio.run(stall_bench, args.stalls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
