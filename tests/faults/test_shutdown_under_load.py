"""SIGTERM while 1,000 connections echo: nothing garbled, nothing lost silently, exit 0 in time.

Also with TLS (every engine) and under a UDP flood.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import trio

from app.tlsclient import client_context

from conftest import ENGINES
from procs import read_stderr, start_serve
from tlshelp import start_tls_serve

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


# -- TLS and UDP under a flood (issue H3): the same bound, every TLS engine ------------------

TLS_CONNECTIONS = 200  # each costs a handshake before the flood starts
UDP_SOCKETS = 200


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigterm_under_tls_load(tmp_path: Path, engine: str) -> None:
    """SIGTERM while TLS connections echo: exit 0 within a second, each client sees the end."""
    proc, ready, _ = await start_tls_serve(tmp_path, "--engine", engine, "--no-udp")
    ctx = client_context(insecure=True)
    echoed = 0
    up = 0
    all_up = trio.Event()
    ended = 0

    async def client() -> None:
        nonlocal echoed, up, ended
        stream = trio.SSLStream(
            await trio.open_tcp_stream("127.0.0.1", ready.tls_port), ctx, server_hostname="x"
        )
        await stream.do_handshake()
        up += 1
        if up == TLS_CONNECTIONS:
            all_up.set()
        try:
            while True:
                chunk = os.urandom(512)
                await stream.send_all(chunk)
                got = b""
                while len(got) < len(chunk):
                    data = await stream.receive_some(65536)
                    if not data:  # the server's close_notify
                        ended += 1
                        return
                    got += data
                assert got == chunk
                echoed += len(got)
        except trio.BrokenResourceError:
            ended += 1  # a reset, or TCP closed without close_notify
        finally:
            await trio.aclose_forcefully(stream)

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(TLS_CONNECTIONS):
                    nursery.start_soon(client)
                await all_up.wait()
                before = echoed
                await trio.sleep(0.3)
                assert echoed > before, "the connections were echoing when the signal came"
                sent_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
                elapsed = time.monotonic() - sent_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = await read_stderr(proc)
    assert ended == TLS_CONNECTIONS  # every client saw its connection end
    assert code == 0, err
    assert elapsed < 1.0
    assert b"Traceback" not in err


async def test_sigterm_under_udp_flood(tmp_path: Path) -> None:
    """SIGTERM while UDP datagrams pour in: the engine checkpoints per batch, exit 0 in time."""
    proc, tcp_port, _ = await start_serve(tmp_path)  # UDP echo on the TCP echo port's number
    echoed = 0

    async def flood() -> None:
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", tcp_port))
            await flood_with(sock)

    async def flood_with(sock: trio.socket.SocketType) -> None:
        nonlocal echoed
        try:
            while True:
                for _ in range(8):  # a few in flight: more than the engine takes per wake-up
                    await sock.send(os.urandom(512))
                with trio.move_on_after(0.05):
                    while True:
                        echoed += len(await sock.recv(65536))
        except OSError:
            return  # port unreachable once the server is gone

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(UDP_SOCKETS):
                    nursery.start_soon(flood)
                await trio.sleep(0.5)
                assert echoed > 0, "the flood was echoed when the signal came"
                sent_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
                elapsed = time.monotonic() - sent_at
                nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = await read_stderr(proc)
    assert code == 0, err
    assert elapsed < 1.0
    assert b"Traceback" not in err
