"""Soak and abuse run: well-behaved clients keep echoing while hostile ones attack, for minutes.

Run with ``nox -s soak`` (or ``python -P tools/soak.py --seconds 120``); never part of the
default test run.  Loopback only, bounded in time and in connection counts.

It starts a real ``trio-echo serve`` process and runs, side by side:

* well-behaved TCP clients (ping-pong, 64 B, every echo checked, latency recorded) and
  well-behaved websocket clients;
* hostile clients, in waves: connect floods past ``--max-connections``, clients that send and
  never read, resets in the middle of large echoes, slowloris HTTP requests, websockets that
  send bad frames, garbage on the control channel, and a feed subscriber that stops reading.

Every few seconds it samples the server's RSS and open file descriptors.  At the end it prints
the samples and a summary, and exits 1 if any well-behaved client saw an error, or RSS or the fd
count kept growing (last third of the run vs. the first sample after warm-up, with a margin).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import time
from dataclasses import dataclass, field

import trio
from trio_websocket import open_websocket_url

from app.child import self_command
from app.ready import parse_ready

GOOD_TCP = 50
GOOD_WS = 10
MAX_CONNECTIONS = 300
SAMPLE_EVERY = 5.0
# RSS may grow this much over the run (allocator warm-up, caches) and still count as flat.
RSS_MARGIN = 1.3
# The feed's ring is bounded but fills at ~250 events/s here (~650 bytes each); a small one is
# full within the warm-up, so growth after it is growth, not the ring filling (limits.md).
FEED_CAPACITY = 2048
FD_MARGIN = 40


@dataclass
class Report:
    latencies: list[float] = field(default_factory=list)
    good_errors: list[str] = field(default_factory=list)
    good_echoes: int = 0
    hostile: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def count(self, what: str) -> None:
        self.hostile[what] = self.hostile.get(what, 0) + 1


def rss_and_fds(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss * 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def good_tcp(port: int, report: Report, stop: trio.Event) -> None:
    payload = os.urandom(64)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        while not stop.is_set():
            start = time.perf_counter()
            await stream.send_all(payload)
            got = b""
            while len(got) < len(payload):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    report.good_errors.append("tcp: server closed a well-behaved connection")
                    return
                got += chunk
            if got != payload:
                report.good_errors.append("tcp: echo differs from what was sent")
                return
            report.latencies.append(time.perf_counter() - start)
            report.good_echoes += 1
            await trio.sleep(0.01)


async def good_ws(url: str, report: Report, stop: trio.Event) -> None:
    async with open_websocket_url(url) as ws:
        while not stop.is_set():
            text = f"hello {random.random()}"
            start = time.perf_counter()
            await ws.send_message(text)
            if await ws.get_message() != text:
                report.good_errors.append("ws: echo differs from what was sent")
                return
            report.latencies.append(time.perf_counter() - start)
            report.good_echoes += 1
            await trio.sleep(0.02)


async def guarded(name: str, fn: object, report: Report, *args: object) -> None:
    """Run a well-behaved client; any exception is an error seen by a good client."""
    try:
        await fn(*args)  # type: ignore[operator]
    except Exception as exc:  # the soak's own boundary: record, never crash the run
        report.good_errors.append(f"{name}: {type(exc).__name__}: {exc}")


async def hostile_wave(tcp: int, http: int, report: Report) -> None:
    """One wave of every kind of abuse, each bounded; connections are closed at the end."""
    opened: list[trio.SocketStream] = []

    async def attempt(what: str, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # hostile clients expect to be cut off
        report.count(what)

    async def flood() -> None:
        for _ in range(MAX_CONNECTIONS):
            opened.append(await trio.open_tcp_stream("127.0.0.1", tcp))

    async def never_reads() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", tcp)
        opened.append(stream)
        with trio.move_on_after(1):
            while True:
                await stream.send_all(b"x" * 65536)

    async def reset_mid_echo() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", tcp)
        await stream.send_all(os.urandom(1 << 20))
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    async def slowloris() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", http)
        opened.append(stream)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            await stream.send_all(bytes([byte]))
            await trio.sleep(0.05)

    async def bad_frames() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", http)
        opened.append(stream)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        await stream.send_all(
            f"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await stream.send_all(bytes([0x81, 0x05]) + b"nomask")  # unmasked: 1002
        await stream.receive_some(4096)

    async def garbage_control() -> None:
        async with open_websocket_url(f"ws://127.0.0.1:{http}/ws/events") as ws:
            for junk in (
                "{",
                "[]",
                '{"type":"start","scenario":"nope"}',
                json.dumps({"type": "cancel", "run": 5}),
            ):
                await ws.send_message(junk)
            for _ in range(5):
                await ws.get_message()

    async def stuck_subscriber() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", http)
        opened.append(stream)
        await stream.send_all(
            f"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )  # and never read a byte

    try:
        async with trio.open_nursery() as nursery:
            for what, fn in (
                ("flood", flood),
                ("never-reads", never_reads),
                ("reset-mid-echo", reset_mid_echo),
                ("slowloris", slowloris),
                ("bad-frames", bad_frames),
                ("garbage-control", garbage_control),
                ("stuck-subscriber", stuck_subscriber),
            ):
                nursery.start_soon(attempt, what, fn())
            await trio.sleep(2)
    finally:
        for stream in opened:
            stream.socket.close()


async def soak(seconds: float, server_log: str) -> Report:
    report = Report()
    cmd = [
        *self_command("serve"), "--tcp-port", "0", "--http-port", "0",
        "--max-connections", str(MAX_CONNECTIONS), "--idle-timeout", "5", "--log-level", "warning",
        "--feed-capacity", str(FEED_CAPACITY),
    ]  # fmt: skip
    log_fd = os.open(server_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=log_fd)
    finally:
        os.close(log_fd)
    assert proc.stdout is not None
    out = b""
    while (ready := parse_ready(out)) is None:
        out += await proc.stdout.receive_some(1000)
    tcp, http = ready.tcp_port, ready.web_port
    stop = trio.Event()
    start = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(GOOD_TCP):
                nursery.start_soon(guarded, f"tcp {i}", good_tcp, report, tcp, report, stop)
            for i in range(GOOD_WS):
                nursery.start_soon(
                    guarded,
                    f"ws {i}",
                    good_ws,
                    report,
                    f"ws://127.0.0.1:{http}/ws/echo",
                    report,
                    stop,
                )

            async def sampler() -> None:
                while not stop.is_set():
                    rss, fds = rss_and_fds(proc.pid)
                    report.samples.append((time.monotonic() - start, rss, fds))
                    elapsed = time.monotonic() - start
                    print(f"{elapsed:6.0f} s  rss {rss / 2**20:7.1f} MiB  fds {fds:5d}", flush=True)
                    await trio.sleep(SAMPLE_EVERY)

            nursery.start_soon(sampler)
            while time.monotonic() - start < seconds:
                await hostile_wave(tcp, http, report)
            stop.set()
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(5):
            await proc.wait()
    return report


def verdict(report: Report) -> int:
    lat = sorted(report.latencies)
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
    print(f"\nwell-behaved echoes: {report.good_echoes}, errors: {len(report.good_errors)}")
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    print(f"latency of well-behaved clients under attack: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        "hostile clients run: " + ", ".join(f"{k} {v}" for k, v in sorted(report.hostile.items()))
    )
    for error in report.good_errors[:10]:
        print("  error:", error)
    warm = [s for s in report.samples if s[0] >= 2 * SAMPLE_EVERY] or report.samples
    tail = warm[len(warm) * 2 // 3 :] or warm
    rss_growth = max(s[1] for s in tail) / warm[0][1]
    fd_growth = max(s[2] for s in tail) - warm[0][2]
    first = warm[0][1] / 2**20
    print(f"RSS: {first:.1f} MiB after warm-up, at most x{rss_growth:.2f} later; fds: +{fd_growth}")
    flat = rss_growth <= RSS_MARGIN and fd_growth <= FD_MARGIN
    return 0 if flat and not report.good_errors else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="run time (default 120)")
    parser.add_argument("--server-log", default="soak-server.log", help="the server's log file")
    args = parser.parse_args()
    if not 10 <= args.seconds <= 3600:
        parser.error("--seconds must be within 10..3600")
    report = trio.run(soak, args.seconds, args.server_log)
    print(f"server log: {args.server_log}")
    return verdict(report)


if __name__ == "__main__":
    raise SystemExit(main())
