"""``serve`` with TLS as a process (issue 11): SIGTERM with TLS echo and WSS open."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect as ws_connect

from app.tlsclient import client_context

from procs import read_stderr
from tlshelp import TlsPipe, start_tls_serve


@pytest.mark.parametrize("engine", ["epoll", "tasks"])
async def test_sigterm_closes_tls_echo_and_wss_within_a_second(tmp_path: Path, engine: str) -> None:
    proc, ready, _ = await start_tls_serve(tmp_path, "--engine", engine)
    assert proc.stdout is not None
    ctx = client_context(insecure=True)
    try:
        with trio.fail_after(10):
            async with await TlsPipe.connect(ready.tls_port, ctx) as pipe:
                await pipe.send_all(b"ping")
                assert await pipe.receive_some() == b"ping"
                url = f"wss://localhost:{ready.https_port}/ws/events"
                async with ws_connect(url, ssl=ctx) as ws:
                    assert json.loads(await ws.recv())["type"] == "hello"
                    sent_at = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            await ws.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                # The TLS echo connection ends with the server's close_notify.
                assert await pipe.receive_some() == b""
            code = await proc.wait()
            elapsed = time.monotonic() - sent_at
            err = await read_stderr(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()
    assert code == 0, err
    assert elapsed < 1.0
    assert b"Traceback" not in err
