"""Run ``trio-echo serve`` as a real process, the way a user or a script starts it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio

from app.child import self_command
from app.ready import parse_ready


async def start_serve(
    cwd: Path, ignore_sigint: bool = False, extra: list[str] | None = None
) -> tuple[trio.Process, int, int]:
    def background_like_a_shell() -> None:
        # `cmd &` in a non-interactive shell starts the job with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = await trio.lowlevel.open_process(
        [
            *self_command("serve"),
            "--tcp-port",
            "0",
            "--http-port",
            "0",
            *(extra or []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=background_like_a_shell if ignore_sigint else None,
    )
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(10):
        while (ready := parse_ready(out)) is None:
            chunk = await proc.stdout.receive_some(1000)
            assert chunk, f"serve exited early: {out!r}"
            out += chunk
    # The lines come first: nothing else goes to stdout before them.
    assert out.startswith(b"tcp echo listening on 127.0.0.1:"), out
    return proc, ready.tcp_port, ready.web_port


async def read_stderr(proc: trio.Process) -> bytes:
    assert proc.stderr is not None
    err = b""
    while chunk := await proc.stderr.receive_some(65536):
        err += chunk
    return err
