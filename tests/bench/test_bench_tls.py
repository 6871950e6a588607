"""``trio-echo bench --tls`` (issue 11) against a real TLS server: it runs, verifies, reports.

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

from tlshelp import bench_exactly, start_tls_serve, start_tls_server, write_cert


@pytest.mark.parametrize("size", [64, 16 * 1024])
async def test_tls_bench_verifies_every_echo(
    nursery: trio.Nursery, tmp_path: Path, size: int
) -> None:
    running, files = await start_tls_server(nursery, tmp_path)
    plan = Plan(
        "tls",
        f"localhost:{running.ports.tls}",
        connections=10,
        size=size,
        duration=1,
        cafile=str(files.cert),
    )
    await bench_exactly(plan)
    assert running.hub.handshakes["echo"].done == 10


async def test_tls_bench_counts_unverified_handshakes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    (tmp_path / "other").mkdir()
    other = write_cert(tmp_path / "other")  # not the server's: nothing verifies
    plan = Plan("tls", f"localhost:{running.ports.tls}", connections=3, cafile=str(other.cert))
    with trio.fail_after(30), pytest.raises(BenchError, match="tls_handshake_failed"):
        await run_bench(plan, lambda line: None)
    assert running.hub.handshakes["echo"].failed == 3


def test_the_command_with_tls_insecure(tmp_path: Path) -> None:
    files = write_cert(tmp_path)
    serve = subprocess.Popen(
        self_command(
            "serve",
            "--tcp-port",
            "0",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--tls-port",
            "0",
            "--tls-cert",
            str(files.cert),
            "--tls-key",
            str(files.key),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    assert serve.stdout is not None
    try:
        lines = [serve.stdout.readline() for _ in range(3)]
        tls = lines[2].split()[-1]
        bench = subprocess.run(
            self_command(
                "bench",
                "--tls",
                tls,
                "--insecure",
                "--connections",
                "5",
                "--duration",
                "0.5",
                "--json",
            ),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    finally:
        serve.terminate()
        code = serve.wait(timeout=10)
        serve.stdout.close()
    assert code == 0
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["mode"] == "tls" and result["established"] == 5
    assert result["msgs_per_s"] > 0 and result["errors"] == {}


def test_a_tls_target_that_cannot_work_is_an_error_line(tmp_path: Path) -> None:
    """A malformed target is a usage error (exit 2); a CA file that cannot be read, exit 1."""
    for args, message, code in [
        (["--tls", "127.0.0.1", "--insecure"], "expected HOST:PORT", 2),
        (["--tls", "127.0.0.1:1", "--cafile", str(tmp_path / "none.pem")], "--cafile", 1),
    ]:
        done = subprocess.run(
            self_command("bench", *args, "--duration", "0.5"),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert done.returncode == code, done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("trio-echo bench: error: ") and message in line, line


# -- issue 11 follow-up: `bench --tls --send-proxy` sends the header before TLS ---------------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_tls_bench_sends_proxy_header_before_tls(
    nursery: trio.Nursery, tmp_path: Path, version: str
) -> None:
    """Every connection's header reaches a server that requires one, then TLS follows."""
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol=version)
    plan = Plan(
        "tls",
        f"localhost:{running.ports.tls}",
        connections=4,
        duration=0.5,
        cafile=str(files.cert),
        send_proxy=version,
    )
    await bench_exactly(plan)
    assert running.hub.handshakes["echo"].done == 4


@pytest.mark.parametrize(("server", "version"), [("v2", "v2"), ("any", "v1")])
async def test_the_command_with_tls_and_send_proxy(
    tmp_path: Path, server: str, version: str
) -> None:
    """The fresh-user trial: `bench --tls HOST:PORT --insecure --send-proxy` against
    `serve --proxy-protocol ... --tls self-signed` echoes instead of being reset."""
    proc, ready, _ = await start_tls_serve(tmp_path, "--proxy-protocol", server, "--no-udp")
    try:
        with trio.fail_after(60):
            bench = await trio.run_process(
                self_command(
                    "bench",
                    "--tls",
                    ready.tls,
                    "--insecure",
                    "--send-proxy",
                    version,
                    "--connections",
                    "3",
                    "--duration",
                    "0.5",
                    "--json",
                ),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=tmp_path,
            )
    finally:
        proc.terminate()
        with trio.fail_after(10):
            await proc.wait()
    assert bench.returncode == 0, bench.stderr.decode()
    result = json.loads(bench.stdout)
    assert result["mode"] == "tls" and result["established"] == 3
    assert result["messages"] > 0 and result["errors"] == {}
