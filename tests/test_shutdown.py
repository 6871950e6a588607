"""``trio-echo serve`` as a process: the listening lines, and SIGINT / SIGTERM shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from netclient import ws_connect
from trio_websocket import ConnectionClosed

LISTENING = re.compile(
    rb"^tcp echo listening on 127\.0\.0\.1:(\d+)\nweb listening on http://127\.0\.0\.1:(\d+)\n"
)


async def start_serve(cwd: Path, ignore_sigint: bool = False) -> tuple[trio.Process, int, int]:
    def background_like_a_shell() -> None:
        # `cmd &` in a non-interactive shell starts the job with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "app", "serve", "--tcp-port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=background_like_a_shell if ignore_sigint else None,
    )
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(10):
        while not LISTENING.match(out):
            chunk = await proc.stdout.receive_some(1000)
            assert chunk, f"serve exited early: {out!r}"
            out += chunk
    match = LISTENING.match(out)
    assert match is not None
    return proc, int(match.group(1)), int(match.group(2))


async def read_stderr(proc: trio.Process) -> bytes:
    assert proc.stderr is not None
    err = b""
    while chunk := await proc.stderr.receive_some(65536):
        err += chunk
    return err


@pytest.mark.parametrize(
    ("signum", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-started-with-&"],
)
async def test_signal_stops_everything_within_a_second_exit_0_no_traceback(
    tmp_path: Path, signum: signal.Signals, ignore_sigint: bool
) -> None:
    proc, tcp_port, http_port = await start_serve(tmp_path, ignore_sigint)
    try:
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream("127.0.0.1", tcp_port)
            await tcp.send_all(b"ping")
            assert await tcp.receive_some(10) == b"ping"
            async with ws_connect(f"ws://127.0.0.1:{http_port}/ws/echo") as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
                sent_at = time.monotonic()
                proc.send_signal(signum)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1001
            assert await tcp.receive_some(10) == b""  # the echo connection is closed too
            await tcp.aclose()
            code = await proc.wait()
            elapsed = time.monotonic() - sent_at
            err = await read_stderr(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, err
    assert elapsed < 1.0
    assert b"Traceback" not in err
    assert b"shutting down" in err


async def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(10):
            done = await trio.run_process(
                [sys.executable, "-m", "app", "serve", "--tcp-port", str(port), "--http-port", "0"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=tmp_path,
            )
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]


async def test_bad_flag_is_a_usage_error(tmp_path: Path) -> None:
    with trio.fail_after(10):
        done = await trio.run_process(
            [sys.executable, "-m", "app", "serve", "--max-connections", "0"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "TRIO_ECHO_TCP_PORT": "0"},
        )
    assert done.returncode == 2
    assert b"--max-connections: 0 is outside 1..1000000" in done.stderr.replace(b",", b"")
