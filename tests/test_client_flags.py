"""``trio-echo client`` flags that go together, and those that do not (issue 11 follow-ups).

Real processes against real servers on port 0, as a user runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

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
