"""Runs wherever Trio runs: the decision point, and a full server on a system without epoll.

The fallbacks for macOS and Windows cannot run here as themselves, so every test goes
through :data:`app.portability.CURRENT`, the one place the project asks what the system
offers; Trio itself keeps its own I/O manager whatever that says.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from app import portability
from app.cli import _raise_fd_limit, main
from app.client import Stdin
from app.config import EchoEngine, WsEngine
from app.echo.proxy import build_v2
from app.portability import Capabilities, choose_engines

from conftest import read_all, start_server, wait_until
from netclient import http_request, ws_connect
from tlshelp import TlsPipe, start_tls_server

LINUX = Capabilities(epoll=True, reuse_port=True, sigterm=True, rlimit=True, proc=True, fcntl=True)
MACOS = dataclasses.replace(LINUX, epoll=False, proc=False)
WINDOWS = dataclasses.replace(MACOS, reuse_port=False, sigterm=False, rlimit=False, fcntl=False)


def test_this_machine_is_read_as_it_is() -> None:
    # The suite runs on Linux: a wrong probe would silently test the fallbacks only.
    assert portability.detect() == LINUX
    assert portability.CURRENT.missing() == []
    assert WINDOWS.missing() == ["epoll", "reuse_port", "sigterm", "rlimit", "proc", "fcntl"]


@pytest.mark.parametrize(
    ("asked", "caps", "chosen", "noted"),
    [
        (("epoll", "epoll"), LINUX, ("epoll", "epoll"), False),
        (("tasks", "fast"), LINUX, ("tasks", "fast"), False),
        (("epoll", "epoll"), MACOS, ("trio", "fast"), True),
        (("tasks", "asgi"), MACOS, ("trio", "asgi"), True),
        (("trio", "epoll"), WINDOWS, ("trio", "fast"), True),
        (("trio", "fast"), MACOS, ("trio", "fast"), False),
        (("trio", "asgi"), WINDOWS, ("trio", "asgi"), False),
    ],
)
def test_engines_fall_back_to_the_portable_ones_only_without_epoll(
    asked: tuple[EchoEngine, WsEngine], caps: Capabilities, chosen: tuple[str, str], noted: bool
) -> None:
    choice = choose_engines(*asked, caps)
    assert (choice.engine, choice.ws_engine) == chosen
    assert (choice.note is not None) == noted
    if choice.note is not None:
        assert f"--engine {chosen[0]}" in choice.note
        assert f"--ws-engine {chosen[1]}" in choice.note


def test_stop_signals_follow_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    assert portability.stop_signals() == (signal.SIGINT, signal.SIGTERM)
    monkeypatch.setattr(portability, "CURRENT", WINDOWS)
    assert portability.stop_signals() == (signal.SIGINT,)


async def test_a_full_server_without_epoll(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(portability, "CURRENT", MACOS)
    caplog.set_level(logging.INFO, logger="app")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            running = await start_server(nursery)  # the defaults: --engine and --ws-engine epoll
            async with await trio.open_tcp_stream(*running.tcp) as tcp:
                await tcp.send_all(b"\x00portable\xff")
                got = b""
                while len(got) < 10:
                    got += await tcp.receive_some(100)
                assert got == b"\x00portable\xff"
            async with ws_connect(running.url("/ws/echo")) as ws:
                await ws.send_message(b"bytes")
                assert await ws.get_message() == b"bytes"
                await ws.send_message("text")
                assert await ws.get_message() == "text"
            status, _, page = await http_request(running.ports.http, "/")
            assert status == 200 and b"<html" in page.lower()
            async with ws_connect(running.url("/ws/events")) as feed:
                hello = json.loads(await feed.get_message())
            assert hello["type"] == "hello"
            nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records]
    assert any("epoll is not available" in line and "--engine trio" in line for line in lines)
    assert "engines: tcp echo trio, /ws/echo fast" in lines


def test_workers_are_refused_without_reuse_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(portability, "CURRENT", WINDOWS)
    assert main(["serve", "--workers", "2", "--tcp-port", "0", "--http-port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trio-echo serve: error: "), err
    assert "no SO_REUSEPORT" in err[0], err


def test_no_resource_module_is_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(portability, "CURRENT", WINDOWS)
    caplog.set_level(logging.INFO, logger="app")
    _raise_fd_limit(10)
    assert [r.getMessage() for r in caplog.records] == [
        f"no resource module here ({sys.platform}): the open-file limit stays as it is"
    ]


async def test_the_client_reads_stdin_in_a_thread_without_fcntl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(portability, "CURRENT", WINDOWS)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"line one\nrest")
        os.close(write_end)
        write_end = -1
        stdin = Stdin(read_end)
        with trio.fail_after(5):
            assert await stdin.readline() == b"line one\n"
            assert await stdin.readline() == b"rest"
            assert await stdin.read(10) == b""
        stdin.close()
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)


def test_the_server_imports_no_epoll_module_until_one_runs() -> None:
    # On macOS and Windows select has no EPOLL* constants: importing these modules would
    # fail there, so the server and the front import them only when an epoll engine runs.
    code = (
        "import sys, app.server, app.web.front, app.cli\n"
        "print(sorted(m for m in sys.modules if m in "
        "{'app.echo.epoll', 'app.echo.websocket', 'app.echo.multiplex'}))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_proxy_protocol_needs_no_pollrdhup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """macOS has no POLLRDHUP, Windows no poll() at all: with both taken away (and no epoll),
    a PROXY header still goes before TLS, and a peer that half-closes inside its header is
    closed for that, on every listener, not after the header timeout."""
    monkeypatch.setattr(portability, "CURRENT", MACOS)
    monkeypatch.delattr(select, "POLLRDHUP", raising=False)
    monkeypatch.delattr(select, "poll", raising=False)
    caplog.set_level(logging.WARNING, logger="app.echo.proxy")
    header = build_v2(("203.0.113.7", 40000), ("127.0.0.1", 8002))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="any")
            tcp = await trio.open_tcp_stream("127.0.0.1", running.ports.tls)
            await tcp.send_all(header)
            async with TlsPipe(tcp, files.client_context(), "localhost") as pipe:
                await pipe.do_handshake()
                await pipe.send_all(b"\x00portable\xff")
                assert await pipe.receive_some() == b"\x00portable\xff"
            ports = [running.ports.tls, running.ports.https, running.ports.http, running.tcp[1]]
            for port in ports:
                async with await trio.open_tcp_stream("127.0.0.1", port) as s:
                    await s.send_all(header[:20])
                    await s.send_eof()
                    assert await read_all(s) == b""
            await wait_until(lambda: running.hub.proxy_refusals.total == len(ports))
            nursery.cancel_scope.cancel()
    reasons = [r.getMessage() for r in caplog.records if r.name == "app.echo.proxy"]
    assert len(reasons) == len(ports)
    assert all(r.endswith("closed after 20 bytes of an unfinished PROXY header") for r in reasons)
