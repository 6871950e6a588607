"""``trio-echo serve`` as a process: the listening lines, and SIGINT / SIGTERM shutdown."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed

from app.child import self_command

from netclient import ws_connect
from procs import read_stderr, start_serve


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
                self_command("serve", "--tcp-port", str(port), "--http-port", "0"),
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
            self_command("serve", "--max-connections", "0"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "TRIO_ECHO_TCP_PORT": "0"},
        )
    assert done.returncode == 2
    assert b"--max-connections: 0 is outside 1..1000000" in done.stderr.replace(b",", b"")
