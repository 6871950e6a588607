"""``trio-echo serve`` as a process: the UDP line, ``--no-udp``, bad network flags (issue 11)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import trio

from app.child import self_command

UDP_LINE = re.compile(rb"udp echo listening on 127\.0\.0\.1:(\d+)\n")


async def serve_output(cwd: Path, *extra: str) -> bytes:
    """Start serve, read stdout until the web line and whatever follows at once, stop it."""
    proc = await trio.lowlevel.open_process(
        [*self_command("serve"), "--tcp-port", "0", "--http-port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )
    assert proc.stdout is not None
    out = b""
    try:
        with trio.fail_after(15):
            while b"web listening" not in out or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1000)
                assert chunk, out
                out += chunk
            # The udp line comes right after the web line, from the same task.
            with trio.move_on_after(1):
                while b"udp echo" not in out:
                    chunk = await proc.stdout.receive_some(1000)
                    if not chunk:
                        break
                    out += chunk
            if match := UDP_LINE.search(out):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(5)
                    sock.sendto(b"ping", ("127.0.0.1", int(match.group(1))))
                    assert sock.recv(10) == b"ping"
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    return out


async def test_serve_prints_the_udp_line_on_the_tcp_port_number(tmp_path: Path) -> None:
    out = await serve_output(tmp_path)
    tcp = re.search(rb"tcp echo listening on 127\.0\.0\.1:(\d+)\n", out)
    udp = UDP_LINE.search(out)
    assert tcp is not None and udp is not None, out
    assert tcp.group(1) == udp.group(1)


async def test_no_udp_prints_no_udp_line(tmp_path: Path) -> None:
    out = await serve_output(tmp_path, "--no-udp")
    assert b"udp echo" not in out


async def test_bad_networks_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for flag, value in (("--proxy-trusted", "10.0.0.0/40"), ("--udp-rate-exempt", "nope")):
        done = await trio.run_process(
            [*self_command("serve"), "--tcp-port", "0", "--http-port", "0", flag, value],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 2
        assert flag.encode() in done.stderr and b"Traceback" not in done.stderr
