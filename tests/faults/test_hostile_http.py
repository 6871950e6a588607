"""Hostile HTTP against ``trio-echo serve`` as a process (issue 14): costs and logs stay bounded.

* Hundreds of connections that send a request prefix and stop cost about what
  silent connections cost (no polling), and are released as soon as they hang up.
* Running out of file descriptors at accept is one line, then a count a second.

The server runs as a child process so that its CPU time (``/proc/PID/stat``)
and its stderr are its own.  The CPU bound is a wide margin, not a benchmark.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from conftest import ENGINES, WS_ENGINES
from netclient import http_request
from procs import read_stderr, start_serve

# Connections held at once (the issue measured 200 and 300).
HELD = 250
# How long CPU is measured (the two seconds).
WINDOW = 2.0
# CPU-seconds over WINDOW that prefixes may cost beyond silent connections.  The
# old front, which polled every 10 ms, spent 1.0-1.7 s here on a quiet machine
# (0.3-0.4 s when the shared machine was so loaded that it got little CPU);
# reading costs ~0 (silent connections: ~0.01 s).
CPU_MARGIN = 0.15


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_over_window(pid: int) -> float:
    before = cpu_seconds(pid)
    await trio.sleep(WINDOW)
    return cpu_seconds(pid) - before


async def web_connections(port: int) -> int:
    """Open web connections as the server counts them, not counting the one that asks."""
    status, _, body = await http_request(port, "/healthz")
    assert status == 200
    return int(json.loads(body)["web"]["connections"]) - 1


async def stop(proc: trio.Process) -> bytes:
    """SIGTERM, wait, and the process's whole stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        await proc.wait()
        return await read_stderr(proc)


async def hold(port: int, prefix: bytes) -> list[trio.SocketStream]:
    streams = []
    for _ in range(HELD):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        if prefix:
            await stream.send_all(prefix)
        streams.append(stream)
    return streams


@pytest.mark.parametrize("ws_engine", WS_ENGINES)
async def test_request_prefixes_then_silence_cost_no_more_than_silence(
    tmp_path: Path, ws_engine: str
) -> None:
    proc, _, http_port = await start_serve(tmp_path, extra=["--ws-engine", ws_engine])
    try:
        with trio.fail_after(60):
            silent = await hold(http_port, b"")
            await trio.sleep(0.5)  # let the accepts settle
            silent_cpu = await cpu_over_window(proc.pid)
            for stream in silent:
                await stream.aclose()

            # The inputs: prefixes too short for the front to route...
            prefixes = [b"G", b"GET /ws/e", b"GET /ws/echo", b"\r\n"]
            held = await hold(http_port, b"")
            for i, stream in enumerate(held):
                await stream.send_all(prefixes[i % len(prefixes)])
            # ...and a few heads left unfinished at each shell the front hands on to.
            for head in [
                b"GET /ws/echo HTTP/1.1\r\n",
                b"GET /ws/events HTTP/1.1\r\nHost: x\r\n",
                b"GET / HTTP/1.1\r\nHost",
            ]:
                for _ in range(20):
                    stream = await trio.open_tcp_stream("127.0.0.1", http_port)
                    await stream.send_all(head)
                    held.append(stream)
            await trio.sleep(0.5)
            prefix_cpu = await cpu_over_window(proc.pid)
            assert prefix_cpu < silent_cpu + CPU_MARGIN, (silent_cpu, prefix_cpu)
            assert await web_connections(http_port) >= len(held) - 10

            # A peer that hangs up is released at once (the old front saw the
            # EOF only when its 10 s wait for a request line ran out).
            for stream in held:
                await stream.aclose()
            with trio.fail_after(3):
                while await web_connections(http_port) > 0:  # noqa: ASYNC110 (server state)
                    await trio.sleep(0.1)
            after_cpu = await cpu_over_window(proc.pid)
    finally:
        err = await stop(proc)
    assert after_cpu < silent_cpu + CPU_MARGIN, (silent_cpu, after_cpu)
    assert b"Traceback" not in err, err.decode()
    assert b"ERROR" not in err, err.decode()


@pytest.mark.parametrize("engine", ENGINES)
async def test_out_of_file_descriptors_is_one_line_then_a_count(
    tmp_path: Path, engine: str
) -> None:
    proc, tcp_port, http_port = await start_serve(tmp_path, extra=["--engine", engine])
    try:
        with trio.fail_after(60):
            # Room for a few more descriptors, then EMFILE at accept.
            in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
            limit = in_use + 8
            await trio.run_process(
                ["prlimit", f"--pid={proc.pid}", f"--nofile={limit}:{limit}"], check=True
            )
            flood = [await trio.open_tcp_stream("127.0.0.1", tcp_port) for _ in range(40)]
            # 3 s of EMFILE: the old loop logged an ERROR every 0.1 s, 30 in all.
            await trio.sleep(3)
            for stream in flood:
                await stream.aclose()
            await trio.sleep(1)  # the backlog is taken (and found closed)
            # Served as before once descriptors are free.  This accept, more
            # than a second after the last failure, ends the spell.
            await trio.sleep(1)
            async with await trio.open_tcp_stream("127.0.0.1", tcp_port) as echo:
                await echo.send_all(b"back")
                assert await echo.receive_some(10) == b"back"
            status, _, _ = await http_request(http_port, "/healthz")
            assert status == 200
    finally:
        err = await stop(proc)
    lines = [line for line in err.decode().splitlines() if "accept on" in line]
    assert len([line for line in lines if "ERROR" in line]) == 1, "\n".join(lines)
    assert "Too many open files" in lines[0], lines
    counts = [line for line in lines if "more failures" in line]
    assert 1 <= len(counts) <= 5, lines  # about one a second for 3 s
    assert "accepting again" in lines[-1], lines
    assert len(lines) <= 8, lines
