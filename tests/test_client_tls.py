"""``trio-echo client --tls`` and ``--ws wss://`` (issue 11): real processes, a real TLS server."""

from __future__ import annotations

from pathlib import Path

import trio

from conftest import Running
from test_client import run_client
from tlshelp import start_tls_server


async def test_piped_over_tls_with_cafile_half_closes_and_gets_everything(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path)
    data = bytes(range(256)) * 8192  # 2 MiB, binary
    args = ["--tls", "--port", str(running.ports.tls), "--cafile", str(files.cert)]
    done = await run_client(args, data, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    assert done.stderr == b""


async def test_insecure_accepts_a_certificate_nobody_vouches_for(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    done = await run_client(
        ["--tls", "--insecure", "--port", str(running.ports.tls)], b"hi\n", tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hi\n"


async def test_unverified_certificate_is_one_line_and_exit_1(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    done = await run_client(["--tls", "--port", str(running.ports.tls)], b"hi\n", tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("trio-echo client: error: TLS handshake with 127.0.0.1:")
    assert "self-signed certificate" in line
    assert running.hub.handshakes["echo"].failed == 1


async def test_insecure_and_cafile_together_are_refused(tmp_path: Path) -> None:
    done = await run_client(["--tls", "--insecure", "--cafile", "x.pem"], b"", tmp_path)
    assert done.returncode == 2  # a usage error: the usage line, then the error
    assert done.stderr.startswith(b"usage: trio-echo client ")
    assert done.stderr.endswith(
        b"\ntrio-echo client: error: --insecure and --cafile: give one, not both\n"
    )


async def test_wss_url_with_cafile(nursery: trio.Nursery, tmp_path: Path) -> None:
    running, files = await start_tls_server(nursery, tmp_path)
    url = f"wss://localhost:{running.ports.https}/ws/echo"
    done = await run_client(
        ["--ws", url, "--cafile", str(files.cert)], "one\ntwo ✓\n".encode(), tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one\ntwo ✓\n".encode()


async def test_tls_to_a_plain_port_says_so(running: Running, tmp_path: Path) -> None:
    done = await run_client(
        ["--tls", "--insecure", "--port", str(running.ports.http)], b"hi\n", tmp_path
    )
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.endswith("(is it a TLS port?)"), line


async def test_wss_with_an_unverified_certificate_is_one_line(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, _ = await start_tls_server(nursery, tmp_path)
    url = f"wss://localhost:{running.ports.https}/ws/echo"
    done = await run_client(["--ws", url], b"one\n", tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("trio-echo client: error: TLS handshake with localhost:"), line
    assert "certificate verify failed: self-signed certificate" in line
