"""``trio-echo client`` as a user runs it: a real process against a real server."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import trio

from app.child import self_command
from app.feed.events import ConnOpen

from conftest import Running, start_server

CLIENT = self_command("client")


async def run_client(
    args: list[str], stdin: bytes, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(20):
        return await trio.run_process(
            CLIENT + args,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
        )


async def test_piped_stdin_comes_back_on_stdout(running: Running, tmp_path: Path) -> None:
    data = b"hello\n" + bytes(range(256)) * 4096  # ~1 MiB, binary-safe
    done = await run_client(["--port", str(running.ports.tcp)], data, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    assert done.stderr == b""


async def test_piped_over_websocket(running: Running, tmp_path: Path) -> None:
    done = await run_client(["--ws", running.url("/ws/echo")], "one\ntwo ✓\n".encode(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one\ntwo ✓\n".encode()


async def test_ws_info_prints_the_info_first_then_every_echo(
    running: Running, tmp_path: Path
) -> None:
    # /ws/info speaks first (its JSON): that is not an echo, so no line may be lost to it.
    done = await run_client(["--ws", running.url("/ws/info")], b"one\ntwo\n", tmp_path)
    assert done.returncode == 0, done.stderr
    info, *echoes = done.stdout.decode().splitlines()
    assert json.loads(info)["request"]["path"] == "/ws/info"
    assert echoes == ["one", "two"]


async def test_refused_connection_is_one_line_and_exit_1(tmp_path: Path) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    done = await run_client(["--port", str(port)], b"hi\n", tmp_path)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0] and "refused" in lines[0].lower()


async def test_server_closing_early_is_exit_1(nursery: trio.Nursery, tmp_path: Path) -> None:
    async def slam(stream: trio.SocketStream) -> None:
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, slam, 0)
    port = listeners[0].socket.getsockname()[1]
    done = await run_client(["--port", str(port)], b"x" * 100_000, tmp_path)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    assert len(done.stderr.decode().strip().splitlines()) == 1


async def test_interactive_prompt_on_a_terminal(running: Running, tmp_path: Path) -> None:
    """On a terminal the client prompts ``>>:`` and prints each echo, like the tutorial's."""
    controller, terminal = pty.openpty()
    proc = await trio.lowlevel.open_process(
        [*CLIENT, "--port", str(running.ports.tcp)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=tmp_path,
    )
    os.close(terminal)
    screen = b""

    async def read_until(marker: bytes) -> None:
        nonlocal screen
        while marker not in screen:
            await trio.lowlevel.wait_readable(controller)
            screen += os.read(controller, 4096)

    try:
        with trio.fail_after(20):
            await read_until(b">>: ")
            os.write(controller, b"hello trio\n")
            await read_until(b"hello trio\r\nhello trio\r\n>>: ")
            os.write(controller, b"\x04")  # Ctrl-D: end of input
            assert await proc.wait() == 0
    finally:
        os.close(controller)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_bad_websocket_url_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    done = await run_client(["--ws", "notaurl"], b"hi\n", tmp_path)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert lines[0].startswith("usage: trio-echo client ")
    assert (
        lines[-1] == "trio-echo client: error: --ws: expected a ws:// or wss:// URL, got 'notaurl'"
    )


async def test_a_refused_websocket_says_why(tmp_path: Path) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    done = await run_client(["--ws", f"ws://127.0.0.1:{port}/ws/echo"], b"hi\n", tmp_path)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0].lower(), lines


async def test_the_websocket_client_notices_a_shutdown_while_stdin_is_open(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Stdin held open with nothing to send: the server's 1001 must still end the client.
    running = await start_server(nursery)
    proc = await trio.lowlevel.open_process(
        [*CLIENT, "--ws", running.url("/ws/echo")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        with trio.fail_after(20):
            await proc.stdin.send_all(b"first\n")
            assert await proc.stdout.receive_some(100) == b"first\n"
            running.server.stop()
            code = await proc.wait()
        err = (await proc.stderr.receive_some(10_000)).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdin.aclose()
    assert code == 1
    assert err.startswith("trio-echo client: error: websocket closed"), err


# -- issue 11 (part 2): --udp and --send-proxy ---------------------------------------------
async def test_udp_lines_come_back(running: Running, tmp_path: Path) -> None:
    data = b"one\n" + bytes(range(1, 256)) + b"\nlast line without newline"
    done = await run_client(["--port", str(running.ports.udp), "--udp"], data, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


async def test_udp_without_an_echo_is_one_line_and_exit_1(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # The bound is 10 bytes: an 11-byte line is dropped by the server, never answered.
    running = await start_server(nursery, udp_max_datagram=10)
    done = await run_client(
        ["--port", str(running.ports.udp), "--udp", "--udp-timeout", "0.5"],
        b"0123456789\n",
        tmp_path,
    )
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no echo" in lines[0], lines


async def test_send_proxy_passes_a_proxy_listener(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_server(nursery, proxy_protocol="any")
    cursor = len(running.events)
    for version in ("v1", "v2"):
        done = await run_client(
            ["--port", str(running.ports.tcp), "--send-proxy", version], b"hi\n", tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"hi\n"
    events = running.events[cursor:]
    assert isinstance(events, list)
    assert len([e for e in events if isinstance(e, ConnOpen)]) == 2
    assert running.hub.proxy_refusals.total == 0
    # Without the header the same listener closes the connection: exit 1.
    done = await run_client(["--port", str(running.ports.tcp)], b"hi\n", tmp_path)
    assert done.returncode == 1
