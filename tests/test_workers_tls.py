"""``serve --workers N`` with TLS (issue 11): every worker behind the TLS ports, one certificate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
from pathlib import Path

import trio

from app.child import self_command
from app.cli import build_parser
from app.config import SERVE_OPTIONS, Settings, resolve
from app.tlsclient import client_context
from app.workers import WorkerTls, worker_argv

from netclient import http_over
from procs import read_stderr
from tlshelp import TlsPipe, start_tls_serve, write_cert


def test_a_worker_gets_the_tls_ports_and_the_one_certificate() -> None:
    settings = Settings(workers=2, tls="self-signed", tls_port=0, https_port=0)
    tls = WorkerTls(5001, 5002, "/tmp/c.pem", "/tmp/k.pem", "AB", self_signed=True)
    args = build_parser().parse_args(worker_argv(settings, 4001, 4002, 1, tls)[4:])
    again = resolve(Settings, SERVE_OPTIONS, vars(args), {})
    assert again == dataclasses.replace(
        settings,
        tcp_port=4001,
        http_port=4002,
        tls="off",
        tls_cert="/tmp/c.pem",
        tls_key="/tmp/k.pem",
        tls_port=5001,
        https_port=5002,
    )


async def test_two_workers_serve_tls_echo_and_https_with_one_certificate(tmp_path: Path) -> None:
    proc, ready, out = await start_tls_serve(tmp_path, "--workers", "2")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert b"(self-signed, made at start)" in out
        ctx = client_context(insecure=True)
        with trio.fail_after(30):
            workers: dict[int, str] = {}
            for _ in range(100):
                stream = trio.SSLStream(
                    await trio.open_tcp_stream("127.0.0.1", ready.https_port),
                    ctx,
                    server_hostname="localhost",
                    https_compatible=True,
                )
                status, _, body = await http_over(stream, "/info")
                assert status == 200
                info = json.loads(body)
                workers[info["server"]["worker"]] = info["tls"]["version"]
                if len(workers) == 2:
                    break
            assert sorted(workers) == [1, 2]
            async with await TlsPipe.connect(ready.tls_port, ctx) as pipe:
                await pipe.send_all(b"ping")
                assert await pipe.receive_some() == b"ping"
                peer = pipe.transport.socket.getpeername()
                assert peer[1] == ready.tls_port
                der = pipe.certificate
        assert der is not None
        assert ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()) == ready.fingerprint
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = await read_stderr(proc)
    await proc.stdout.aclose()
    await proc.stderr.aclose()
    assert code == 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert b"PRIVATE KEY" not in err


def test_a_wrong_key_with_workers_is_one_line_and_exit_1(tmp_path: Path) -> None:
    one = write_cert(tmp_path)
    (tmp_path / "two").mkdir()
    two = write_cert(tmp_path / "two")
    serve = ["serve", "--workers", "2", "--tcp-port", "0", "--http-port", "0"]
    serve += ["--tls-port", "0", "--https-port", "0"]
    serve += ["--tls-cert", str(one.cert), "--tls-key", str(two.key)]
    done = subprocess.run(
        self_command(*serve), capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "key values mismatch" in line
