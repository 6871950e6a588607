"""``trio-echo client`` flags that go together, and those that do not (issue 11 follow-ups).

Real processes against real servers on port 0, as a user runs them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from app.child import self_command
from app.feed.events import ConnOpen

from conftest import start_server
from test_client import run_client
from tlshelp import start_tls_server

# -- --ws with --send-proxy: the header goes first, before TLS and the HTTP upgrade ---------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_ws_sends_the_proxy_header_before_the_upgrade(
    nursery: trio.Nursery, tmp_path: Path, version: str
) -> None:
    running = await start_server(nursery, proxy_protocol=version)
    url = running.url("/ws/echo")
    done = await run_client(["--ws", url, "--send-proxy", version], b"one\ntwo\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"one\ntwo\n"
    assert running.hub.proxy_refusals.total == 0
    # The same listener refuses a websocket without the header: the header made the difference.
    done = await run_client(["--ws", url], b"one\n", tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(b"trio-echo client: error: ")


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_wss_sends_the_proxy_header_before_tls(
    nursery: trio.Nursery, tmp_path: Path, version: str
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="any")
    url = f"wss://localhost:{running.ports.https}/ws/echo"
    args = ["--ws", url, "--cafile", str(files.cert), "--send-proxy", version]
    done = await run_client(args, "one\ntwo ✓\n".encode(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one\ntwo ✓\n".encode()
    assert running.hub.proxy_refusals.total == 0


async def test_ws_with_send_proxy_says_why_a_refused_upgrade_failed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A path that is no websocket endpoint: one line, exit 1, no traceback or group."""
    running = await start_server(nursery, proxy_protocol="any")
    url = running.url("/nowhere")
    done = await run_client(["--ws", url, "--send-proxy", "v2"], b"one\n", tmp_path)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.decode().splitlines()
    assert line == f"trio-echo client: error: {url} refused the websocket upgrade: HTTP 404"


# -- serve's TRIO_ECHO_* in the client's environment: ignored; TRIO_ECHO_CLIENT_* is read ----

#: Valid for serve, each of which broke or silently changed the client before.
SERVE_ENV = {
    "TRIO_ECHO_TLS": "self-signed",
    "TRIO_ECHO_TCP_PORT": "0",
    "TRIO_ECHO_UDP": "on",
    "TRIO_ECHO_HOST": "0.0.0.0",
}


async def run_client_env(
    args: list[str], stdin: bytes, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(20):
        return await trio.run_process(
            [*self_command("client"), *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env={**os.environ, **env},
        )


async def test_the_client_ignores_serves_variables(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_server(nursery)
    cursor = len(running.events)
    env = {**SERVE_ENV, "TRIO_ECHO_CLIENT_TCP_PORT": str(running.ports.tcp)}
    done = await run_client_env([], b"over tcp\n", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"over tcp\n"
    # Over TCP (a connection the server saw), not silently over UDP.
    assert any(isinstance(e, ConnOpen) for e in running.events[cursor:])


async def test_the_client_reads_its_own_variables(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_server(nursery)
    env = {
        "TRIO_ECHO_CLIENT_UDP": "on",
        "TRIO_ECHO_CLIENT_TCP_PORT": str(running.ports.udp),
        "TRIO_ECHO_CLIENT_HOST": "127.0.0.1",
    }
    done = await run_client_env([], b"one datagram\n", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"one datagram\n"
    # A bad value of its own is a usage error naming the variable.
    done = await run_client_env([], b"", tmp_path, {"TRIO_ECHO_CLIENT_TLS": "self-signed"})
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[-1] == (
        "trio-echo client: error: TRIO_ECHO_CLIENT_TLS: expected on or off, got 'self-signed'"
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("client", "TRIO_ECHO_CLIENT_<NAME>"),
        ("bench", "Environment: none"),
        ("serve", "Environment: TRIO_ECHO_<NAME>"),
    ],
)
def test_help_says_which_variables_a_command_reads(command: str, says: str) -> None:
    done = subprocess.run(
        self_command(command, "--help"), capture_output=True, text=True, timeout=60, check=True
    )
    assert says in " ".join(done.stdout.split())


# -- hints when the server took the connection but echoed nothing ---------------------------


async def test_a_proxy_listener_without_send_proxy_gets_a_hint(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_server(nursery, proxy_protocol="v1")
    done = await run_client(["--port", str(running.ports.tcp)], b"hi you\n", tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line == (
        "trio-echo client: error: server closed the connection after echoing 0 of 7 bytes "
        "(does the server want a PROXY header? --send-proxy v1|v2)"
    )


async def test_a_tls_port_without_tls_gets_a_hint(nursery: trio.Nursery, tmp_path: Path) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    done = await run_client(["--port", str(running.ports.tls)], b"hi you\n", tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("trio-echo client: error: connection lost after 0 bytes: ")
    assert line.endswith(" (is it a TLS port? --tls)")


async def test_no_hint_once_bytes_came_back(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A server that echoes a little and then closes is no flag's mismatch: no hint."""

    async def echo_three_then_close(stream: trio.SocketStream) -> None:
        await stream.send_all((await stream.receive_some(3))[:3])
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, echo_three_then_close, 0)
    port = listeners[0].socket.getsockname()[1]
    done = await run_client(["--port", str(port)], b"x" * 10, tmp_path)
    assert done.returncode == 1
    assert done.stdout == b"xxx"
    (line,) = done.stderr.decode().splitlines()
    assert "--send-proxy" not in line and "--tls" not in line, line
