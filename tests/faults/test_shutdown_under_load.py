"""SIGTERM while 1,000 connections echo: nothing garbled, nothing lost silently, exit 0 in time."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import trio

from conftest import ENGINES
from procs import read_stderr, start_serve

CONNECTIONS = 1000


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigterm_under_load(tmp_path: Path, engine: str) -> None:
    proc, tcp_port, _ = await start_serve(tmp_path, extra=["--engine", engine])
    echoed = 0
    broken: list[str] = []
    all_up = trio.Event()
    up = 0

    async def client(i: int) -> None:
        nonlocal echoed, up
        sent = bytearray()
        received = bytearray()
        stream = await trio.open_tcp_stream("127.0.0.1", tcp_port)
        up += 1
        if up == CONNECTIONS:
            all_up.set()
        async with stream:
            try:
                while True:
                    chunk = os.urandom(512)
                    await stream.send_all(chunk)
                    sent.extend(chunk)
                    while len(received) < len(sent):
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        received.extend(data)
                        echoed += len(data)
            except trio.BrokenResourceError:
                return
            finally:
                # Whatever came back is exactly what was sent, in order: a prefix of it.
                if bytes(received) != bytes(sent[: len(received)]):
                    broken.append(f"conn {i}: echo differs from what was sent")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(CONNECTIONS):
                nursery.start_soon(client, i)
            await all_up.wait()
            before = echoed
            await trio.sleep(0.3)
            assert echoed > before, "the connections were echoing when the signal came"
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            elapsed = time.monotonic() - sent_at
        # Every client has finished: the server closed every connection.
    err = await read_stderr(proc)
    assert broken == []
    assert code == 0, err
    assert elapsed < 1.0
    assert b"Traceback" not in err
