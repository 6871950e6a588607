"""``trio-echo bench --ws wss://`` and ``--feed wss://`` (issue 11) against real TLS servers.

The websocket bench verifies the server as ``client --ws wss://`` does: the system's CAs,
``--cafile``'s, or none with ``--insecure``; a certificate that does not verify is counted as
``tls_handshake_failed`` and, when no connection came up, one line and exit 1.
Behaviour, not speed: nothing here asserts how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from app.bench.load import BenchError, Plan, run_bench
from app.child import self_command

from conftest import wait_until
from tlshelp import bench_exactly, start_tls_serve, start_tls_server, write_cert


@pytest.mark.parametrize(
    ("size", "text", "deflate"),
    [(64, False, False), (16 * 1024, True, False), (3000, False, True)],
    ids=["binary", "text-16k", "deflate"],
)
async def test_wss_bench_verifies_every_echo(
    nursery: trio.Nursery, tmp_path: Path, size: int, text: bool, deflate: bool
) -> None:
    running, files = await start_tls_server(nursery, tmp_path)
    plan = Plan(
        "ws",
        f"wss://localhost:{running.ports.https}/ws/echo",
        connections=5,
        size=size,
        duration=1,
        text=text,
        deflate=deflate,
        cafile=str(files.cert),
    )
    await bench_exactly(plan)
    # Each connection came over the HTTPS listener's TLS handshake, none over plain HTTP.
    assert running.hub.handshakes["web"].done >= 5


async def test_wss_bench_counts_unverified_handshakes_with_the_reason(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    (tmp_path / "other").mkdir()
    other = write_cert(tmp_path / "other")  # not the server's: nothing verifies
    url = f"wss://localhost:{running.ports.https}/ws/echo"
    plan = Plan("ws", url, connections=3, duration=0.5, cafile=str(other.cert))
    with trio.fail_after(30), pytest.raises(BenchError) as raised:
        await run_bench(plan, lambda line: None)
    message = str(raised.value)
    assert "{'tls_handshake_failed': 3}" in message
    assert "certificate verify failed" in message
    # The server sees each failure when our alert reaches it, which may be after we gave up.
    with trio.fail_after(10):
        await wait_until(lambda: running.hub.handshakes["web"].failed >= 3)
    assert running.hub.handshakes["web"].failed == 3


async def test_wss_feed_bench_measures_lag(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The feed's subscribers (and the stalled one) over wss:// too."""
    running, files = await start_tls_server(nursery, tmp_path)
    url = f"wss://localhost:{running.ports.https}/ws/events"
    plan = Plan("feed", url, connections=3, duration=1, rate=300, cafile=str(files.cert))
    with trio.fail_after(30):
        summary = await run_bench(plan, lambda line: None)
    assert summary.established == 3 and summary.errors == {}
    assert [p["phase"] for p in summary.phases] == ["all reading", "one stalled"]
    for phase in summary.phases:
        assert phase["subscribers"] == 3 and phase["events_per_s"] > 0
    # Three subscribers, then the stalled fourth: every one did its TLS handshake.
    assert running.hub.handshakes["web"].done >= 4


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        self_command("bench", *args, "--connections", "5", "--duration", "0.5", "--warmup", "0.1"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


async def test_the_command_against_serve_tls_self_signed(tmp_path: Path) -> None:
    """A real ``serve --tls self-signed``: --insecure measures; without it, one line, exit 1."""
    proc, ready, _ = await start_tls_serve(tmp_path)
    try:
        assert ready.https
        url = ready.https.replace("https://", "wss://") + "/ws/echo"
        good = await trio.to_thread.run_sync(
            lambda: _bench("--ws", url, "--insecure", "--json", cwd=tmp_path)
        )
        bad = await trio.to_thread.run_sync(lambda: _bench("--ws", url, cwd=tmp_path))
    finally:
        proc.terminate()
        with trio.fail_after(10):
            code = await proc.wait()
    assert code == 0
    assert good.returncode == 0, good.stderr
    result = json.loads(good.stdout)
    assert result["mode"] == "ws" and result["established"] == 5
    assert result["messages"] > 0 and result["errors"] == {}
    assert bad.returncode == 1, bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("trio-echo bench: error: no connection to wss://"), line
    assert "tls_handshake_failed" in line and "self-signed certificate" in line, line
    assert "Traceback" not in bad.stderr and bad.stdout == ""


async def test_wss_bench_sends_the_proxy_header_before_tls(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Issue 11 follow-up: `bench --ws wss://... --send-proxy v2`: header, TLS, upgrade."""
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="v2")
    plan = Plan(
        "ws",
        f"wss://localhost:{running.ports.https}/ws/echo",
        connections=3,
        duration=0.5,
        cafile=str(files.cert),
        send_proxy="v2",
    )
    await bench_exactly(plan)
    assert running.hub.proxy_refusals.total == 0
